"""The rate chart's history: requests sent per minute, bucketed by the permit's
slot on the Redis clock, zero-filled, bounded, and expiring with an idle account.

The count is taken by ``limiter/history.lua``, which the settling scripts
(``results/record.lua``, ``queue/retry.lua``) include: the per-minute rules
are tested on the script itself, and the settling scripts are tested to
count a request that left, once, and nothing else."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.conftest import TIME_SCALE, Simulator, eventually, make_settings
from worker.accounts.control import AccountExit
from worker.limiter.history import KEEP_MINUTES, MINUTE_MS, TTL_MS, chart_args, minutes
from worker.pool.workers import run_pool
from worker.queue.jobs import from_fields, make_job
from worker.queue.lanes import Delivery, Queue
from worker.results.records import Record, Recorder
from worker.store.keys import CONSUMER_GROUP, AccountKeys
from worker.store.lua import register

CAMPAIGN = "spring_sale"
DELETABLE = [f"98450{i:05d}" for i in range(120)]
UNKNOWN = [f"70000{i:05d}" for i in range(30)]
MINUTE_US = 60_000_000


async def redis_minute(redis: Redis) -> int:
    seconds, _ = await redis.time()
    return int(seconds) // 60


def slot_in(minute: int, offset_us: int = 30_000_000) -> int:
    return minute * MINUTE_US + offset_us


async def note_sent(redis: Redis, keys: AccountKeys, slot_us: int) -> None:
    """One request counted by ``limiter/history.lua`` on its own, with the
    arguments a settling script passes it."""
    script = register(redis, "limiter/history")
    await script(keys=[keys.rate_minutes], args=chart_args(slot_us))


async def taken(redis: Redis, keys: AccountKeys, phone: str) -> Delivery:
    """A job queued and read as a worker would: in flight, to be settled."""
    queue = Queue(redis, keys)
    await queue.ensure_groups()
    assert await queue.enqueue(make_job(CAMPAIGN, phone))
    reply = await redis.xreadgroup(CONSUMER_GROUP, "c1", {keys.bulk: ">"}, count=1)
    entry_id, fields = reply[0][1][0]
    return Delivery("bulk", entry_id, fields, from_fields(fields, entry_id))


async def queue_jobs(redis: Redis, keys: AccountKeys) -> None:
    jobs = [make_job(CAMPAIGN, phone) for phone in DELETABLE + UNKNOWN]
    assert len((await Queue(redis, keys).enqueue_many(jobs)).queued) == len(jobs)


async def deletes_seen(sim: Simulator) -> int:
    return sum(1 for r in (await sim.inspect())["requests"] if r["endpoint"] == "delete")


async def test_the_minutes_add_up_to_the_deletes_the_vendor_saw(
    redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> None:
    sim: Simulator = await simulator_factory(
        campaigns={CAMPAIGN: set(DELETABLE)}, time_scale=TIME_SCALE
    )
    settings = make_settings(redis_url, key_prefix, base_url=sim.url)
    keys = AccountKeys(key_prefix, "default")
    await queue_jobs(redis, keys)

    run = asyncio.create_task(run_pool(settings, redis, asyncio.Event(), until_empty=True))

    async def some_sent() -> bool:
        return int(await redis.xlen(keys.results)) >= 20

    await eventually(some_sent)
    # Requests the vendor refuses (an expired token) left all the same: they count.
    await sim.control("tokens/expire")
    assert await asyncio.wait_for(run, 60) == {"default": AccountExit.EMPTY}

    deletes = await deletes_seen(sim)
    refused = [r for r in (await sim.inspect())["requests"] if r["message"] == "Token Expired"]
    assert refused, "the test must have hit the expiry"
    assert deletes >= len(DELETABLE) + len(UNKNOWN) + len(refused)
    chart = await minutes(redis, keys)
    assert sum(n for _, n in chart) == deletes
    # Every minute counted is one of the chart's: nothing fell outside the hour.
    stored = await redis.hgetall(keys.rate_minutes)
    assert sum(int(n) for n in stored.values()) == deletes


async def test_a_failed_note_fails_no_job(
    redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> None:
    sim: Simulator = await simulator_factory(
        campaigns={CAMPAIGN: set(DELETABLE)}, time_scale=TIME_SCALE
    )
    settings = make_settings(redis_url, key_prefix, base_url=sim.url)
    keys = AccountKeys(key_prefix, "default")
    await queue_jobs(redis, keys)
    # Not a hash: every write to the chart fails (WRONGTYPE), in every
    # settling script, for every request.
    await redis.set(keys.rate_minutes, "not a chart")

    exits = await asyncio.wait_for(run_pool(settings, redis, asyncio.Event(), until_empty=True), 60)

    assert exits == {"default": AccountExit.EMPTY}
    assert await deletes_seen(sim) >= len(DELETABLE) + len(UNKNOWN)
    assert int(await redis.xlen(keys.results)) == len(DELETABLE) + len(UNKNOWN)
    assert int(await redis.xlen(keys.dlq)) == len(UNKNOWN)
    assert await redis.get(keys.rate_minutes) == "not a chart"


async def test_settling_a_request_that_left_counts_it_once_in_its_slots_minute(
    redis: Redis, key_prefix: str
) -> None:
    keys = AccountKeys(key_prefix, "default")
    settings = make_settings("redis://127.0.0.1:9/0", key_prefix)
    recorder, queue = Recorder(redis, keys, settings), Queue(redis, keys)
    now = await redis_minute(redis)
    done = Record("deleted", "Deleted Successfully", 1)

    # A request answered, and one to be retried: each counts, in its slot's minute.
    first = await taken(redis, keys, "9845000001")
    assert await recorder.record(first, done, sent_slot_us=slot_in(now - 2))
    retried = await taken(redis, keys, "9845000002")
    await queue.schedule_retry(retried, dict(retried.fields), 60.0, sent_slot_us=slot_in(now - 1))
    # A second delivery of a job already recorded: its request left all the same.
    assert not await recorder.record(first, done, sent_slot_us=slot_in(now - 1))
    # Refused before sending, put back unsent: nothing left, nothing counts.
    refused = await taken(redis, keys, "9845000003")
    assert await recorder.record(refused, Record("dead", "not sent", 0, "invalid_job"))
    put_back = await taken(redis, keys, "9845000004")
    await queue.schedule_retry(put_back, dict(put_back.fields), 0.0)

    assert await redis.hgetall(keys.rate_minutes) == {str(now - 2): "1", str(now - 1): "2"}
    assert 0 < await redis.pttl(keys.rate_minutes) <= TTL_MS


async def test_a_request_counts_in_its_slots_minute_not_the_current_one(
    redis: Redis, key_prefix: str
) -> None:
    keys = AccountKeys(key_prefix, "default")
    now = await redis_minute(redis)
    # The first and the last µs of a minute are that minute's; the next µs is the next one's.
    await note_sent(redis, keys, slot_in(now - 3, 0))
    await note_sent(redis, keys, slot_in(now - 3, MINUTE_US - 1))
    await note_sent(redis, keys, slot_in(now - 2, 0))
    for _ in range(4):
        await note_sent(redis, keys, slot_in(now - 10))

    chart = dict(await minutes(redis, keys))
    assert chart[(now - 3) * MINUTE_MS] == 2
    assert chart[(now - 2) * MINUTE_MS] == 1
    assert chart[(now - 10) * MINUTE_MS] == 4
    assert sum(chart.values()) == 7


async def test_the_chart_is_zero_filled_oldest_first_and_ends_at_the_current_minute(
    redis: Redis, key_prefix: str
) -> None:
    keys = AccountKeys(key_prefix, "default")
    before = await redis_minute(redis)
    empty = await minutes(redis, keys)
    after = await redis_minute(redis)

    assert len(empty) == 60
    assert all(n == 0 for _, n in empty)
    starts = [t for t, _ in empty]
    assert all(b - a == MINUTE_MS for a, b in itertools.pairwise(starts))
    assert starts[-1] in (before * MINUTE_MS, after * MINUTE_MS)

    await note_sent(redis, keys, slot_in(after - 59))
    await note_sent(redis, keys, slot_in(after - 60))  # one minute too old for the chart
    five = await minutes(redis, keys, count=5)
    assert len(five) == 5 and all(n == 0 for _, n in five)
    chart = await minutes(redis, keys)
    if await redis_minute(redis) == after:
        assert chart[0] == ((after - 59) * MINUTE_MS, 1)
        assert sum(n for _, n in chart) == 1
    with pytest.raises(ValueError):
        await minutes(redis, keys, count=0)
    with pytest.raises(ValueError):
        await minutes(redis, keys, count=KEEP_MINUTES + 1)


async def test_hours_of_traffic_keep_the_hash_bounded(redis: Redis, key_prefix: str) -> None:
    keys = AccountKeys(key_prefix, "default")
    now = await redis_minute(redis)
    # Someone else's junk in the hash is trimmed along with the old minutes.
    await redis.hset(keys.rate_minutes, mapping={"junk": "x", "-5": "7"})
    # Four hours of traffic, a minute at a time, oldest first, as a busy account makes it.
    for minute in range(now - 240, now + 1):
        await note_sent(redis, keys, slot_in(minute))
        await note_sent(redis, keys, slot_in(minute, 59_000_000))
        assert await redis.hlen(keys.rate_minutes) <= KEEP_MINUTES + 1
    chart = await minutes(redis, keys)
    if await redis_minute(redis) == now:
        assert [n for _, n in chart] == [2] * 60
    fields = await redis.hkeys(keys.rate_minutes)
    assert "junk" not in fields and "-5" not in fields
    assert min(int(f) for f in fields) >= now - KEEP_MINUTES

    # A stray slot from long ago counts nowhere for long, and takes nothing with it.
    await note_sent(redis, keys, slot_in(now - 10_000))
    assert await redis.hlen(keys.rate_minutes) <= KEEP_MINUTES + 1
    if await redis_minute(redis) == now:
        assert [n for _, n in await minutes(redis, keys)] == [2] * 60


async def test_the_hash_has_a_ttl_so_an_idle_account_leaves_nothing(
    redis: Redis, key_prefix: str
) -> None:
    keys = AccountKeys(key_prefix, "default")
    now = await redis_minute(redis)
    await note_sent(redis, keys, slot_in(now))
    first = await redis.pttl(keys.rate_minutes)
    assert 0 < first <= TTL_MS
    # The TTL outlives the chart's hour, so a minute is never lost while shown.
    assert TTL_MS > 60 * MINUTE_MS
    await note_sent(redis, keys, slot_in(now))
    assert 0 < await redis.pttl(keys.rate_minutes) <= TTL_MS
    # Made again from nothing (the key expired), the hash gets its TTL again.
    await redis.delete(keys.rate_minutes)
    await note_sent(redis, keys, slot_in(now))
    assert await redis.hget(keys.rate_minutes, str(now)) == "1"
    assert 0 < await redis.pttl(keys.rate_minutes) <= TTL_MS
