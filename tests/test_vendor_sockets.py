"""Every way a vendor request can end without an answer gives its socket back.

A refused send (its permit's moment passed, or aiohttp's automatic resend)
is refused after a connection was taken: that connection must go back to
the pool or be closed, or each refusal keeps a socket open on both ends
for good. The counts are of this process's open file descriptors, which
include the simulator's side of every connection, since it runs here too.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest

from tests.conftest import Simulator
from worker.config.settings import AccountSettings, Secret
from worker.queue.jobs import make_job
from worker.simulator import AccountSpec
from worker.store.embedded import free_port
from worker.vendor.client import (
    NotSent,
    OzonetelClient,
    TransportFailure,
    TransportTimeout,
    create_session,
)

# Descriptors a run may open for good without leaking: the resolver's, a
# pooled connection or two and their far ends. A leak of one per refusal
# is thousands.
SLACK = 10
REFUSED = "9845000001"
ON_TIME = "9845000002"


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _settled_fds(baseline: int) -> int:
    """The descriptor count once closes already decided have been carried out.

    A closed transport lets its socket go on a later turn of the loop, and
    the simulator closes its end when it reads the EOF: give both some turns,
    stopping as soon as the count is back within the slack.
    """
    count = _open_fds()
    for _ in range(200):
        if count <= baseline + SLACK:
            break
        await asyncio.sleep(0.01)
        count = _open_fds()
    return count


async def _simulator(simulator_factory: Any, **config: Any) -> Simulator:
    sim: Simulator = await simulator_factory(
        campaigns={"c": {REFUSED}},
        accounts={"demo": AccountSpec("demo-key", "apikey")},
        # Far above what the test sends: every on-time request is answered.
        rate_limit=1_000_000,
        **config,
    )
    return sim


def _account(url: str) -> AccountSettings:
    return AccountSettings(
        base_url=url, username="demo", api_key=Secret("demo-key"), auth_mode="apikey"
    )


async def _deletes_of(sim: Simulator, phone: str) -> int:
    requests = (await sim.inspect())["requests"]
    return sum(1 for r in requests if r["endpoint"] == "delete" and r["phone"] == phone)


@pytest.mark.parametrize("connection", ["fresh", "reused"])
async def test_sends_refused_past_their_moment_leave_no_socket_open(
    simulator_factory: Any, connection: str
) -> None:
    sim = await _simulator(simulator_factory)
    session = create_session(5.0)
    client = OzonetelClient(session, _account(sim.url))
    refusals = 2000 if connection == "fresh" else 1000

    async def refused_send() -> None:
        with pytest.raises(NotSent):
            await client.delete_record(
                make_job("c", REFUSED), None, send_by=time.monotonic() - 0.001
            )

    try:
        # Whatever is opened once and kept (the resolver, a pooled connection)
        # is in the baseline.
        await client.delete_record(make_job("c", ON_TIME), None)
        await refused_send()
        baseline = await _settled_fds(_open_fds())
        for _ in range(refusals):
            if connection == "reused":
                # Leaves its connection in the pool for the refusal to take.
                await client.delete_record(make_job("c", ON_TIME), None)
            await refused_send()
        after = await _settled_fds(baseline)
    finally:
        await session.close()
    assert after <= baseline + SLACK, f"{baseline} descriptors open before, {after} after"
    assert await _deletes_of(sim, REFUSED) == 0
    assert (await sim.campaigns())["c"] == [REFUSED]


async def test_a_refused_resend_leaves_no_socket_open(simulator_factory: Any) -> None:
    sim = await _simulator(simulator_factory)
    session = create_session(5.0)
    client = OzonetelClient(session, _account(sim.url))
    dropped = 200
    try:
        baseline = await _settled_fds(_open_fds())
        for _ in range(dropped):
            # Two connections in the pool: the send takes one and is dropped,
            # and aiohttp's resend would take the other.
            await sim.control("faults", {"drop_rate": 0.0})
            await asyncio.gather(
                *(client.delete_record(make_job("c", ON_TIME), None) for _ in range(2))
            )
            await sim.control("faults", {"drop_rate": 1.0})
            with pytest.raises(TransportFailure):
                await client.delete_record(make_job("c", REFUSED), None)
        after = await _settled_fds(baseline)
    finally:
        await session.close()
    assert after <= baseline + SLACK, f"{baseline} descriptors open before, {after} after"
    # One arrival per send: the resend never left.
    assert await _deletes_of(sim, REFUSED) == dropped


async def test_timeouts_leave_no_socket_open(simulator_factory: Any) -> None:
    # The simulator answers a hung request after a second: its side of each
    # connection is let go by then at the latest.
    sim = await _simulator(simulator_factory, hang_rate=1.0, hang_s=1.0)
    session = create_session(0.2)
    client = OzonetelClient(session, _account(sim.url))
    try:
        baseline = await _settled_fds(_open_fds())
        for _ in range(5):
            results = await asyncio.gather(
                *(client.delete_record(make_job("c", REFUSED), None) for _ in range(100)),
                return_exceptions=True,
            )
            assert all(isinstance(r, TransportTimeout) for r in results), results[:3]
        after = await _settled_fds(baseline)
    finally:
        await session.close()
    assert after <= baseline + SLACK, f"{baseline} descriptors open before, {after} after"


async def test_refused_connections_leave_no_socket_open() -> None:
    session = create_session(2.0)
    client = OzonetelClient(session, _account(f"http://127.0.0.1:{free_port()}"))
    try:
        with pytest.raises(TransportFailure):
            await client.delete_record(make_job("c", REFUSED), None)
        baseline = await _settled_fds(_open_fds())
        for _ in range(2000):
            with pytest.raises(TransportFailure):
                await client.delete_record(make_job("c", REFUSED), None)
        after = await _settled_fds(baseline)
    finally:
        await session.close()
    assert after <= baseline + SLACK, f"{baseline} descriptors open before, {after} after"
