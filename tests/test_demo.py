"""``ozonetel-purge demo``: on a machine with nothing configured, it drains the
shipped sample through the simulator and prints what became of each row,
counts that follow from the shipped files alone."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import sys
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from worker import demo
from worker.errors import BadInput
from worker.queue.jobs import make_job

pytestmark = pytest.mark.slow


def expected_counts() -> Counter[str]:
    """Outcome (and dead-letter reason) per row, from sample.csv and campaigns.json."""
    campaigns = {
        name: set(numbers)
        for name, numbers in json.loads(demo.campaigns_file().read_text()).items()
    }
    counts: Counter[str] = Counter()
    seen: set[tuple[str, str]] = set()
    with demo.sample_list().open(newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                job = make_job(row["campaignName"], row["phoneNumber"], row["name"])
            except BadInput:
                counts["rejected"] += 1
                continue
            if (job.campaign, job.phone) in seen:
                counts["duplicate"] += 1
            elif job.campaign not in campaigns:
                counts.update(["dead", "invalid_campaign"])
            elif job.phone not in campaigns[job.campaign]:
                counts.update(["dead", "no_record"])
            else:
                counts["deleted"] += 1
            seen.add((job.campaign, job.phone))
    counts["total"] = sum(counts[k] for k in ("deleted", "dead", "rejected", "duplicate"))
    return counts


def printed_counts(stdout: str) -> Counter[str]:
    """``name  n`` rows of the summary table."""
    found: Counter[str] = Counter()
    for line in stdout.splitlines():
        match = re.fullmatch(r"\s*([a-z_]+)\s+(\d+)\s*", line)
        if match:
            found[match[1]] = int(match[2])
    return found


async def test_demo_drains_the_sample_and_prints_its_outcomes(tmp_path: Path) -> None:
    # Nothing of the caller's environment may matter: not even a REDIS_URL.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OZP_", "OZONETEL_"))}
    env["REDIS_URL"] = "redis://127.0.0.1:9/0"
    report = tmp_path / "report"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        "demo",
        "--report",
        str(report),
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        stdout, stderr = await process.communicate()
    text = stdout.decode()
    assert process.returncode == 0, stderr.decode()[-2000:]

    expected = expected_counts()
    # The sample holds every kind of row.
    for kind in ("deleted", "no_record", "invalid_campaign", "rejected", "duplicate"):
        assert expected[kind] > 0, kind
    printed = printed_counts(text)
    for kind, count in expected.items():
        assert printed[kind] == count, (kind, text)
    assert printed["already_deleted"] == 0
    assert printed["pending"] == 0
    assert str(report / "outcomes.csv") in text

    summary = json.loads((report / "summary.json").read_text())
    assert summary["complete"] is True
    assert summary["outcomes"]["deleted"] == expected["deleted"]
    with (report / "outcomes.csv").open(newline="") as handle:
        assert sum(1 for _ in csv.DictReader(handle)) == expected["total"]


async def test_demo_console_serves_the_demos_drain_until_stopped(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OZP_", "OZONETEL_"))}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker", "demo", "--report", str(tmp_path / "report"),
        "--console", "--console-port", "0",
        env=env, cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    try:
        async with asyncio.timeout(60):
            announced = ""
            while "sign in with" not in announced:
                announced = (await process.stderr.readline()).decode()
                assert announced, "demo ended without serving the console"
            match = re.search(r"(http://127\.0\.0\.1:\d+)/console, sign in with (\S+)", announced)
            assert match, announced
            base, key = match[1], match[2]
            # unsafe: the cookie jar keeps cookies of an IP address (127.0.0.1) only so.
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(cookie_jar=jar) as session:
                signed_in = await session.post(
                    f"{base}/console/login", data={"key": key}, allow_redirects=False
                )
                assert signed_in.status == 303 and signed_in.headers["Location"] == "/console"
                while "stays up" not in announced:
                    announced = (await process.stderr.readline()).decode()
                    assert announced, "demo ended before the drain was over"
                overview = await (await session.get(f"{base}/console/api/overview")).json()
            entry = overview["accounts"][demo.DEMO_ACCOUNT]
            expected = expected_counts()
            # The drain is over and the console shows its end state.
            assert entry["done"] == expected["deleted"]
            assert entry["dead"] == expected["dead"]
            assert entry["queued"] == {"urgent": 0, "bulk": 0} and entry["in_flight"] == 0
            process.terminate()
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
