"""An urgent job behind a bulk backlog of 10,000 is sent within two permits."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.conftest import eventually
from tests.fleet import (
    FLEET_LIMIT,
    FLEET_TIME_SCALE,
    Fleet,
    SimProcess,
    sim_report,
    worker_env,
    write_campaigns,
)
from worker.queue.jobs import make_job
from worker.queue.lanes import Queue
from worker.store.keys import AccountKeys

pytestmark = pytest.mark.slow

URGENT = "9000000001"
PROCESSES = 2


async def deletes(url: str) -> list[dict[str, object]]:
    return [r for r in (await sim_report(url))["requests"] if r["endpoint"] == "delete"]


async def test_an_urgent_job_overtakes_a_bulk_backlog_of_ten_thousand(
    redis: Redis, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    bulk = [f"98{i:08d}" for i in range(10_000)]
    sim = await SimProcess.start(
        write_campaigns(tmp_path / "c.json", {"c": [*bulk, URGENT]}),
        "--time-scale", str(FLEET_TIME_SCALE), "--rate-limit", str(FLEET_LIMIT),
    )  # fmt: skip
    keys = AccountKeys(key_prefix, "default")
    queue = Queue(redis, keys)
    await queue.enqueue_many(make_job("c", p) for p in bulk)
    fleet = Fleet(worker_env(redis_url, key_prefix, sim.url), tmp_path)
    try:
        await fleet.start(PROCESSES, args=())

        async def first_window_sent() -> bool:
            return len(await deletes(sim.url)) >= FLEET_LIMIT

        await eventually(first_window_sent)
        sent_before = len(await deletes(sim.url))
        assert await queue.enqueue(make_job("c", URGENT), lane="urgent")

        async def urgent_sent() -> bool:
            return any(r["phone"] == URGENT for r in await deletes(sim.url))

        await eventually(urgent_sent, timeout_s=30)
        order = [r["phone"] for r in await deletes(sim.url)]
    finally:
        await fleet.stop_all()
        await sim.stop()

    # Only jobs fetched before the urgent one was queued may arrive between
    # the count and it: those in flight then, at most one per concurrency
    # slot of the fleet. The 9,000 and more behind it wait.
    position = order.index(URGENT) - sent_before
    in_flight_at_most = PROCESSES * int(worker_env("", "", "")["OZP_CONCURRENCY"])
    assert 0 <= position <= in_flight_at_most, (position, sent_before)
    assert (await queue.counts()).bulk > 9_000
