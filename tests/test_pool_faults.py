"""The pool under vendor faults: bounded retries, rate-limit cool-down, and
honest outcomes after an ambiguous attempt."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from redis.asyncio import Redis

from tests.conftest import TIME_SCALE, Simulator, make_settings
from worker.config.settings import Settings
from worker.limiter.permits import Limiter
from worker.pool.settle import backoff_s
from worker.pool.workers import AccountExit, Naps, run_pool
from worker.queue.jobs import make_job
from worker.queue.lanes import Fetched, Queue, RetryShare
from worker.store.keys import AccountKeys

PHONES = [f"98450{i:05d}" for i in range(30)]
ANY_LATENESS_US = 3_600_000_000


async def drain(settings: Settings, redis: Redis) -> dict[str, AccountExit]:
    return await asyncio.wait_for(run_pool(settings, redis, asyncio.Event(), until_empty=True), 60)


async def test_server_errors_are_retried_a_bounded_number_of_times(
    redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> None:
    sim: Simulator = await simulator_factory(
        campaigns={"c": set(PHONES)}, time_scale=TIME_SCALE, error_5xx_rate=1.0
    )
    settings = make_settings(redis_url, key_prefix, {"max_attempts": 3}, base_url=sim.url)
    keys = AccountKeys(key_prefix, "default")
    await Queue(redis, keys).enqueue_many(make_job("c", p) for p in PHONES[:4])
    assert await drain(settings, redis) == {"default": AccountExit.EMPTY}

    results = [f for _, f in await redis.xrange(keys.results)]
    assert len(results) == 4
    assert {(f["outcome"], f["reason"], f["attempts"]) for f in results} == {
        ("dead", "retries_exhausted", "3")
    }
    assert {f["message"] for f in results} <= {"HTTP 500", "HTTP 502", "HTTP 503"}
    deletes = [r for r in (await sim.inspect())["requests"] if r["endpoint"] == "delete"]
    assert len(deletes) == 4 * 3


async def test_rate_limited_answers_cool_down_and_cost_no_attempt(
    redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> None:
    # The vendor allows less than we were told: it answers "Max limit exceeded".
    sim: Simulator = await simulator_factory(
        campaigns={"c": set(PHONES)}, time_scale=TIME_SCALE, rate_limit=10
    )
    settings = make_settings(redis_url, key_prefix, base_url=sim.url, rate_limit=15)
    keys = AccountKeys(key_prefix, "default")
    await Queue(redis, keys).enqueue_many(make_job("c", p) for p in PHONES)
    assert await drain(settings, redis) == {"default": AccountExit.EMPTY}

    results = [f for _, f in await redis.xrange(keys.results)]
    assert Counter((f["outcome"], f["attempts"]) for f in results) == {("deleted", "1"): 30}
    limited = [r for r in (await sim.inspect())["requests"] if r["status"] == 429]
    assert limited, "the vendor must have refused some"
    assert await redis.xlen(keys.dlq) == 0


async def test_after_an_ambiguous_attempt_no_record_found_means_already_deleted(
    redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> None:
    sim: Simulator = await simulator_factory(campaigns={"c": set()}, time_scale=TIME_SCALE)
    settings = make_settings(redis_url, key_prefix, base_url=sim.url)
    keys = AccountKeys(key_prefix, "default")
    queue = Queue(redis, keys)
    await queue.ensure_groups()
    await queue.enqueue_many([make_job("c", "9845000001"), make_job("c", "9845000002")])
    # A process takes the first job and dies mid-request: its record may be gone.
    limiter = Limiter(redis, keys, settings.account())
    permit = await limiter.acquire()
    # The pool's tolerance (a quarter of the margin: 5 ms here) keeps a stalled
    # loop from sending into a later window; a busy machine can pause this test
    # that long between the two round trips, and the fetch would then refund
    # the permit (Late). Nothing is sent on this permit, so any lateness is fine.
    taken = await queue.fetch(permit, "died", ANY_LATENESS_US, RetryShare(10, 60_000_000))
    assert isinstance(taken, Fetched)
    await asyncio.sleep(0.05)
    assert await queue.reclaim("alive", min_idle_s=0.01) == 1

    assert await drain(settings, redis) == {"default": AccountExit.EMPTY}
    outcomes = {
        f["phone"]: (f["outcome"], f["reason"]) for _, f in await redis.xrange(keys.results)
    }
    assert outcomes == {
        "9845000001": ("already_deleted", ""),
        "9845000002": ("dead", "no_record"),
    }
    assert await redis.xlen(keys.dlq) == 1


def test_backoff_is_full_jitter_within_the_bounds() -> None:
    samples = [backoff_s(attempt, 0.5, 4.0) for attempt in (1, 3, 10) for _ in range(200)]
    assert all(0 <= s <= 4.0 for s in samples)
    assert max(backoff_s(1, 0.5, 4.0) for _ in range(200)) <= 0.5
    assert max(samples) > 2.0


async def test_a_stop_wakes_every_sleeping_dispatcher_at_once() -> None:
    stopping = asyncio.Event()
    naps = Naps(stopping)
    watch = asyncio.create_task(naps.watch())
    assert await naps.sleep(0.01) is True
    sleepers = [asyncio.create_task(naps.sleep(60.0)) for _ in range(5)]
    await asyncio.sleep(0.05)
    assert not any(s.done() for s in sleepers)

    stopping.set()
    assert await asyncio.wait_for(asyncio.gather(*sleepers), 1.0) == [False] * 5
    # Once stopping, a sleep ends before it starts.
    assert await asyncio.wait_for(naps.sleep(60.0), 0.1) is False
    await watch
