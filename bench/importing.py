"""The import benchmark: ``python -m worker import FILE`` from the outside.

Rows per second end to end (interpreter start to exit, as a user sees it),
Redis bytes per queued job (``used_memory`` after minus before, over the jobs
queued: the stream entry, the de-duplication member and their overhead), and
the importer's peak RSS, which must not grow with the file: it streams.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.deletions import write_csv
from bench.environment import base_env
from bench.processes import Child, Usage, python_module, wait_all
from bench.redis_server import fresh_redis, sample, stream_length
from worker.config.settings import DEFAULT_ACCOUNT, DEFAULT_KEY_PREFIX
from worker.store.keys import AccountKeys

_SUMMARY = re.compile(r"queued (\d+), duplicates skipped (\d+), rejected (\d+)")
# Generous: at a tenth of the rate measured on a 2-core machine, plus start-up.
_MIN_ROWS_PER_S = 1000
_START_ALLOWANCE_S = 120.0

BULK_STREAM = AccountKeys(DEFAULT_KEY_PREFIX, DEFAULT_ACCOUNT).bulk


@dataclass(frozen=True)
class ImportRun:
    usage: Usage
    queued: int
    duplicates: int
    rejected: int


def import_timeout_s(rows: int) -> float:
    return _START_ALLOWANCE_S + rows / _MIN_ROWS_PER_S


def import_file(env: Mapping[str, str], csv: Path, log: Path, rows: int) -> ImportRun:
    """Run the importer on ``csv``; raise if it failed or queued other than every row."""
    child = Child(python_module("worker", "import", str(csv)), env, log)
    (usage,) = wait_all([child], import_timeout_s(rows))
    output = log.read_text(errors="replace")
    found = _SUMMARY.search(output)
    if usage.exit_code != 0 or found is None:
        raise RuntimeError(f"import exited {usage.exit_code}: {output[-500:].strip()}")
    queued, duplicates, rejected = (int(n) for n in found.groups())
    if queued != rows:
        raise RuntimeError(f"import queued {queued} of {rows} rows: {found.group(0)}")
    return ImportRun(usage, queued, duplicates, rejected)


@dataclass(frozen=True)
class ImportResult:
    rows: int
    file_bytes: int
    seconds: float
    rows_per_s: float
    redis_bytes_per_job: float
    importer_peak_rss_mib: float
    importer_cpu_s: float
    queued: int
    stream_length: int


def measure_import(rows: int, workdir: Path) -> ImportResult:
    run_dir = workdir / f"import-{rows}"
    run_dir.mkdir(parents=True, exist_ok=True)
    csv = write_csv(run_dir / "deletions.csv", rows)
    with fresh_redis(run_dir / "redis") as server:
        env = base_env()
        env["REDIS_URL"] = server.url
        before = sample(server.url)
        started = time.monotonic()
        run = import_file(env, csv, run_dir / "import.log", rows)
        seconds = time.monotonic() - started
        after = sample(server.url)
        length = stream_length(server.url, BULK_STREAM)
    file_bytes = csv.stat().st_size
    csv.unlink()  # a million rows is some 30 MB, no longer needed
    return ImportResult(
        rows=rows,
        file_bytes=file_bytes,
        seconds=seconds,
        rows_per_s=rows / seconds,
        redis_bytes_per_job=(after.used_memory - before.used_memory) / run.queued,
        importer_peak_rss_mib=run.usage.peak_rss_bytes / 2**20,
        importer_cpu_s=run.usage.cpu_s,
        queued=run.queued,
        stream_length=length,
    )
