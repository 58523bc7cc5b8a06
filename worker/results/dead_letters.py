"""Operations on an account's dead letters: list, replay, purge.

Letters are read in pages (``XRANGE`` with an exclusive start), so a
dead-letter stream of a million entries is never held in memory. Replay
queues each letter again as a *new* job (a new id, ``replay_of`` = the old
one: the old id already has its terminal record, and records are idempotent
by id) and deletes the letter in the same step (``results/replay.lua``).

Letters dead-lettered as ``malformed`` (or without a campaign or phone) are
not replayable: nothing in them says what to delete. They are skipped and
counted, and stay listed until purged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from worker.queue.jobs import Job, dedupe_digest, new_job_id
from worker.results.records import dead_letter_view
from worker.store.keys import AccountKeys
from worker.store.lua import register
from worker.store.stream_reads import as_entries, entries_from
from worker.vendor.outcomes import MALFORMED

PAGE = 200  # letters deleted per call of results/purge.lua


@dataclass(frozen=True)
class Letter:
    entry_id: str
    fields: dict[str, str]

    @property
    def reason(self) -> str:
        return self.fields.get("reason", "")

    @property
    def replayable(self) -> bool:
        return (
            self.reason != MALFORMED
            and bool(self.fields.get("campaign"))
            and bool(self.fields.get("phone"))
        )

    def view(self) -> dict[str, Any]:
        return dead_letter_view(self.entry_id, self.fields)

    def replay_job(self) -> Job:
        return Job(
            id=new_job_id(),
            campaign=self.fields["campaign"],
            phone=self.fields["phone"],
            name=self.fields.get("name", ""),
            replay_of=self.fields.get("job_id") or None,
        )


@dataclass
class ReplayCounts:
    replayed: int = 0  # queued again as new jobs
    already_queued: int = 0  # the same (campaign, phone) was queued: letter deleted
    unreplayable: int = 0  # malformed: skipped, kept
    gone: int = 0  # replayed or purged by someone else meanwhile

    def summary(self) -> str:
        return (
            f"replayed {self.replayed}, already queued {self.already_queued}, "
            f"skipped unreplayable {self.unreplayable}"
        )


async def letters(
    redis: Redis, keys: AccountKeys, reason: str | None = None
) -> AsyncIterator[Letter]:
    """Every dead letter, oldest first, optionally only those with ``reason``."""
    async for entry_id, fields in entries_from(redis, keys.dlq):
        letter = Letter(entry_id, fields)
        if reason is None or letter.reason == reason:
            yield letter


async def replay(
    redis: Redis, keys: AccountKeys, reason: str | None = None, limit: int | None = None
) -> ReplayCounts:
    """Queue dead letters again as new jobs, at most ``limit`` of them."""
    script = register(redis, "results/replay")
    counts = ReplayCounts()
    async for letter in letters(redis, keys, reason):
        if limit is not None and counts.replayed + counts.already_queued >= limit:
            break
        await _replay_letter(script, keys, letter, counts)
    return counts


async def replay_one(redis: Redis, keys: AccountKeys, entry_id: str) -> ReplayCounts:
    """Queue one dead letter again, by its entry id (``gone`` if there is none)."""
    counts = ReplayCounts()
    found = as_entries(await redis.xrange(keys.dlq, entry_id, entry_id, count=1))
    if not found:
        counts.gone += 1
        return counts
    letter = Letter(*found[0])
    await _replay_letter(register(redis, "results/replay"), keys, letter, counts)
    return counts


async def _replay_letter(
    script: AsyncScript, keys: AccountKeys, letter: Letter, counts: ReplayCounts
) -> None:
    if not letter.replayable:
        counts.unreplayable += 1
        return
    job = letter.replay_job()
    args: list[str] = [letter.entry_id, dedupe_digest(job.campaign, job.phone)]
    for name, value in job.to_fields().items():
        args += [name, value]
    # Replays share the retry lane, and with it the retries' capped share
    # of the allowance: a mass replay cannot starve fresh work.
    verdict = await script(keys=[keys.retry, keys.dlq, keys.pending, keys.dlq_reasons], args=args)
    match verdict[0]:
        case "queued":
            counts.replayed += 1
        case "pending":
            counts.already_queued += 1
        case _:
            counts.gone += 1


async def purge(redis: Redis, keys: AccountKeys, reason: str | None = None) -> int:
    """Delete dead letters (only those with ``reason``, if given); return how many.

    Entries are deleted by id, never the whole stream: a letter written by a
    worker while this runs is not lost with the rest.
    """
    script = register(redis, "results/purge")
    deleted = 0
    # Deleting behind the reader is safe: pages start after the last id read.
    batch: list[str] = []
    async for letter in letters(redis, keys, reason):
        batch.append(letter.entry_id)
        if len(batch) >= PAGE:
            deleted += int(await script(keys=[keys.dlq, keys.dlq_reasons], args=batch))
            batch = []
    if batch:
        deleted += int(await script(keys=[keys.dlq, keys.dlq_reasons], args=batch))
    return deleted
