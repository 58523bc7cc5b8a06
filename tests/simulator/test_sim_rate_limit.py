"""The per-API-key sliding window of the delete endpoint, as measured by the simulator.

The window rule itself is tested with explicit times in ``test_sim_units.py``;
here real requests go over HTTP and the verdicts are checked against the
server's own arrival stamps.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from simclient import Sim, SimFactory

from worker.simulator import AccountSpec

pytestmark = pytest.mark.asyncio

RATE_LIMITED = {"status": "error", "message": "Max limit exceeded"}


def expected_violations(stamps: list[float], limit: int, window_s: float) -> list[bool]:
    """For each arrival: more than ``limit`` arrivals in (t - W, t], itself included?"""
    return [sum(1 for s in stamps if t - window_s < s <= t) > limit for t in stamps]


async def fast_sim(make_sim: SimFactory, limit: int, **overrides: Any) -> Sim:
    # 60 vendor seconds in 1 real second: the window is one real second.
    return await make_sim(time_scale=60, rate_limit=limit, **overrides)


async def test_arrivals_beyond_the_limit_get_429(make_sim: SimFactory) -> None:
    # A 10 s window: eight requests in a row fall in one, however busy the machine.
    sim = await make_sim(time_scale=6, rate_limit=5)
    token = await sim.token()
    answers = [await sim.delete(token=token, phone=f"81{i:08d}") for i in range(8)]
    inspected = await sim.log()
    deletes = [r for r in inspected["requests"] if r["endpoint"] == "delete"]
    stamps = [r["mono"] for r in deletes]
    assert inspected["window_s"] == pytest.approx(10.0)
    assert inspected["limit"] == 5
    assert stamps[-1] - stamps[0] < 10.0, "too slow a machine for this test"
    assert [a.status for a in answers] == [200] * 5 + [429] * 3
    assert all(a.document == RATE_LIMITED for a in answers[5:])
    assert inspected["violations"] == 3
    assert inspected["max_in_window"] == 8
    assert [r["status"] for r in deletes] == [200] * 5 + [429] * 3
    assert [r["message"] for r in deletes][5:] == ["Max limit exceeded"] * 3


async def test_concurrent_burst_counts_every_violation(make_sim: SimFactory) -> None:
    sim = await fast_sim(make_sim, limit=4)
    token = await sim.token()
    answers = await asyncio.gather(*(sim.delete(token=token, phone="x") for _ in range(20)))
    inspected = await sim.log()
    deletes = [r for r in inspected["requests"] if r["endpoint"] == "delete"]
    verdicts = expected_violations([r["mono"] for r in deletes], 4, inspected["window_s"])
    assert [r["status"] == 429 for r in deletes] == verdicts
    assert inspected["violations"] == sum(verdicts) == sum(a.status == 429 for a in answers)
    assert inspected["violations"] >= 16 - 4  # the burst spans well under a second


async def sleep_until(deadline: float) -> None:
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))


async def test_rejected_arrivals_count_against_the_window(make_sim: SimFactory) -> None:
    sim = await fast_sim(make_sim, limit=2)
    token = await sim.token()
    assert [(await sim.delete(token=token, phone="x")).status for _ in range(2)] == [200, 200]
    t0 = (await sim.log())["requests"][1]["mono"]
    await sleep_until(t0 + 0.5)
    assert [(await sim.delete(token=token, phone="x")).status for _ in range(2)] == [429, 429]
    # The two answered arrivals have left the window, the two rejected ones
    # (at t0 + 0.5) have not: they still fill it, so this one is rejected too.
    await sleep_until(t0 + 1.05)
    assert (await sim.delete(token=token, phone="x")).status == 429
    inspected = await sim.log()
    assert inspected["violations"] == 3
    deletes = [r for r in inspected["requests"] if r["endpoint"] == "delete"]
    assert deletes[-1]["mono"] - deletes[2]["mono"] < 1.0, "too slow a machine for this test"


async def test_window_slides(make_sim: SimFactory) -> None:
    sim = await fast_sim(make_sim, limit=3)
    token = await sim.token()
    assert [(await sim.delete(token=token, phone="x")).status for _ in range(2)] == [200, 200]
    t0 = (await sim.log())["requests"][1]["mono"]
    await sleep_until(t0 + 0.5)
    assert (await sim.delete(token=token, phone="x")).status == 200
    # The first two leave the window at t0 + 1; the third stays until t0 + 1.5.
    await sleep_until(t0 + 1.05)
    statuses = [(await sim.delete(token=token, phone="x")).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    inspected = await sim.log()
    deletes = [r for r in inspected["requests"] if r["endpoint"] == "delete"]
    assert deletes[-1]["mono"] < deletes[2]["mono"] + 1.0, "too slow a machine for this test"
    verdicts = expected_violations([r["mono"] for r in deletes], 3, 1.0)
    assert [r["status"] == 429 for r in deletes] == verdicts
    assert (inspected["violations"], inspected["max_in_window"]) == (1, 4)


async def test_limit_is_per_api_key(make_sim: SimFactory) -> None:
    accounts = {"demo": AccountSpec("demo-key"), "other": AccountSpec("other-key", "apikey")}
    sim = await fast_sim(make_sim, limit=2, accounts=accounts)
    token = await sim.token()
    assert [(await sim.delete(token=token, phone="x")).status for _ in range(3)] == [
        200,
        200,
        429,
    ]
    other = await sim.delete(user="other", api_key="other-key", phone="x")
    assert other.document == {"status": "Error", "message": "No Record Found"}
    # A wrong key has a window of its own, and is limited too.
    wrong = [(await sim.delete(api_key="wrong", phone="x")).status for _ in range(3)]
    assert wrong == [200, 200, 429]
    ids = {r["api_key_id"] for r in (await sim.log())["requests"]}
    assert ids == {"acct:demo", "acct:other", "unknown-1"}


async def test_limit_comes_before_body_checks_but_after_missing_key(
    make_sim: SimFactory,
) -> None:
    sim = await fast_sim(make_sim, limit=1)
    await sim.delete(raw=b"[]")
    over = await sim.delete(raw=b"not json")
    assert (over.status, over.document) == (429, RATE_LIMITED)
    no_key = await sim.delete(api_key=None)
    assert no_key.status == 200
    assert no_key.document["message"] == "Api Key Should Not be Null or Empty."
    assert (await sim.log())["violations"] == 1


async def test_token_endpoint_is_not_rate_limited(make_sim: SimFactory) -> None:
    sim = await fast_sim(make_sim, limit=1)
    statuses = [(await sim.generate_token()).status for _ in range(3)]
    assert statuses == [200, 200, 200]
    assert (await sim.log())["violations"] == 0
