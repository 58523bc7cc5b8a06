"""The command line, in process (Typer's runner) and as ``python -m worker``,
against the test session's own Redis. Exit codes and output are the contract."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis as SyncRedis
from typer.testing import CliRunner, Result

from worker.cli import EXIT_HALTED, EXIT_NO_REDIS, EXIT_OK, EXIT_USAGE, app
from worker.cli.watching import HUMAN_RESULTS
from worker.store.embedded import free_port
from worker.store.keys import AccountKeys

FAKE_TOKEN = "eyJhbGciOiJIUzI1NiJ9.fake-token-that-must-never-be-printed"
CREDENTIALS = {
    "OZONETEL_USERNAME": "demo",
    "OZONETEL_API_KEY": "demo-key",
    "OZONETEL_BASE_URL": "http://127.0.0.1:9",
}

Env = dict[str, str | None]


@pytest.fixture
def env(redis_url: str, key_prefix: str) -> Env:
    """The test's Redis and prefix, and nothing from the developer's environment."""
    cleared: Env = {k: None for k in os.environ if k.startswith(("OZP_", "OZONETEL_"))}
    return {**cleared, "REDIS_URL": redis_url, "OZP_KEY_PREFIX": key_prefix}


@pytest.fixture
def store(redis_url: str) -> Iterator[SyncRedis]:
    client = SyncRedis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def keys(key_prefix: str) -> AccountKeys:
    return AccountKeys(key_prefix, "default")


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a ``python -m worker`` child: ours without product settings."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("OZP_", "OZONETEL_"))}
    return {**kept, **extra}


def cli(env: Env, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env=env, input=stdin)


def one_error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_enqueue_prints_the_id_and_a_duplicate_is_reported_not_queued(
    env: Env, store: SyncRedis, keys: AccountKeys
) -> None:
    first = cli(env, "enqueue", "--campaign", "spring", "--phone", "9876500001", "--name", "A")
    assert first.exit_code == EXIT_OK, first.output
    [(_, fields)] = store.xrange(keys.bulk)
    assert fields["id"] == first.stdout.strip()
    assert (fields["campaign"], fields["phone"], fields["name"]) == ("spring", "9876500001", "A")

    again = cli(env, "enqueue", "--campaign", "spring", "--phone", "9876500001")
    assert again.exit_code == EXIT_OK
    assert again.stdout == ""
    assert "duplicate" in again.stderr
    assert store.xlen(keys.bulk) == 1

    urgent = cli(
        env, "enqueue", "--campaign", "c", "--phone", "9876500002", "--urgent", "--id", "j-7"
    )
    assert (urgent.exit_code, urgent.stdout.strip()) == (EXIT_OK, "j-7")
    assert [f["id"] for _, f in store.xrange(keys.urgent)] == ["j-7"]

    # The same id for another number would lose one of the two: refused.
    taken = cli(env, "enqueue", "--campaign", "c", "--phone", "9876500003", "--id", "j-7")
    assert taken.exit_code == EXIT_USAGE
    assert "already used for another number" in one_error_line(taken)
    assert store.xlen(keys.bulk) == 1


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--campaign", "c", "--phone", "12"], "phone number must be 5-15 digits"),
        (["--campaign", " ", "--phone", "9876500001"], "campaign is empty"),
        (["--campaign", "c", "--phone", "9876500001", "--id", "a b"], "job id"),
        (["--campaign", "c", "--phone", "9876500001", "--account", "nope"], "unknown account"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_queues_nothing(
    env: Env, store: SyncRedis, key_prefix: str, args: list[str], reason: str
) -> None:
    result = cli(env, "enqueue", *args)
    assert result.exit_code == EXIT_USAGE
    assert reason in one_error_line(result)
    assert result.stdout == ""
    assert store.keys(f"{key_prefix}*") == []


def test_bad_configuration_exits_2(env: Env) -> None:
    result = cli({**env, "OZP_CONCURRENCY": "zero"}, "status")
    assert result.exit_code == EXIT_USAGE
    assert "OZP_CONCURRENCY" in one_error_line(result)


def test_unreachable_redis_exits_3_as_python_m_worker() -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    process = subprocess.run(
        [sys.executable, "-m", "worker", "status", "--json"],
        env=child_env(REDIS_URL=closed),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert process.returncode == EXIT_NO_REDIS
    assert process.stdout == ""
    [line] = process.stderr.strip().splitlines()
    assert line.startswith("error: cannot reach Redis at redis://127.0.0.1:")


def test_import_csv_counts_and_writes_rejects_with_line_numbers(
    env: Env, store: SyncRedis, keys: AccountKeys, tmp_path: Path
) -> None:
    source = tmp_path / "list.csv"
    source.write_text(
        "phoneNumber,campaignName,name\n"
        "9876500001,spring,A\n"
        "not-a-number,spring,B\n"
        "9876500002,spring,C\n"
        "9876500001,spring,A again\n"
    )
    rejects = tmp_path / "rejects.csv"

    result = cli(env, "import", str(source), "--rejects", str(rejects))

    assert result.exit_code == EXIT_OK, result.output
    assert result.stdout.strip() == "queued 2, duplicates skipped 1, rejected 1"
    assert [f["phone"] for _, f in store.xrange(keys.bulk)] == ["9876500001", "9876500002"]
    with rejects.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["line", "reason", "raw"]
    assert rows[1][0] == "3" and "phone number" in rows[1][1]
    assert rows[1][2] == "not-a-number,spring,B"
    assert len(rows) == 2

    again = cli(env, "import", str(source))
    assert again.stdout.strip() == "queued 0, duplicates skipped 3, rejected 1"
    assert "rejected line 3" in again.stderr


def test_import_jsonl_from_stdin_with_a_default_campaign_on_the_urgent_lane(
    env: Env, store: SyncRedis, keys: AccountKeys
) -> None:
    lines = '{"phone": "9876500001"}\n{"phone": "9876500002", "campaign": "other"}\n'
    result = cli(env, "import", "-", "--campaign", "spring", "--urgent", stdin=lines)

    assert result.exit_code == EXIT_OK, result.output
    assert result.stdout.strip() == "queued 2, duplicates skipped 0, rejected 0"
    queued = [(f["campaign"], f["phone"]) for _, f in store.xrange(keys.urgent)]
    assert queued == [("spring", "9876500001"), ("other", "9876500002")]
    assert store.xlen(keys.bulk) == 0


def test_import_json_prints_one_object_of_counts(env: Env, store: SyncRedis) -> None:
    lines = '{"phone": "9876500001"}\n{"phone": "9876500001"}\n{"phone": "12"}\n'
    result = cli(env, "import", "-", "--campaign", "spring", "--json", stdin=lines)
    assert result.exit_code == EXIT_OK, result.output
    assert json_lines(result.stdout) == [{"queued": 1, "duplicates": 1, "rejected": 1}]


def test_import_of_a_missing_file_or_one_without_phones_exits_2_and_queues_nothing(
    env: Env, store: SyncRedis, key_prefix: str, tmp_path: Path
) -> None:
    missing = cli(env, "import", str(tmp_path / "nope.csv"), "--campaign", "c")
    assert missing.exit_code == EXIT_USAGE
    assert "no such file" in one_error_line(missing)

    wrong = tmp_path / "wrong.csv"
    wrong.write_text("email,campaign\na@example.com,c\n")
    result = cli(env, "import", str(wrong))
    assert result.exit_code == EXIT_USAGE
    assert "no phone column" in one_error_line(result)
    assert store.keys(f"{key_prefix}*") == []


def test_status_json_has_the_documented_shape_and_counts(env: Env) -> None:
    for phone in ("9876500001", "9876500002"):
        assert cli(env, "enqueue", "--campaign", "c", "--phone", phone).exit_code == EXIT_OK
    assert (
        cli(env, "enqueue", "--campaign", "c", "--phone", "9876500003", "--urgent").exit_code == 0
    )

    result = cli(env, "status", "--json")

    assert result.exit_code == EXIT_OK, result.output
    report = json.loads(result.stdout)
    account = report["accounts"]["default"]
    assert set(account) == {
        "state",
        "queued",
        "in_flight",
        "delayed",
        "done",
        "dead",
        "paused",
        "halted",
        "rate_last_min",
        "eta_s",
        "token",
    }
    assert account["queued"] == {"urgent": 1, "bulk": 2}
    assert (account["in_flight"], account["delayed"], account["done"], account["dead"]) == (
        0,
        0,
        0,
        0,
    )
    assert (account["paused"], account["halted"], account["rate_last_min"]) == (None, None, 0)
    assert account["state"] == "running"
    assert account["eta_s"] == 2  # 3 jobs at 100 per 60 s
    assert set(account["token"]) == {
        "expires_in_s", "generations_in_window", "budget", "budget_window_s", "waiting"
    }  # fmt: skip

    human = cli(env, "status")
    assert human.exit_code == EXIT_OK
    assert "queued bulk" in human.stdout and "default" in human.stdout


def test_token_status_never_prints_the_token(env: Env, store: SyncRedis, keys: AccountKeys) -> None:
    seconds, _ = store.time()
    store.hset(
        keys.token,
        mapping={
            "value": FAKE_TOKEN,
            "gen": "4",
            "exp_ms": str((seconds + 1800) * 1000),
            "issued_ms": str((seconds - 60) * 1000),
        },
    )
    human = cli(env, "token", "status")
    as_json = cli(env, "token", "status", "--json")
    status = cli(env, "status", "--json")

    assert human.exit_code == as_json.exit_code == status.exit_code == EXIT_OK
    assert "generation 4" in human.stdout
    health = json.loads(as_json.stdout)
    assert health["generation"] == 4 and 1790 <= health["expires_in_s"] <= 1800
    for result in (human, as_json, status):
        assert FAKE_TOKEN not in result.output
        assert "fake-token" not in result.output


def test_pause_and_resume(env: Env, store: SyncRedis, keys: AccountKeys) -> None:
    paused = cli(env, "pause", "--reason", "vendor maintenance")
    assert paused.exit_code == EXIT_OK
    assert store.get(keys.paused) == "vendor maintenance"
    assert json.loads(cli(env, "status", "--json").stdout)["accounts"]["default"]["paused"]

    store.set(keys.halted, "Invalid User Details")
    resumed = cli(env, "resume")
    assert resumed.exit_code == EXIT_OK and "resumed" in resumed.stdout
    assert store.exists(keys.paused, keys.halted) == 0
    assert "was not paused" in cli(env, "resume").stdout


def add_letter(store: SyncRedis, keys: AccountKeys, job_id: str, phone: str, reason: str) -> None:
    store.xadd(
        keys.dlq,
        {
            "job_id": job_id,
            "account": "default",
            "campaign": "spring",
            "phone": phone,
            "name": "",
            "outcome": "dead",
            "reason": reason,
            "message": "No Record Found",
            "attempts": "1",
            "enqueued_at": "1700000000000",
            "lane": "bulk",
            "failed_at": "1700000001000",
        },
    )


def test_dlq_list_replay_and_purge(env: Env, store: SyncRedis, keys: AccountKeys) -> None:
    add_letter(store, keys, "j1", "9876500001", "no_record")
    add_letter(store, keys, "j2", "9876500002", "invalid_campaign")
    add_letter(store, keys, "j3", "9876500003", "no_record")

    listed = json_lines(cli(env, "dlq", "list", "--json", "--reason", "no_record").stdout)
    assert [letter["job_id"] for letter in listed] == ["j1", "j3"]
    assert set(listed[0]) >= {
        "job_id",
        "account",
        "campaign",
        "phone",
        "name",
        "reason",
        "message",
        "attempts",
        "failed_at",
    }
    assert listed[0]["failed_at"].startswith("2023-11-14T22:13:21")

    replayed = cli(env, "dlq", "replay", "--reason", "no_record", "--limit", "1")
    assert replayed.exit_code == EXIT_OK
    assert replayed.stdout.startswith("replayed 1,")
    [(_, job)] = store.xrange(keys.retry)
    assert (job["replay_of"], job["phone"]) == ("j1", "9876500001")

    refused = cli(env, "dlq", "purge")
    assert refused.exit_code == EXIT_USAGE
    assert "--yes" in one_error_line(refused)
    assert store.xlen(keys.dlq) == 2

    purged = cli(env, "dlq", "purge", "--reason", "invalid_campaign", "--yes")
    assert purged.stdout.strip() == "purged 1"
    assert [f["job_id"] for _, f in store.xrange(keys.dlq)] == ["j3"]


def test_results_json_lines_newest_last_and_limited(
    env: Env, store: SyncRedis, keys: AccountKeys
) -> None:
    for i, outcome in enumerate(("deleted", "dead", "already_deleted")):
        store.xadd(
            keys.results,
            {
                "job_id": f"j{i}",
                "account": "default",
                "campaign": "c",
                "phone": f"987650000{i}",
                "name": "",
                "outcome": outcome,
                "reason": "no_record" if outcome == "dead" else "",
                "message": "m",
                "attempts": "1",
                "enqueued_at": "1700000000000",
                "finished_at": "1700000002000",
            },
        )
    every = json_lines(cli(env, "results", "--json", "--limit", "0").stdout)
    assert [r["job_id"] for r in every] == ["j0", "j1", "j2"]
    assert [r["reason"] for r in every] == [None, "no_record", None]
    assert every[0]["finished_at"].startswith("2023-11-14T22:13:22")

    newest = json_lines(cli(env, "results", "--json", "--limit", "2").stdout)
    assert [r["job_id"] for r in newest] == ["j1", "j2"]


def test_run_exits_0_when_drained_and_4_when_the_account_is_halted(
    env: Env, store: SyncRedis, keys: AccountKeys
) -> None:
    worker_env = {**env, **CREDENTIALS, "OZONETEL_AUTH_MODE": "apikey"}
    drained = cli(worker_env, "run", "--until-empty", "--concurrency", "2")
    assert drained.exit_code == EXIT_OK, drained.output

    store.set(keys.halted, "Invalid User Details")
    assert cli(worker_env, "enqueue", "--campaign", "c", "--phone", "9876500001").exit_code == 0
    halted = cli(worker_env, "run", "--until-empty")
    assert halted.exit_code == EXIT_HALTED
    assert "halted: default" in halted.stderr
    # The backlog stays queued for after the credentials are fixed.
    assert store.xlen(keys.bulk) == 1


def test_run_refuses_a_bad_http_address_and_missing_credentials(env: Env) -> None:
    http = cli({**env, **CREDENTIALS}, "run", "--http", "localhost:http")
    assert http.exit_code == EXIT_USAGE
    assert "expected HOST:PORT" in one_error_line(http)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        # Without --until-empty: the pool must stop because the server could not start.
        busy = cli({**env, **CREDENTIALS}, "run", "--http", f"127.0.0.1:{taken.getsockname()[1]}")
    assert busy.exit_code == EXIT_USAGE
    assert busy.stderr.strip().splitlines()[-1].startswith("error: cannot serve HTTP on ")

    no_key = cli(env, "run", "--until-empty")
    assert no_key.exit_code == EXIT_USAGE
    assert "OZONETEL_API_KEY" in one_error_line(no_key)


def test_token_refresh_generates_once_through_the_simulator_and_prints_no_token(
    env: Env, store: SyncRedis, keys: AccountKeys
) -> None:
    apikey = cli({**env, **CREDENTIALS, "OZONETEL_AUTH_MODE": "apikey"}, "token", "refresh")
    assert apikey.exit_code == EXIT_USAGE
    assert "no token to refresh" in one_error_line(apikey)

    simulator = subprocess.Popen(
        [sys.executable, "-m", "worker", "simulate", "--port", "0"],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert simulator.stdout is not None
        line = simulator.stdout.readline()
        assert line.startswith("ozonetel simulator listening on http://127.0.0.1:"), line
        base_url = line.split()[-1]
        sim_env = {**env, **CREDENTIALS, "OZONETEL_BASE_URL": base_url}

        results = [cli(sim_env, "token", "refresh") for _ in range(2)]

        assert [r.exit_code for r in results] == [EXIT_OK, EXIT_OK]
        assert "generation 1" in results[0].stdout
        assert "generation 2" in results[1].stdout
        token = store.hget(keys.token, "value")
        assert token and store.hget(keys.token, "gen") == "2"
        for result in results:
            assert token not in result.output
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)
        if simulator.stdout is not None:
            simulator.stdout.close()


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--latency", "sometimes"], "latency"),
        (["--user", "alice"], "--user and --api-key"),
        (["--error-rate", "0.8", "--drop-rate", "0.5"], "must not exceed 1"),
    ],
)
def test_simulate_refuses_bad_options(env: Env, args: list[str], reason: str) -> None:
    result = cli(env, "simulate", *args)
    assert result.exit_code == EXIT_USAGE
    assert reason in one_error_line(result)


def test_help_names_the_exit_codes(env: Env) -> None:
    result = cli(env, "--help")
    assert result.exit_code == EXIT_OK
    assert "3 no Redis" in result.stdout
    for command in ("run", "enqueue", "import", "status", "results", "dlq", "token", "pause"):
        assert command in result.stdout


def test_results_follow_prints_new_results_until_interrupted(
    env: Env, store: SyncRedis, keys: AccountKeys
) -> None:
    store.xadd(keys.results, {"job_id": "before", "outcome": "deleted", "attempts": "1"})
    follower = subprocess.Popen(
        [sys.executable, "-m", "worker", "results", "--json", "--follow", "--limit", "0"],
        env=child_env(REDIS_URL=str(env["REDIS_URL"]), OZP_KEY_PREFIX=keys.prefix),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        assert json.loads(follower.stdout.readline())["job_id"] == "before"
        store.xadd(keys.results, {"job_id": "after", "outcome": "dead", "attempts": "2"})
        new = json.loads(follower.stdout.readline())
        assert (new["job_id"], new["outcome"], new["attempts"]) == ("after", "dead", 2)
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=10) == EXIT_OK
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
        for stream in (follower.stdout, follower.stderr):
            if stream is not None:
                stream.close()


def test_dlq_refuses_a_reason_that_does_not_exist(
    env: Env, store: SyncRedis, keys: AccountKeys
) -> None:
    add_letter(store, keys, "j1", "9876500001", "no_record")
    for command in ("list", "replay", "purge"):
        typo = cli(env, "dlq", command, "--reason", "no_recrod")
        assert typo.exit_code == EXIT_USAGE
        assert "not a dead-letter reason" in typo.output
    assert store.xlen(keys.dlq) == 1


def test_results_json_prints_every_record_unless_limited_and_the_table_the_newest(
    env: Env, store: SyncRedis, keys: AccountKeys
) -> None:
    """A script reading --json must never get a silently cut list."""
    for i in range(HUMAN_RESULTS + 5):
        store.xadd(keys.results, {"job_id": f"j{i}", "outcome": "deleted", "phone": "98765"})
    every = json_lines(cli(env, "results", "--json").stdout)
    assert [r["job_id"] for r in every] == [f"j{i}" for i in range(HUMAN_RESULTS + 5)]
    table = cli(env, "results")
    assert table.exit_code == EXIT_OK
    assert "j4 " not in table.stdout and f"j{HUMAN_RESULTS + 4}" in table.stdout
