"""The distributed limiter against a real Redis: reservations, not sleeps.

Grants are computed by Redis at once, so these tests check the schedule
itself (every sliding window) without waiting for it to play out. A grant
that need not wait is slotted at Redis' own "now", which moves on between two
round trips by however long a busy machine takes; so the tests state such
grants as "slot == granted_at" (no wait), never as "within N ms of another".
"""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from bench.measures import max_in_window
from tests.conftest import make_settings
from worker.limiter.permits import MICROS, Limiter, Permit
from worker.store.keys import AccountKeys

# Never dialled: the limiter is handed its Redis client.
UNUSED_REDIS_URL = "redis://127.0.0.1:9/0"


def _limiter(redis: Redis, prefix: str, **changes: object) -> Limiter:
    settings = make_settings(UNUSED_REDIS_URL, prefix, **changes)
    account = settings.account()
    return Limiter(redis, AccountKeys(prefix, account.name), account)


async def test_grants_fill_each_window_exactly_and_never_beyond(
    redis: Redis, key_prefix: str
) -> None:
    limiter = _limiter(redis, key_prefix, rate_limit=5, rate_window_s=1.0, rate_margin_s=0.05)
    permits = [await limiter.acquire() for _ in range(15)]
    slots = [p.slot_us for p in permits]
    window_us = int(1.05 * MICROS)

    assert slots == sorted(slots)
    assert max_in_window(slots, window_us) == 5
    # The first five go at once; each later five exactly one window (plus
    # margin) after the five before them: the allowance is used to the end.
    assert [p.slot_us for p in permits[:5]] == [p.granted_at_us for p in permits[:5]]
    for i in range(5, 15):
        assert slots[i] - slots[i - 5] == window_us


async def test_concurrent_acquirers_on_separate_connections_share_one_schedule(
    redis: Redis, redis_url: str, key_prefix: str
) -> None:
    clients = [Redis.from_url(redis_url) for _ in range(4)]
    try:
        limiters = [
            _limiter(c, key_prefix, rate_limit=10, rate_window_s=2.0, rate_margin_s=0.02)
            for c in clients
        ]
        permits = await asyncio.gather(*(lim.acquire() for lim in limiters for _ in range(25)))
    finally:
        for c in clients:
            await c.aclose()
    slots = sorted(p.slot_us for p in permits)
    window_us = int(2.02 * MICROS)
    assert len({p.id for p in permits}) == 100
    assert max_in_window(slots, window_us) == 10
    # The first ten wait for nothing; every later grant comes exactly one
    # window after the tenth before it: nothing was wasted, nothing doubled.
    immediate = [p for p in permits if p.slot_us <= slots[9]]
    assert len(immediate) == 10 and all(p.slot_us == p.granted_at_us for p in immediate)
    assert all(slots[i] - slots[i - 10] == window_us for i in range(10, 100))


async def test_a_refunded_permit_is_granted_again(redis: Redis, key_prefix: str) -> None:
    limiter = _limiter(redis, key_prefix, rate_limit=2, rate_window_s=10.0, rate_margin_s=0.1)
    first = await limiter.acquire()
    second = await limiter.acquire()
    third = await limiter.acquire()
    assert third.slot_us >= first.slot_us + 10.1 * MICROS
    await limiter.refund(second)
    await limiter.refund(third)
    again = await limiter.acquire()
    # With the refunds, only one permit is in the window: the next is immediate.
    assert again.slot_us == again.granted_at_us


async def test_cool_down_holds_every_grant_back(redis: Redis, key_prefix: str) -> None:
    limiter = _limiter(redis, key_prefix, rate_limit=100, rate_window_s=60.0, rate_margin_s=0.5)
    until_s = await limiter.cool_down(3.0)
    permit = await limiter.acquire()
    assert permit.slot_us >= until_s * MICROS
    assert permit.slot_us - permit.granted_at_us >= 2.9 * MICROS
    # A shorter cool-down never shortens a longer one already in force.
    assert await limiter.cool_down(1.0) == until_s


async def test_customer_caps_are_checked_with_the_vendor_limit(
    redis: Redis, key_prefix: str
) -> None:
    limiter = _limiter(
        redis,
        key_prefix,
        rate_limit=5,
        rate_window_s=1.0,
        rate_margin_s=0.01,
        rate_cap_per_hour=7,
    )
    slots = [(await limiter.acquire()).slot_us for _ in range(8)]
    assert max_in_window(slots, int(1.01 * MICROS)) <= 5
    # The 6th and 7th wait one window for the 1st and 2nd; the 8th would be
    # the 8th in an hour: it waits for the first to age out.
    assert slots[5] - slots[0] == slots[6] - slots[1] == int(1.01 * MICROS)
    assert slots[7] - slots[0] >= 3600.01 * MICROS


async def test_permit_wait_is_measured_from_redis_time_not_the_host_clock(
    redis: Redis, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter = _limiter(redis, key_prefix, rate_limit=1, rate_window_s=5.0, rate_margin_s=0.1)
    first = await limiter.acquire()
    second = await limiter.acquire()
    assert second.slot_us - first.slot_us == int(5.1 * MICROS)
    # The wait is the server's (slot - now) less the time since the answer
    # came; a host wall clock an hour off changes nothing.
    server_wait_s = (second.slot_us - second.granted_at_us) / MICROS
    assert 0 < server_wait_s <= 5.1
    monkeypatch.setattr(time, "time", lambda: 3600.0)
    assert server_wait_s - 1.0 < second.seconds_until_slot() <= server_wait_s


async def test_pacing_is_a_burst_then_a_steady_pace_and_costs_no_allowance(
    redis: Redis, key_prefix: str
) -> None:
    # 100 per 2 s (the tests' vendor minute), bursts of 10: then one every 20 ms.
    paced = _limiter(redis, key_prefix, rate_limit=100, rate_window_s=2.0, rate_margin_s=0.02)
    unpaced = _limiter(redis, key_prefix + "u", rate_limit=100, rate_window_s=2.0,
                       rate_margin_s=0.02, rate_burst=100)  # fmt: skip
    count = 500  # five windows' worth, granted at once as reservations
    paced_permits = [await paced.acquire() for _ in range(count)]
    paced_slots = [p.slot_us for p in paced_permits]
    unpaced_permits = [await unpaced.acquire() for _ in range(count)]
    unpaced_slots = [p.slot_us for p in unpaced_permits]
    interval = int(0.02 * MICROS)

    # A burst of 10 at once (at Redis's "now", which moves on while they are
    # granted), then a steady pace: each later one an interval after the one
    # before it, until the vendor's window binds. A process stalled past a
    # slot finds the bucket refilled and is granted at "now" instead: never
    # sooner than either. Asserted as that rule, not as a timing.
    assert [p.slot_us for p in paced_permits[:10]] == [p.granted_at_us for p in paced_permits[:10]]
    assert paced_slots[10] - paced_slots[0] >= interval
    for i in range(11, 100):
        gap = paced_slots[i] - paced_slots[i - 1]
        assert gap == interval or paced_slots[i] == paced_permits[i].granted_at_us
    assert sum(paced_slots[i] - paced_slots[i - 1] == interval for i in range(11, 100)) > 0
    # A token bucket: any stretch of d holds at most 10 + d / interval slots.
    for i in range(count):
        for j in range(i + 1, min(i + 150, count)):
            assert (j - i + 1) * interval <= 10 * interval + (paced_slots[j] - paced_slots[i])
    # Without pacing, the vendor's limit alone lets a whole window go at once:
    # the first 100 are each granted at Redis's "now", however slowly asked.
    assert [p.slot_us for p in unpaced_permits[:100]] == [
        p.granted_at_us for p in unpaced_permits[:100]
    ]
    # Both keep the vendor's limit in every window widened by the margin, and
    # neither costs allowance: every grant comes exactly one widened window
    # after the one a limit's worth before it, so each window carries the
    # whole allowance; pacing only spreads it within the window.
    window_us = int(2.02 * MICROS)
    for slots in (paced_slots, unpaced_slots):
        assert max_in_window(slots, window_us) == 100
        assert all(slots[i] - slots[i - 100] == window_us for i in range(100, count))


def test_pacing_is_off_when_the_burst_is_the_whole_allowance() -> None:
    settings = make_settings(UNUSED_REDIS_URL, "p", rate_limit=100, rate_burst=100)
    assert settings.account().pacing is None
    default = make_settings(UNUSED_REDIS_URL, "p", rate_limit=100, rate_window_s=60.0)
    assert default.account().pacing == (10, 0.6)


async def test_the_send_deadline_is_anchored_before_the_grant_not_on_a_late_reply(
    redis: Redis, key_prefix: str
) -> None:
    limiter = _limiter(redis, key_prefix, rate_limit=5, rate_window_s=1.0, rate_margin_s=0.2)
    permit = await limiter.acquire()
    assert permit.asked_mono <= permit.received_mono
    # The same grant, its reply read 5 s late by a saturated process.
    late = Permit(permit.id, permit.slot_us, permit.granted_at_us,
                  received_mono=permit.asked_mono + 5.0, asked_mono=permit.asked_mono)  # fmt: skip
    to_slot_s = (permit.slot_us - permit.granted_at_us) / MICROS
    # Half the margin past the slot, counted from before the ask: the late
    # reading moves the time to sleep, never the time to give up sending.
    assert limiter.write_by_after_slot_s == pytest.approx(0.1)
    deadline = late.send_deadline(limiter.write_by_after_slot_s)
    assert deadline == pytest.approx(permit.asked_mono + to_slot_s + 0.1)
    assert deadline < late.received_mono
