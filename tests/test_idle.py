"""Idle accounts: one blocking read per process for all of them, a bounded
background rate of calls each, and a job queued to any of them still picked
up at once."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from tests.conftest import Simulator, eventually, make_settings
from worker.config.settings import AccountSettings, Secret
from worker.pool.idle import IDLE_WAIT_MAX_S
from worker.pool.workers import run_pool
from worker.queue.producer import Producer
from worker.simulator.config import AccountSpec
from worker.store.connection import MAX_CONNECTIONS
from worker.store.keys import AccountKeys

ACCOUNTS = 120


async def blocked_reads(redis: Redis) -> int:
    clients = await redis.client_list()
    return sum(1 for c in clients if c.get("cmd") == "xread" and "b" in str(c.get("flags", "")))


async def client_calls(redis: Redis) -> int:
    """Scripts and reads as clients send them (commandstats also counts the
    commands a script runs inside, which are not round trips)."""
    stats = await redis.info("commandstats")
    return sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
        for name in ("evalsha", "eval", "xread")
    )


async def test_idle_accounts_share_one_blocking_read_and_wake_for_new_work(
    redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> None:
    # An account that authenticates with its key: no token to generate per account.
    sim: Simulator = await simulator_factory(
        campaigns={"c": {"9845000001"}},
        time_scale=30,
        accounts={"demo": AccountSpec("demo-key", "apikey")},
    )
    # A long visibility timeout: the reclaim sweep (every quarter of it) runs
    # once at the start, and the calls counted are the idle waits' own.
    # The production margin's share for lateness (a quarter of 0.5 s), not the
    # fast tests' 5 ms, which 120 dispatchers starting at once on two busy
    # cores overrun: the count is of idle waits, not of late permits.
    base = make_settings(
        redis_url, key_prefix, {"visibility_timeout_s": 600.0}, base_url=sim.url,
        rate_margin_s=0.5,
    )  # fmt: skip
    template = base.account()
    accounts = {
        f"a{n}": AccountSettings(**{**template.__dict__, "name": f"a{n}", "auth_mode": "apikey",
                                    "api_key": Secret("demo-key")})
        for n in range(ACCOUNTS)
    }  # fmt: skip
    settings = base.with_overrides(accounts=accounts)
    stopping = asyncio.Event()
    pool = asyncio.create_task(run_pool(settings, redis, stopping))
    try:
        # Settled: every dispatcher has found its lanes empty and waits.
        await asyncio.sleep(1.0)
        # All 120 dispatchers started at once, yet the process holds a fixed
        # number of connections (the test's own client is one more).
        ours = len(await redis.client_list()) - 1
        assert ours <= MAX_CONNECTIONS, ours
        seen = [await blocked_reads(redis) for _ in range(10)]
        # One blocking read for the whole process, never one per account.
        assert max(seen) <= 1, seen

        # The background rate: a bounded number of calls per idle account,
        # whatever else the machine is doing (a busy machine only makes fewer).
        # An idle wake-up is two scripts (a permit, a fetch that refunds it)
        # per IDLE_WAIT_MAX_S; the watch's one read is shared by all.
        before = await client_calls(redis)
        await asyncio.sleep(3 * IDLE_WAIT_MAX_S)
        calls = await client_calls(redis) - before
        per_account_per_s = calls / ACCOUNTS / (3 * IDLE_WAIT_MAX_S)
        assert per_account_per_s <= 1.5, per_account_per_s

        # Work for one idle account is picked up without waiting for its wake-up.
        await Producer(redis, account="a7", key_prefix=key_prefix).enqueue("c", "9845000001")
        keys = AccountKeys(key_prefix, "a7")

        async def recorded() -> bool:
            return int(await redis.xlen(keys.results)) == 1

        await eventually(recorded, timeout_s=30)
    finally:
        stopping.set()
        await asyncio.wait_for(pool, 30)
