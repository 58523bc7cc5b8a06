"""Queue, retry, reclaim and recording scripts against a real Redis."""

from __future__ import annotations

import asyncio
import time
from typing import cast

from redis.asyncio import Redis

from bench.measures import max_in_window
from tests.conftest import make_settings
from worker.accounts.control import pause_account, resume_account
from worker.config.settings import DEFAULT_RESULT_TTL_S
from worker.limiter.permits import MICROS, Limiter, Permit
from worker.queue.jobs import make_job
from worker.queue.lanes import Empty, Fetched, Late, Paused, Queue, RetryShare
from worker.results.records import Record, Recorder
from worker.store.keys import CONSUMER_GROUP, AccountKeys

TOLERANCE_US = 10_000
# For fetches that are not about lateness: a busy machine may take any time
# between the permit's slot and the fetch, and that must not fail them.
ANY_LATENESS_US = 3_600_000_000
SHARE = RetryShare(per_window=1000, window_us=60_000_000)


def _parts(redis: Redis, prefix: str) -> tuple[AccountKeys, Queue, Limiter]:
    settings = make_settings("redis://127.0.0.1:9/0", prefix)
    keys = AccountKeys(prefix, "default")
    return keys, Queue(redis, keys), Limiter(redis, keys, settings.account())


async def _fetch(
    queue: Queue, limiter: Limiter, consumer: str = "c1", share: RetryShare = SHARE
) -> object:
    permit = await limiter.acquire()
    await limiter.wait_for(permit)
    return await queue.fetch(permit, consumer, ANY_LATENESS_US, share)


async def test_an_urgent_job_is_handed_out_before_a_bulk_backlog(
    redis: Redis, key_prefix: str
) -> None:
    _, queue, limiter = _parts(redis, key_prefix)
    await queue.ensure_groups()
    await queue.enqueue_many(make_job("c", f"98450{i:05d}") for i in range(50))
    urgent = make_job("c", "9999999999")
    await queue.enqueue(urgent, lane="urgent")
    first = await _fetch(queue, limiter)
    second = await _fetch(queue, limiter)
    assert isinstance(first, Fetched) and first.delivery.job is not None
    assert (first.delivery.lane, first.delivery.job.id) == ("urgent", urgent.id)
    assert isinstance(second, Fetched) and second.delivery.lane == "bulk"


async def test_duplicates_of_queued_work_are_skipped_until_it_ends(
    redis: Redis, key_prefix: str
) -> None:
    keys, queue, limiter = _parts(redis, key_prefix)
    await queue.ensure_groups()
    assert await queue.enqueue(make_job("c", "9845000001"))
    assert not await queue.enqueue(make_job("c", "9845000001"), lane="urgent")
    assert await queue.enqueue(make_job("other", "9845000001"))
    fetched = await _fetch(queue, limiter)
    assert isinstance(fetched, Fetched)
    recorder = Recorder(redis, keys, make_settings("redis://127.0.0.1:9/0", key_prefix))
    assert await recorder.record(fetched.delivery, Record("deleted", "Deleted Successfully", 1))
    # Once it has its terminal record, the same number may be queued again.
    assert await queue.enqueue(make_job("c", "9845000001"))


async def test_recording_is_idempotent_by_job_id(redis: Redis, key_prefix: str) -> None:
    keys, queue, limiter = _parts(redis, key_prefix)
    await queue.ensure_groups()
    job = make_job("c", "9845000001", job_id="order-77")
    await queue.enqueue(job)
    fetched = await _fetch(queue, limiter)
    assert isinstance(fetched, Fetched)
    recorder = Recorder(redis, keys, make_settings("redis://127.0.0.1:9/0", key_prefix))
    assert await recorder.record(
        fetched.delivery, Record("dead", "No Record Found", 1, "no_record")
    )
    assert not await recorder.record(fetched.delivery, Record("deleted", "x", 2))
    assert await redis.xlen(keys.results) == 1 and await redis.xlen(keys.dlq) == 1
    assert await redis.hget(keys.job("order-77"), "outcome") == "dead"
    assert await redis.hgetall(keys.stats) == {"dead": "1"}
    assert 13 * 24 * 3600 < await redis.ttl(keys.job("order-77")) <= DEFAULT_RESULT_TTL_S
    assert (await queue.counts()).outstanding == 0


async def test_a_retry_leaves_the_lane_and_comes_back_when_due(
    redis: Redis, key_prefix: str
) -> None:
    keys, queue, limiter = _parts(redis, key_prefix)
    await queue.ensure_groups()
    await queue.enqueue(make_job("c", "9845000001"))
    fetched = await _fetch(queue, limiter)
    assert isinstance(fetched, Fetched) and fetched.delivery.job is not None
    fields = {**fetched.delivery.fields, "attempts": "1"}
    await queue.schedule_retry(fetched.delivery, fields, delay_s=0.3)
    counts = await queue.counts()
    assert (counts.queued, counts.in_flight, counts.delayed) == (0, 0, 1)

    not_yet = await _fetch(queue, limiter)
    assert isinstance(not_yet, Empty) and not_yet.next_due_ms is not None
    await asyncio.sleep(0.35)
    back = await _fetch(queue, limiter)
    assert isinstance(back, Fetched)
    assert back.delivery.job is not None and back.delivery.job.attempts == 1
    assert back.delivery.job.id == fetched.delivery.job.id
    assert await redis.zcard(keys.delayed) == 0


async def test_jobs_of_a_silent_consumer_are_put_back_marked_possibly_sent(
    redis: Redis, key_prefix: str
) -> None:
    keys, queue, limiter = _parts(redis, key_prefix)
    await queue.ensure_groups()
    await queue.enqueue(make_job("c", "9845000001"))
    taken = await _fetch(queue, limiter, consumer="died")
    assert isinstance(taken, Fetched)
    assert await queue.reclaim("alive", min_idle_s=60) == 0
    await asyncio.sleep(0.05)
    assert await queue.reclaim("alive", min_idle_s=0.01) == 1
    pending = await redis.xpending(keys.bulk, CONSUMER_GROUP)
    assert pending["pending"] == 0
    again = await _fetch(queue, limiter, consumer="alive")
    assert isinstance(again, Fetched)
    assert again.delivery.maybe_sent
    assert again.delivery.job is not None and again.delivery.job.attempts == 1
    assert (await queue.counts()).outstanding == 1


async def test_a_taken_over_job_keeps_its_enqueue_time_in_its_record(
    redis: Redis, key_prefix: str
) -> None:
    keys, queue, limiter = _parts(redis, key_prefix)
    await queue.ensure_groups()
    # A producer's job carries no `enqueued`: its entry id's time is its age.
    await queue.enqueue(make_job("c", "9845000001"))
    # One whose entry id a producer chose, too early to be an `enqueued`.
    await redis.xadd(
        keys.urgent, {"v": "1", "id": "early", "campaign": "c", "phone": "9845000002"}, id="1-1"
    )
    assert isinstance(await _fetch(queue, limiter, consumer="died"), Fetched)  # urgent first
    taken = await _fetch(queue, limiter, consumer="died")
    assert isinstance(taken, Fetched) and taken.delivery.lane == "bulk"
    assert "enqueued" not in taken.delivery.fields
    enqueued_ms = int(taken.delivery.entry_id.split("-")[0])
    await asyncio.sleep(0.05)
    assert await queue.reclaim("alive", min_idle_s=0.01) == 2

    early = await _fetch(queue, limiter, consumer="alive")
    again = await _fetch(queue, limiter, consumer="alive")
    assert isinstance(early, Fetched) and isinstance(again, Fetched)
    # Still a job: no out-of-range `enqueued` was written into the copy.
    assert early.delivery.job is not None and early.delivery.job.id == "early"
    assert again.delivery.job is not None and again.delivery.maybe_sent
    assert int(again.delivery.entry_id.split("-")[0]) > enqueued_ms
    assert again.delivery.job.enqueued_ms == enqueued_ms

    recorder = Recorder(redis, keys, make_settings("redis://127.0.0.1:9/0", key_prefix))
    assert await recorder.record(again.delivery, Record("deleted", "Deleted Successfully", 2))
    results = cast("list[tuple[str, dict[str, str]]]", await redis.xrange(keys.results))
    assert [fields["enqueued_at"] for _, fields in results] == [str(enqueued_ms)]


async def test_a_late_or_paused_permit_is_refunded(redis: Redis, key_prefix: str) -> None:
    keys, queue, limiter = _parts(redis, key_prefix)
    await queue.ensure_groups()
    await queue.enqueue(make_job("c", "9845000001"))
    permit = await limiter.acquire()
    stale = Permit(
        permit.id, permit.slot_us, permit.granted_at_us, time.monotonic(), permit.asked_mono
    )
    await asyncio.sleep(0.05)
    assert isinstance(await queue.fetch(stale, "c1", TOLERANCE_US, SHARE), Late)
    assert await redis.zscore(keys.limiter, permit.id) is None

    await pause_account(redis, keys, "maintenance")
    permit = await limiter.acquire()
    paused = await queue.fetch(permit, "c1", ANY_LATENESS_US, SHARE)
    assert isinstance(paused, Paused) and "maintenance" in paused.reason
    assert await redis.zscore(keys.limiter, permit.id) is None
    assert await resume_account(redis, keys)
    assert isinstance(await _fetch(queue, limiter), Fetched)


async def test_a_fetch_reserves_the_next_permit_only_when_asked_and_only_with_a_job(
    redis: Redis, key_prefix: str
) -> None:
    keys, queue, limiter = _parts(redis, key_prefix)
    await queue.ensure_groups()
    await queue.enqueue_many(make_job("c", f"98450{i:05d}") for i in range(2))

    # After a job, when asked to: the next permit is in the limiter's schedule.
    permit = await limiter.acquire()
    await limiter.wait_for(permit)
    fetched = await queue.fetch(permit, "c1", ANY_LATENESS_US, SHARE, limiter.ask(after_job=True))
    assert isinstance(fetched, Fetched) and fetched.next_permit is not None
    reserved = fetched.next_permit
    assert await redis.zscore(keys.limiter, reserved.id) == reserved.slot_us
    assert reserved.slot_us >= reserved.granted_at_us >= permit.slot_us

    # Not after a job unless asked to (no free slot for the next request).
    await limiter.wait_for(reserved)
    fetched = await queue.fetch(
        reserved, "c1", ANY_LATENESS_US, SHARE, limiter.ask(after_job=False)
    )
    assert isinstance(fetched, Fetched) and fetched.next_permit is None
    held = await redis.zrange(keys.limiter, 0, -1)
    assert sorted(held) == sorted([permit.id, reserved.id])

    # Nothing to hand out: refunded, and nothing reserved in its place.
    permit = await limiter.acquire()
    await limiter.wait_for(permit)
    empty = await queue.fetch(permit, "c1", ANY_LATENESS_US, SHARE, limiter.ask(after_job=True))
    assert isinstance(empty, Empty)
    assert sorted(await redis.zrange(keys.limiter, 0, -1)) == sorted(held)

    # Late: refunded, and its replacement reserved in the same call.
    permit = await limiter.acquire()
    stale = Permit(
        permit.id, permit.slot_us, permit.granted_at_us, time.monotonic(), permit.asked_mono
    )
    await asyncio.sleep(0.05)
    late = await queue.fetch(stale, "c1", TOLERANCE_US, SHARE, limiter.ask(after_job=False))
    assert isinstance(late, Late) and late.next_permit is not None
    assert await redis.zscore(keys.limiter, permit.id) is None
    assert await redis.zscore(keys.limiter, late.next_permit.id) == late.next_permit.slot_us


async def test_permits_reserved_by_fetches_and_asked_for_alone_share_one_schedule(
    redis: Redis, key_prefix: str
) -> None:
    """The next permit a fetch reserves keeps every limit, beside permits that
    other dispatchers ask for on their own: one schedule, never over the limit."""
    settings = make_settings(
        "redis://127.0.0.1:9/0", key_prefix, rate_limit=4, rate_window_s=0.4, rate_margin_s=0.02
    )
    keys = AccountKeys(key_prefix, "default")
    queue = Queue(redis, keys)
    await queue.ensure_groups()
    await queue.enqueue_many(make_job("c", f"98450{i:05d}") for i in range(40))
    limiters = [Limiter(redis, keys, settings.account()) for _ in range(2)]
    spent: list[int] = []

    async def dispatcher(limiter: Limiter, chained: bool) -> None:
        permit: Permit | None = None
        while len(spent) < 24:
            permit = permit or await limiter.acquire()
            await limiter.wait_for(permit)
            then = limiter.ask(after_job=True) if chained else None
            fetched = await queue.fetch(permit, "c1", ANY_LATENESS_US, SHARE, then)
            assert isinstance(fetched, Fetched)
            spent.append(permit.slot_us)
            permit = fetched.next_permit
            assert (permit is not None) == chained
        if permit is not None:
            await limiter.refund(permit)

    await asyncio.gather(dispatcher(limiters[0], True), dispatcher(limiters[1], False))
    window_us = int(0.42 * MICROS)
    assert len(spent) >= 24
    assert max_in_window(sorted(spent), window_us) == 4


async def test_a_malformed_entry_is_handed_out_as_such(redis: Redis, key_prefix: str) -> None:
    keys, queue, limiter = _parts(redis, key_prefix)
    await queue.ensure_groups()
    await redis.xadd(keys.bulk, {"phone": "9845000001", "campaign": "c"})
    fetched = await _fetch(queue, limiter)
    assert isinstance(fetched, Fetched)
    assert fetched.delivery.job is None and "version" in (fetched.delivery.malformed or "")


async def test_retries_take_only_their_share_while_fresh_work_waits(
    redis: Redis, key_prefix: str
) -> None:
    _, queue, limiter = _parts(redis, key_prefix)
    await queue.ensure_groups()
    await queue.enqueue_many(make_job("c", f"98450{i:05d}") for i in range(5))
    failed = [await _fetch(queue, limiter) for _ in range(5)]
    for fetched in failed:
        assert isinstance(fetched, Fetched)
        await queue.schedule_retry(fetched.delivery, dict(fetched.delivery.fields), delay_s=0)
    await queue.enqueue_many(make_job("c", f"98451{i:05d}") for i in range(10))

    share = RetryShare(per_window=2, window_us=60_000_000)
    lanes = []
    for _ in range(15):
        fetched = await _fetch(queue, limiter, share=share)
        assert isinstance(fetched, Fetched)
        lanes.append(fetched.delivery.lane)
    # Two retries within their share, then fresh work first, then the rest.
    assert lanes == ["retry"] * 2 + ["bulk"] * 10 + ["retry"] * 3


async def test_silent_consumers_holding_nothing_are_forgotten_and_holders_kept(
    redis: Redis, key_prefix: str
) -> None:
    keys, queue, limiter = _parts(redis, key_prefix)
    await queue.ensure_groups()
    await queue.enqueue_many([make_job("c", "9845000001"), make_job("c", "9845000002")])
    done = await _fetch(queue, limiter, consumer="gone")
    assert isinstance(done, Fetched)
    recorder = Recorder(redis, keys, make_settings("redis://127.0.0.1:9/0", key_prefix))
    await recorder.record(done.delivery, Record("deleted", "Deleted Successfully", 1))
    held = await _fetch(queue, limiter, consumer="busy")
    assert isinstance(held, Fetched)
    await asyncio.sleep(0.05)

    assert await queue.forget_idle_consumers(idle_s=60) == 0
    assert await queue.forget_idle_consumers(idle_s=0.01) == 1
    consumers = await redis.xinfo_consumers(keys.bulk, CONSUMER_GROUP)
    assert [(c["name"], c["pending"]) for c in consumers] == [("busy", 1)]
