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
