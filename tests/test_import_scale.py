"""``import`` at scale: exact counts on a large file with duplicates and bad
rows, memory flat in the file's size, and the compact enqueue encoding.

Speed and bytes per job are measured, not asserted: benchmarks are not tests.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from worker.queue.jobs import Job, dedupe_digest, make_job
from worker.queue.lanes import ENQUEUE_BATCH, Queue
from worker.store.keys import AccountKeys

CAMPAIGN = "spring-2026"
HEADER = "phoneNumber,campaignName,name\n"
# Every bad row is one of these, by its index in the file, with make_job's reason.
BAD_ROWS = [
    ("12", CAMPAIGN, "phone number must be 5-15 digits with an optional leading '+'"),
    ("98765abc01", CAMPAIGN, "phone number must be 5-15 digits with an optional leading '+'"),
    ("9876543210", "", "campaign is empty"),
    ("", CAMPAIGN, "phone number is empty"),
]
# Peak RSS of a child, from a small parent of its own: a child's ru_maxrss
# starts from the RSS of the process that spawned it, which under pytest is
# large and would hide the child's own growth.
PEAK_RSS_LAUNCHER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[1:])\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(code)\n"
)
RSS_MARGIN_KB = 15 * 1024


@dataclass
class Generated:
    path: Path
    unique_good: set[str]  # phones
    bad_lines: dict[int, str]  # line number: reason


def phone(i: int) -> str:
    return f"98{i:08d}"


def generate(path: Path, rows: int, duplicate_every: int = 20, bad_every: int = 100) -> Generated:
    """A CSV of ``rows`` rows: 1 in ``duplicate_every`` repeats an earlier row
    (often one in another batch), 1 in ``bad_every`` is a bad row."""
    unique: set[str] = set()
    bad: dict[int, str] = {}
    back = duplicate_every // 2 + duplicate_every * (2 * ENQUEUE_BATCH // duplicate_every)
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER)
        for i in range(rows):
            line = i + 2  # the header is line 1
            if i % bad_every == bad_every - 1:
                number, campaign, reason = BAD_ROWS[(i // bad_every) % len(BAD_ROWS)]
                out.write(f"{number},{campaign},bad {i}\n")
                bad[line] = reason
            elif i % duplicate_every == duplicate_every // 2:
                # Mostly a row in an earlier batch: one that is neither bad nor a repeat.
                earlier = i - back if i >= back else i - 1
                out.write(f"{phone(earlier)},{CAMPAIGN},again {i}\n")
            else:
                out.write(f"{phone(i)},{CAMPAIGN},Customer {i}\n")
                unique.add(phone(i))
    return Generated(path, unique, bad)


def child_env(redis_url: str, key_prefix: str) -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("OZP_", "OZONETEL_"))}
    return {**kept, "REDIS_URL": redis_url, "OZP_KEY_PREFIX": key_prefix}


def run_import(redis_url: str, key_prefix: str, *args: str) -> tuple[str, int]:
    """``python -m worker import ARGS``: its stdout, and its peak RSS in KiB."""
    command = [sys.executable, "-m", "worker", "--log-level", "warning", "import", *args]
    process = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_LAUNCHER, *command],
        env=child_env(redis_url, key_prefix),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 0, process.stderr
    output, _, peak_kb = process.stdout.strip().rpartition("\n")
    return output, int(peak_kb)


@pytest.fixture
def store(redis_url: str) -> Iterator[SyncRedis]:
    client = SyncRedis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def test_a_large_import_queues_exactly_the_unique_good_rows_and_reports_the_rest(
    redis_url: str, key_prefix: str, store: SyncRedis, tmp_path: Path
) -> None:
    rows = 100_000
    generated = generate(tmp_path / "list.csv", rows)
    keys = AccountKeys(key_prefix, "default")
    # Already queued (on the other lane) before the import: skipped as duplicates too.
    queued_before = [phone(i) for i in range(0, 4000, 40)]
    for number in queued_before:
        store.sadd(keys.pending, dedupe_digest(CAMPAIGN, number))
        store.xadd(
            keys.urgent, {"v": "1", "id": f"x{number}", "campaign": CAMPAIGN, "phone": number}
        )
    rejects = tmp_path / "rejects.csv"

    summary, _ = run_import(redis_url, key_prefix, str(generated.path), "--rejects", str(rejects))

    queued = len(generated.unique_good - set(queued_before))
    duplicates = rows - len(generated.bad_lines) - queued
    assert len(generated.bad_lines) == rows // 100
    assert duplicates == rows // 20 + len(queued_before)
    assert summary == (
        f"queued {queued}, duplicates skipped {duplicates}, rejected {len(generated.bad_lines)}"
    )
    assert store.xlen(keys.bulk) == queued
    assert store.scard(keys.pending) == queued + len(queued_before)
    with rejects.open(newline="", encoding="utf-8") as handle:
        reported = list(csv.reader(handle))
    assert reported[0] == ["line", "reason", "raw"]
    assert {int(line): reason for line, reason, _ in reported[1:]} == generated.bad_lines
    assert len(reported) - 1 == len(generated.bad_lines)
    first_line, _, first_raw = reported[1]
    assert first_raw == f"12,{CAMPAIGN},bad {int(first_line) - 2}"
    # In the file's order, the first of equal rows queued, in the wire format.
    entries = [fields for _, fields in store.xrange(keys.bulk)]
    assert [fields["phone"] for fields in entries[:3]] == [phone(1), phone(2), phone(3)]
    assert entries[0] == {
        "v": "1",
        "id": entries[0]["id"],
        "campaign": CAMPAIGN,
        "phone": phone(1),
        "name": "Customer 1",
    }
    assert not [fields for fields in entries if not fields["name"].startswith("Customer ")]
    assert len({fields["id"] for fields in entries}) == queued


def test_the_importers_memory_does_not_grow_with_the_file(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    small = generate(tmp_path / "small.csv", 50_000)
    large = generate(tmp_path / "large.csv", 200_000)

    _, small_peak_kb = run_import(redis_url, f"{key_prefix}s", str(small.path))
    summary, large_peak_kb = run_import(redis_url, f"{key_prefix}l", str(large.path))

    assert summary.startswith(f"queued {len(large.unique_good)}, ")
    assert large_peak_kb - small_peak_kb < RSS_MARGIN_KB, (small_peak_kb, large_peak_kb)


# The compact encoding: every job of a batch in one argument of the script.


async def test_fields_holding_the_delimiters_or_any_text_are_queued_intact(
    redis: Redis, key_prefix: str
) -> None:
    keys = AccountKeys(key_prefix, "default")
    # Built by hand, as make_job would refuse them: the batch falls back to
    # delimiters that UTF-8 text cannot hold.
    odd = [
        Job("odd-1", "camp\x1faign", "9876500001", "name\x1ewith ends"),
        Job("odd-2", "c", "9876500002", "\xff\xfe bytes? no: text ü ☎ \U0001f4de"),
    ]
    # Odd, but without the delimiters: sent the fast way.
    zero = [Job("zero", "c", "9876500099", "nul\x00 and tab\t")]
    plain = [make_job("c", f"98765{i:05d}", f"Zoë ☎ {i}") for i in range(3, 6)]
    queue = Queue(redis, keys)
    result = await queue.enqueue_many([*odd, *plain])
    assert result.queued == [job.id for job in [*odd, *plain]]
    assert (await queue.enqueue_many(zero)).queued == ["zero"]

    stored = [fields for _, fields in await redis.xrange(keys.bulk)]
    assert [(f["campaign"], f["phone"], f.get("name")) for f in stored] == [
        (job.campaign, job.phone, job.name) for job in [*odd, *plain, *zero]
    ]


async def test_optional_fields_survive_and_an_empty_name_is_left_out(
    redis: Redis, key_prefix: str
) -> None:
    keys = AccountKeys(key_prefix, "default")
    jobs = [
        Job("a", "c", "9876500001", "", enqueued_ms=1700000000000, attempts=2, replay_of="z"),
        Job("b", "c", "9876500002", "Ravi", attempts=1),
        Job("c", "c", "9876500003"),
    ]
    await Queue(redis, keys).enqueue_many(jobs, lane="urgent")

    stored = [fields for _, fields in await redis.xrange(keys.urgent)]
    assert stored == [job.to_fields() for job in jobs]


async def test_duplicates_within_a_batch_across_batches_and_lanes_are_skipped(
    redis: Redis, key_prefix: str
) -> None:
    keys = AccountKeys(key_prefix, "default")
    queue = Queue(redis, keys)
    assert await queue.enqueue(make_job("c", "9876500000"), lane="urgent")
    numbers = [f"98765{i % (ENQUEUE_BATCH + 7):05d}" for i in range(3 * ENQUEUE_BATCH)]

    result = await queue.enqueue_many(make_job("c", number) for number in numbers)

    assert len(result.queued) == ENQUEUE_BATCH + 7 - 1
    assert len(result.duplicates) == len(numbers) - len(result.queued)
    assert await redis.xlen(keys.bulk) == len(result.queued)
    assert await redis.scard(keys.pending) == ENQUEUE_BATCH + 7
