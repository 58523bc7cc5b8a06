"""``drain``: one file, from rows to outcomes, resumable.

A drain is ``import`` + ``run --until-empty`` + a report, made safe to
interrupt at any moment and to run again:

1. **Import**, in batches, with job ids ``<tag>-<line>`` (see
   :mod:`worker.drain.rows`). The drain's progress hash
   (``keys.drain(tag)``) keeps ``imported_through_line`` after each batch,
   so a re-run reads past the rows it already queued. Within a batch, a row
   whose job already has a terminal record is not queued again: that covers
   a drain killed between queueing a batch and noting it. A row the queue
   refuses as a duplicate (the same campaign and number already queued) is
   noted in the hash as ``d:<line>``, for the report.
2. **Take over** (own embedded Redis only): jobs still held by the previous,
   dead drain are put back at once, marked "possibly sent", instead of
   waiting for the visibility timeout. Nobody else can be holding them: the
   server is private to this state directory, and one drain at a time holds
   it. On a shared Redis, the workers' own reclaim does this after the
   visibility timeout, since a holder there may be alive.
3. **Send**: the worker pool for the account, until nothing is left.
4. **Report** (:mod:`worker.drain.report`): one row per line of the file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Literal

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from worker.accounts.control import AccountExit, halt_reason, resume_account
from worker.accounts.status import server_time_ms
from worker.config.settings import Settings
from worker.drain.report import Summary, write_report
from worker.drain.rows import Row, duplicate_field, numbered_rows
from worker.queue.jobs import Job
from worker.queue.lanes import ENQUEUE_BATCH, EnqueueResult, Queue
from worker.store.keys import AccountKeys
from worker.store.lua import register

Phase = Literal["importing", "taking over", "sending", "reporting", "done"]

# Fields of the drain's progress hash.
IMPORTED_THROUGH = "imported_through_line"
IMPORTED_ALL = "imported"
FILE_NAME = "file"


@dataclass(frozen=True)
class DrainSpec:
    """What to drain: the file, its tag, how its rows become jobs, the account."""

    path: Path
    tag: str
    keys: AccountKeys
    campaign: str = ""
    normalize: bool = False

    def rows(self) -> Iterable[Row]:
        return numbered_rows(self.path, self.tag, self.campaign, self.normalize)

    def check_header(self) -> None:
        """Read the header and the first row: raises :class:`BadInput` for a wrong file."""
        for _ in islice(self.rows(), 1):
            pass


@dataclass
class DrainProgress:
    """What a live view shows; updated as the drain goes."""

    phase: Phase = "importing"
    rows_read: int = 0  # rows read by this run's import
    resumed_after_line: int = 0  # rows up to here were queued by an earlier run
    queued: int = 0
    duplicates: int = 0
    rejected: int = 0
    already_finished: int = 0  # rows that had a terminal record before this run
    taken_over: int = 0
    cleared_halt: str | None = None  # the halt an earlier run left, cleared to try again
    server_started_ms: int = 0


@dataclass
class DrainResult:
    """How the drain ended: the pool's exit (None: stopped while importing) and the report."""

    exit: AccountExit | None
    summary: Summary
    progress: DrainProgress = field(default_factory=DrainProgress)


async def import_rows(
    redis: Redis,
    spec: DrainSpec,
    settings: Settings,
    stopping: asyncio.Event,
    progress: DrainProgress,
) -> bool:
    """Queue the rows not yet queued by an earlier run; False if stopped first."""
    key = spec.keys.drain(spec.tag)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hmget(key, [IMPORTED_THROUGH, IMPORTED_ALL])
        pipe.hset(key, FILE_NAME, spec.path.name)
        # Kept as long as the jobs' own records, which say which rows are done.
        pipe.expire(key, settings.result_ttl_s)
        state, *_ = await pipe.execute()
    progress.resumed_after_line = through = int(state[0] or 0)
    if state[1] == "1":
        return True
    queue = Queue(redis, spec.keys)
    check = register(redis, "drain/finished")
    batch: list[Row] = []
    for line, row in spec.rows():
        if line <= through:
            continue
        batch.append((line, row))
        progress.rows_read += 1
        if len(batch) >= ENQUEUE_BATCH:
            await _import_batch(redis, queue, check, spec, settings, batch, progress)
            batch = []
            _raise_if_cancelled()
            if stopping.is_set():
                return False
    if batch:
        await _import_batch(redis, queue, check, spec, settings, batch, progress)
    await redis.hset(key, IMPORTED_ALL, "1")
    return True


async def _import_batch(
    redis: Redis,
    queue: Queue,
    unfinished_check: AsyncScript,
    spec: DrainSpec,
    settings: Settings,
    batch: list[Row],
    progress: DrainProgress,
) -> None:
    jobs = [(line, row) for line, row in batch if isinstance(row, Job)]
    progress.rejected += len(batch) - len(jobs)
    finished = await unfinished_check(keys=[spec.keys.job(job.id) for _, job in jobs])
    fresh = [(line, job) for (line, job), done in zip(jobs, finished, strict=True) if done == "0"]
    progress.already_finished += len(jobs) - len(fresh)
    result = (
        await queue.enqueue_many((job for _, job in fresh), "bulk") if fresh else EnqueueResult()
    )
    progress.queued += len(result.queued)
    progress.duplicates += len(result.duplicates)
    refused = set(result.duplicates)
    # The duplicate marks and the resume point move together: a re-run never
    # sees one without the other.
    marks: list[str] = [IMPORTED_THROUGH, str(batch[-1][0])]
    for line, job in fresh:
        if job.id in refused:
            marks += (duplicate_field(line), "1")
    key = spec.keys.drain(spec.tag)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(key, items=marks)
        pipe.expire(key, settings.result_ttl_s)
        await pipe.execute()


def _raise_if_cancelled() -> None:
    """Honour a cancel (a second Ctrl-C) that a library swallowed on its way.

    A cancel that lands as a Redis reply arrives can be lost inside the
    client; the task still counts it, so the drain checks between its steps.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def take_over_orphans(queue: Queue) -> int:
    """Put back every job held by anyone, marked "possibly sent". Private Redis only."""
    from worker.pool.workers import consumer_name  # the pool (and aiohttp) only when needed

    await queue.ensure_groups()
    consumer = consumer_name()
    total = 0
    while moved := await queue.reclaim(consumer, min_idle_s=0):
        total += moved
    return total


async def drain(
    redis: Redis,
    settings: Settings,
    spec: DrainSpec,
    stopping: asyncio.Event,
    report_dir: Path,
    rejects_path: Path,
    private_redis: bool,
    progress: DrainProgress | None = None,
    on_phase: Callable[[Phase], None] | None = None,
) -> DrainResult:
    """Import, take over, send until nothing is left or ``stopping`` is set, then report."""
    progress = progress or DrainProgress()

    def enter(phase: Phase) -> None:
        progress.phase = phase
        if on_phase is not None:
            on_phase(phase)

    progress.server_started_ms = started_ms = await server_time_ms(redis)
    enter("importing")
    exit_: AccountExit | None = None
    if await import_rows(redis, spec, settings, stopping, progress):
        if private_redis:
            enter("taking over")
            progress.taken_over = await take_over_orphans(Queue(redis, spec.keys))
            # Nobody can run `resume` against a private Redis: running the
            # drain again after fixing the credentials is how to clear it.
            progress.cleared_halt = await halt_reason(redis, spec.keys)
            if progress.cleared_halt:
                await resume_account(redis, spec.keys, by="drain")
        enter("sending")
        # Imported here: loading aiohttp costs every other command a quarter second.
        from worker.pool.workers import run_pool

        exits = await run_pool(
            settings, redis, stopping, until_empty=True, accounts=[spec.keys.account]
        )
        exit_ = exits[spec.keys.account]
    _raise_if_cancelled()
    enter("reporting")
    summary = await write_report(
        redis, spec.keys, spec.rows(), spec.tag, spec.path, report_dir, rejects_path, started_ms
    )
    enter("done")
    return DrainResult(exit_, summary, progress)
