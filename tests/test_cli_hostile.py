"""Hostile data through the human views: what sits in Redis is shown, never obeyed.

Entries are written straight into the streams and keys, as a buggy or
malicious producer (or a campaign name the API accepted) would leave them,
and the real commands read them back. Every view must exit 0, print no
character a terminal acts on (ESC, BEL, C1, ``\\r``, bidi overrides; only
our own newlines), show rich markup as the literal text it is, and survive
bytes that are not UTF-8 and numbers no datetime can hold.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st
from redis import Redis as SyncRedis
from rich.console import Console
from typer.testing import CliRunner, Result

from worker.cli import EXIT_OK, app
from worker.cli.drain_view import live_panel, summary_footer, summary_table
from worker.cli.safe_text import safe_text, visible
from worker.cli.views import (
    dead_letters_table,
    duration,
    result_cells,
    result_line,
    results_table,
    token_lines,
)
from worker.drain.batch import DrainProgress, DrainSpec
from worker.drain.report import Summary
from worker.store.keys import AccountKeys, accounts_key

# Wide enough that no table cell wraps, so a value can be found whole.
COLUMNS = "1000"
# Anything that would make rich colour its output even off a terminal.
_COLOUR_VARS = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "CLICOLOR_FORCE")
HUMAN_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("results", "--limit", "0"),
    ("dlq", "list"),
    ("status",),
    ("token", "status"),
)
JSON_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("results", "--json", "--limit", "0"),
    ("dlq", "list", "--json"),
    ("status", "--json"),
    ("token", "status", "--json"),
)

ESCAPES = {
    "clear": "\x1b[2J",
    "osc8": "\x1b]8;;https://evil.example\x07click\x1b]8;;\x07",
    "bel": "ring\x07",
    "cr": "fake\rreal",
    "backspace": "ab\x08\x08XY",
    "c1_csi": "\x9b31mred",
    "bidi": "abc\u202edcba",
    "line_separator": "one\u2028two",
    "newline": "one\ntwo",
    "tab": "a\tb",
    "del": "x\x7fy",
}
MARKUP = {
    "unclosed": "[/oops]",
    "link": "[link=https://evil.example]x[/link]",
    "style": "[bold red]loud[/]",
    "emoji": ":thumbs_up:",
}


def _assert_harmless(text: str) -> None:
    """No character a terminal would act on; newlines are ours (table rows)."""
    for char in text:
        if char == "\n":
            continue
        category = unicodedata.category(char)
        assert category not in {"Cc", "Cf", "Cs", "Zl", "Zp"}, (
            f"{char!r} ({category}) reached the output: {text!r}"
        )


@pytest.fixture
def store(redis_url: str) -> Iterator[SyncRedis]:
    # Bytes in, bytes out: hostile values need not be UTF-8.
    client = SyncRedis.from_url(redis_url)
    yield client
    client.close()


def _env(redis_url: str, prefix: str) -> dict[str, str | None]:
    """The test's Redis and prefix; nothing of the developer's product or colour settings."""
    cleared: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("OZP_", "OZONETEL_")) or k in _COLOUR_VARS
    }
    return {**cleared, "REDIS_URL": redis_url, "OZP_KEY_PREFIX": prefix, "COLUMNS": COLUMNS}


def cli(redis_url: str, prefix: str, *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=_env(redis_url, prefix))


def run_cli(redis_url: str, prefix: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """``python -m worker`` as a person runs it: stdout strictly UTF-8, as a terminal's."""
    env = {k: v for k, v in os.environ.items() if v is not None}
    env.update({k: v for k, v in _env(redis_url, prefix).items() if v is not None})
    for name, value in _env(redis_url, prefix).items():
        if value is None:
            env.pop(name, None)
    env["PYTHONIOENCODING"] = "utf-8"  # strict: a lone surrogate would raise
    return subprocess.run(
        [sys.executable, "-m", "worker", *args], env=env, capture_output=True, timeout=60
    )


Value = str | bytes


def write_result(store: SyncRedis, keys: AccountKeys, **fields: Value) -> None:
    entry: dict[str, Value] = {
        "job_id": "j1",
        "account": keys.account,
        "campaign": "spring",
        "phone": "9876500001",
        "name": "",
        "outcome": "dead",
        "reason": "no_record",
        "message": "No Record Found",
        "attempts": "1",
        "enqueued_at": "1700000000000",
        "finished_at": "1700000002000",
    }
    entry.update(fields)
    store.xadd(keys.results, entry)  # type: ignore[arg-type]


def write_letter(store: SyncRedis, keys: AccountKeys, **fields: Value) -> None:
    entry: dict[str, Value] = {
        "job_id": "j1",
        "account": keys.account,
        "campaign": "spring",
        "phone": "9876500001",
        "name": "",
        "outcome": "dead",
        "reason": "no_record",
        "message": "No Record Found",
        "attempts": "1",
        "enqueued_at": "1700000000000",
        "lane": "bulk",
        "failed_at": "1700000001000",
    }
    entry.update(fields)
    store.xadd(keys.dlq, entry)  # type: ignore[arg-type]


def write_status(store: SyncRedis, keys: AccountKeys, reason: Value, account: Value) -> None:
    """The free-text status keys, and an account only Redis knows, named ``account``."""
    store.set(keys.halted, reason)
    store.set(keys.token_wait, reason)
    store.set(keys.paused, reason)
    store.sadd(accounts_key(keys.prefix), keys.account, account)


# --- the neutralising function itself ---------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[2J", "\\x1b[2J"),
        ("\x1b]8;;u\x07x", "\\x1b]8;;u\\x07x"),
        ("a\rb\nc\td", "a\\rb\\nc\\td"),
        ("\x08\x7f\x9b\x85", "\\x08\\x7f\\x9b\\x85"),
        ("abc\u202edcba\u2066", "abc\\u202edcba\\u2066"),
        ("one\u2028two\u2029", "one\\u2028two\\u2029"),
        ("\u200bzero\ufeff", "\\u200bzero\\ufeff"),
        ("tag\U000e0041", "tag\\U000e0041"),
        (b"caf\xe9 \xff".decode("utf-8", "surrogateescape"), "caf\\xe9 \\xff"),
        ("\ud800lone", "\\ud800lone"),
        # Printable text stays as it is, whatever its script or its brackets.
        ("[/oops] :smile: café 日本 \u00a0 👍", "[/oops] :smile: café 日本 \u00a0 👍"),
        (12, "12"),
    ],
)
def test_visible_escapes_exactly_what_a_terminal_would_act_on(raw: object, shown: str) -> None:
    assert visible(raw) == shown


def test_safe_text_is_never_parsed_as_markup_or_emoji() -> None:
    console = Console(width=200, color_system=None, highlight=False, record=True)
    with console.capture() as captured:
        console.print(safe_text("[/oops] [link=https://evil]x[/link] :smile: \x1b[31m"))
    assert captured.get() == "[/oops] [link=https://evil]x[/link] :smile: \\x1b[31m\n"
    assert safe_text(None, placeholder="-").plain == "-"
    assert safe_text("").plain == ""


# --- the views, fed every shape a parsed entry may take ---------------------


ODD_VALUES: list[Any] = [None, "", "1e999", "-5", 10**40, float("inf"), float("nan"), -1.5, True]


@pytest.mark.parametrize("odd", ODD_VALUES)
def test_views_show_any_value_a_parser_returns(odd: Any) -> None:
    view = {
        "job_id": odd,
        "account": odd,
        "campaign": odd,
        "phone": odd,
        "name": odd,
        "outcome": odd,
        "reason": odd,
        "message": odd,
        "attempts": odd,
        "enqueued_at": odd,
        "finished_at": odd,
        "failed_at": odd,
        "entry_id": "1-0",
    }
    health = {
        "account": odd,
        "auth_mode": "token",
        "present": True,
        "generation": odd,
        "age_s": odd,
        "expires_in_s": odd,
        "generations_in_window": odd,
        "budget_window_s": odd,
        "budget": odd,
        "waiting": odd,
        "halted": odd,
    }
    console = Console(width=300, color_system=None, highlight=False)
    with console.capture() as captured:
        console.print(results_table([view, {}]))
        console.print(dead_letters_table([view, {}]))
        console.print(result_line(view))
        for line in token_lines(health):
            console.print(line)
    _assert_harmless(captured.get())
    if not isinstance(odd, int | float) or isinstance(odd, bool) or not math.isfinite(odd):
        assert duration(odd) == "-"


def test_a_missing_time_and_a_missing_count_show_a_placeholder() -> None:
    view = {"job_id": "j1", "finished_at": None, "attempts": None, "outcome": "deleted"}
    cells = [cell.plain for cell in result_cells(view)]
    assert cells[0] == "-" and cells[5] == "-"
    assert cells[1] == "deleted"


# --- the real commands over hostile entries ---------------------------------


def _every_hostile_value() -> dict[str, str]:
    return {**ESCAPES, **MARKUP}


def test_hostile_text_in_every_field_is_shown_literally_by_every_view(
    store: SyncRedis, redis_url: str, key_prefix: str
) -> None:
    keys = AccountKeys(key_prefix, "default")
    for name, value in _every_hostile_value().items():
        fields = {field: f"{field}:{name}:{value}" for field in ("job_id", "campaign", "phone")}
        fields |= {field: f"{name}:{value}" for field in ("name", "message", "reason", "account")}
        write_result(store, keys, **fields)
        write_letter(store, keys, **fields)
    reason = "[/bad] " + ESCAPES["osc8"] + ESCAPES["clear"] + ESCAPES["bidi"]
    write_status(store, keys, reason, account="[/acc]" + ESCAPES["clear"] + ESCAPES["c1_csi"])

    outputs: dict[str, str] = {}
    for command in HUMAN_COMMANDS:
        done = run_cli(redis_url, key_prefix, *command)
        stdout, stderr = done.stdout.decode(), done.stderr.decode()
        assert done.returncode == EXIT_OK, (command, stderr)
        assert "Traceback" not in stdout + stderr
        _assert_harmless(stdout)
        _assert_harmless(stderr)
        outputs[command[0]] = stdout

    for view in ("results", "dlq"):
        shown = outputs[view]
        for name, value in _every_hostile_value().items():
            assert f"campaign:{name}:{visible(value)}" in shown, (name, shown)
            assert f"{name}:{visible(value)}" in shown
    # The markup is there as text, so rich did not act on it.
    assert (
        "[/oops]" in outputs["results"] and "[link=https://evil.example]x[/link]" in outputs["dlq"]
    )
    assert ":thumbs_up:" in outputs["results"] and "👍" not in outputs["results"]
    assert "\\x1b]8;;https://evil.example\\x07click" in outputs["results"]
    assert f"HALTED: {visible(reason)}" in outputs["status"]
    assert visible("[/acc]" + ESCAPES["clear"] + ESCAPES["c1_csi"]) in outputs["status"]
    assert f"HALTED: {visible(reason)}" in outputs["token"]
    assert f"waiting: {visible(reason)}" in outputs["token"]


def test_bytes_that_are_not_utf8_are_shown_as_escapes_and_stay_valid_json(
    store: SyncRedis, redis_url: str, key_prefix: str
) -> None:
    keys = AccountKeys(key_prefix, "default")
    raw = b"caf\xe9 \xff\xfe\x1b[2J"
    fields: dict[str, Value] = {
        field: raw for field in ("job_id", "campaign", "phone", "name", "message", "reason")
    }
    write_result(store, keys, **fields)
    write_letter(store, keys, **fields)
    write_status(store, keys, raw, account=raw)

    for command in HUMAN_COMMANDS:
        done = run_cli(redis_url, key_prefix, *command)
        stdout, stderr = done.stdout.decode(), done.stderr.decode()
        assert done.returncode == EXIT_OK, (command, stderr)
        assert "Traceback" not in stdout + stderr
        _assert_harmless(stdout + stderr)
        assert "caf\\xe9 \\xff\\xfe\\x1b[2J" in stdout, (command, stdout)

    for command in JSON_COMMANDS:
        done = run_cli(redis_url, key_prefix, *command)
        assert done.returncode == EXIT_OK, (command, done.stderr.decode())
        for line in done.stdout.decode("ascii").splitlines():
            json.loads(line)  # valid JSON, in ASCII: the surrogates are \u escapes


def test_numbers_no_datetime_can_hold_print_a_placeholder(
    store: SyncRedis, redis_url: str, key_prefix: str
) -> None:
    keys = AccountKeys(key_prefix, "default")
    hostile = {
        "enqueued_at": "99999999999999999999",
        "finished_at": "99999999999999999999",
        "failed_at": "99999999999999999999",
        "attempts": "1e999",
    }
    write_result(store, keys, job_id="big", **hostile)
    write_result(store, keys, job_id="negative", finished_at="-5", attempts="-1")
    write_result(store, keys, job_id="nan", finished_at="nan", attempts="nan")
    write_letter(store, keys, job_id="big", **hostile)
    write_letter(store, keys, job_id="negative", failed_at="-5", attempts="inf")

    for command in (("results", "--limit", "0"), ("dlq", "list")):
        done = run_cli(redis_url, key_prefix, *command)
        stdout, stderr = done.stdout.decode(), done.stderr.decode()
        assert done.returncode == EXIT_OK, (command, stderr)
        assert "Traceback" not in stdout + stderr
        rows = {line.split("│")[3].strip(): line for line in stdout.splitlines() if "│" in line}
        assert {"big", "negative"} <= set(rows), stdout
        # No time for any of them: the first column is the placeholder.
        assert rows["big"].split("│")[1].strip() == "-"
        assert rows["negative"].split("│")[1].strip() == "-"


# --- any text and any bytes, through the real views -------------------------

_examples = itertools.count()
field_values = st.one_of(st.text(max_size=40), st.binary(max_size=40))
FIELDS = ("campaign", "phone", "name", "message", "reason", "job_id", "account")


def _decoded(value: Value) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


@hypothesis.settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    # One Redis and one prefix per test; each example takes a fresh account.
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
@hypothesis.given(
    values=st.fixed_dictionaries({field: field_values for field in FIELDS}),
    status_text=field_values,
)
def test_any_text_or_bytes_in_any_field_is_shown_and_never_obeyed(
    store: SyncRedis, redis_url: str, key_prefix: str, values: dict[str, Value], status_text: Value
) -> None:
    prefix = f"{key_prefix}-{next(_examples)}"
    keys = AccountKeys(prefix, "default")
    write_result(store, keys, **values)
    write_letter(store, keys, **values)
    write_status(store, keys, status_text, account=status_text or "x")

    for command in HUMAN_COMMANDS:
        result = cli(redis_url, prefix, *command)
        assert result.exit_code == EXIT_OK, (command, result.output, result.exception)
        _assert_harmless(result.stdout)
        _assert_harmless(result.stderr)
        if command[0] in ("results", "dlq"):
            for field in ("campaign", "phone", "message"):
                assert visible(_decoded(values[field])) in result.stdout, field
    for command in JSON_COMMANDS:
        result = cli(redis_url, prefix, *command)
        assert result.exit_code == EXIT_OK, (command, result.output, result.exception)
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        if command[0] == "results":
            assert lines[0]["campaign"] == _decoded(values["campaign"])


def test_the_drain_views_show_a_hostile_file_name_tag_and_reason_literally() -> None:
    hostile = "[/oops]\x1b[2J\u202e"
    spec = DrainSpec(
        Path("reports") / f"{hostile}.csv", tag=hostile, keys=AccountKeys("p", hostile)
    )
    status = {
        "queued": {"urgent": 0, "bulk": 1},
        "in_flight": 0,
        "delayed": 0,
        "done": 0,
        "dead": 0,
        "paused": None,
        "halted": hostile,
        "rate_last_min": 0,
        "eta_s": float("inf"),
    }
    summary = Summary(
        file=f"{hostile}.csv",
        tag=hostile,
        account=hostile,
        report_dir="r",
        outcomes_csv=f"{hostile}/outcomes.csv",
        summary_json="summary.json",
        rejects_csv="rejects.csv",
        rows=1,
        reasons={"dead": {hostile: 1}},
    )
    console = Console(width=300, color_system=None, highlight=False)
    with console.capture() as captured:
        console.print(live_panel(spec, DrainProgress(), status, (0, 0)))
        console.print(summary_table(summary))
        console.print(summary_footer(summary))
    shown = captured.get()
    _assert_harmless(shown)
    assert shown.count(visible(hostile)) >= 6, shown
    assert "outcomes: " in shown and "\nsummary:  summary.json\n" in shown


def test_results_follow_shows_a_new_hostile_result_as_one_harmless_line(
    store: SyncRedis, redis_url: str, key_prefix: str
) -> None:
    keys = AccountKeys(key_prefix, "default")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OZP_", "OZONETEL_"))}
    env = {k: v for k, v in env.items() if k not in _COLOUR_VARS}
    env |= {"REDIS_URL": redis_url, "OZP_KEY_PREFIX": key_prefix, "PYTHONIOENCODING": "utf-8"}
    follower = subprocess.Popen(
        [sys.executable, "-m", "worker", "results", "--follow"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert follower.stderr is not None and follower.stdout is not None
        # Nothing yet: the follower says so on stderr, then waits for new entries.
        assert b"no results yet" in follower.stderr.readline()
        write_result(store, keys, job_id="after", campaign=b"[/oops]\x1b]8;;x\x07\xff\r")
        line = follower.stdout.readline().decode()
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=10) == EXIT_OK
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
        for stream in (follower.stdout, follower.stderr):
            if stream is not None:
                stream.close()
    _assert_harmless(line)
    assert "after" in line and "[/oops]\\x1b]8;;x\\x07\\xff\\r" in line


def test_an_error_line_quoting_names_from_redis_shows_them_as_text(
    store: SyncRedis, redis_url: str, key_prefix: str
) -> None:
    """``status --account nope`` lists the known accounts, some of which only
    Redis knows: a hostile one must not reach the terminal as instructions."""
    keys = AccountKeys(key_prefix, "default")
    hostile = ESCAPES["osc8"] + MARKUP["unclosed"] + MARKUP["emoji"]
    store.sadd(accounts_key(keys.prefix), hostile)
    done = run_cli(redis_url, key_prefix, "status", "--account", "nope")
    assert done.returncode == 2
    error = done.stderr.decode("utf-8")
    assert error.startswith("error: unknown account") and "Traceback" not in error
    _assert_harmless(error)
    assert "[/oops]" in error and ":thumbs_up:" in error and "\\x1b]8;;" in error
