"""A Redis restart mid-run (a server with AOF): workers reconnect with backoff,
finish, lose nothing, and the limiter cools down instead of bursting again."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from tests.conftest import TIME_SCALE, Simulator, eventually, make_settings
from worker.metrics import process as metrics
from worker.pool.workers import AccountExit, run_pool
from worker.queue.jobs import make_job
from worker.queue.lanes import Queue
from worker.simulator import parse_latency
from worker.store.connection import redis_client, restart_watch
from worker.store.embedded import EmbeddedRedis
from worker.store.keys import AccountKeys

PHONES = [f"98450{i:05d}" for i in range(60)]


async def test_workers_ride_out_a_redis_restart_without_loss_or_burst(
    tmp_path: Path, key_prefix: str, simulator_factory: Any
) -> None:
    sim: Simulator = await simulator_factory(
        campaigns={"c": set(PHONES)},
        time_scale=TIME_SCALE,
        latency=parse_latency("uniform:0,100"),
        seed=3,
    )
    server = EmbeddedRedis(tmp_path / "aof", persist=True).start()
    redis = redis_client(server.url)
    try:
        settings = make_settings(server.url, key_prefix, base_url=sim.url, rate_limit=20)
        keys = AccountKeys(key_prefix, "default")
        await Queue(redis, keys).enqueue_many(make_job("c", p) for p in PHONES)
        reconnects_before = metrics.REDIS_RECONNECTS._value.get()
        run = asyncio.create_task(
            asyncio.wait_for(run_pool(settings, redis, asyncio.Event(), until_empty=True), 90)
        )

        async def some_done() -> bool:
            return int(await redis.xlen(keys.results)) >= 15

        await eventually(some_done)
        server.stop()  # SIGTERM: Redis writes its AOF and exits
        await asyncio.sleep(0.5)
        server.start()
        assert await run == {"default": AccountExit.EMPTY}

        watch = restart_watch(redis)
        assert watch is not None and watch.restarts >= 1
        # The pool lost Redis and got it back: counted as connections came
        # back, not once per failed call (the client retried many).
        assert metrics.REDIS_RECONNECTS._value.get() - reconnects_before >= 1
        results = [fields for _, fields in await redis.xrange(keys.results)]
        assert Counter(f["phone"] for f in results) == Counter(PHONES)
        assert {f["outcome"] for f in results} <= {"deleted", "already_deleted"}
        assert (await sim.campaigns())["c"] == []
        report = await sim.inspect()
        assert report["violations"] == 0
        assert report["max_in_window"] <= 20
    finally:
        await redis.aclose()
        server.stop()


async def test_a_restart_that_lost_the_limiter_costs_a_cool_down_not_a_burst(
    tmp_path: Path, key_prefix: str
) -> None:
    from worker.limiter.permits import MICROS, Limiter

    # No persistence: the restart loses every grant, as a crash could.
    server = EmbeddedRedis(tmp_path / "volatile", persist=False).start()
    redis = redis_client(server.url)
    try:
        settings = make_settings(server.url, key_prefix, rate_limit=5, rate_window_s=3.0)
        limiter = Limiter(redis, AccountKeys(key_prefix, "default"), settings.account())
        for _ in range(5):
            await limiter.acquire()
        server.stop()
        server.start()
        after = await limiter.acquire()
        # Five grants may have gone out just now: nothing more for a window.
        assert after.slot_us - after.granted_at_us >= 2.9 * MICROS
    finally:
        await redis.aclose()
        server.stop()
