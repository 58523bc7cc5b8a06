"""The distributed sliding-window limiter: one schedule of permits per account.

A permit is a reservation: Redis answers with the slot at which the caller
may send (timed by the Redis server's clock), and the caller sleeps until
then. Nobody polls, so a hundred processes waiting for the same account
cost Redis one call each per request, not a stampede.

The safety margin is spent in three parts, each bounded: a permit is spent
or refunded in ``queue/fetch.lua``, which checks that its slot has come and
has not passed by more than a quarter of the margin (Redis's clock); the
request must then start being written within another quarter (this host's
monotonic clock, see ``vendor/client.py``), or it is not sent at all; the last
half absorbs the network and the vendor's own delays.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from worker.config.settings import AccountSettings
from worker.store.connection import restart_watch
from worker.store.keys import AccountKeys
from worker.store.lua import register, script_source

MICROS = 1_000_000


@dataclass(frozen=True)
class Permit:
    id: str
    slot_us: int
    # Server time when the slot was granted, and our monotonic clock when the
    # answer arrived: the sleep is measured locally, so hosts' wall clocks
    # (which may disagree by minutes) never matter.
    granted_at_us: int
    received_mono: float
    # Our monotonic clock just before asking: never later than the moment
    # Redis granted the permit, however late this process reads the reply.
    asked_mono: float

    def seconds_until_slot(self) -> float:
        elapsed = time.monotonic() - self.received_mono
        return (self.slot_us - self.granted_at_us) / MICROS - elapsed

    def send_deadline(self, after_slot_s: float) -> float:
        """The monotonic time by which the request must start being written:
        ``after_slot_s`` past the slot, on a clock anchored before the grant.

        Anchored on the ask, not on any reply: a process whose event loop
        reads Redis's replies late (a saturated CPU) would otherwise measure
        its budget from the late reading and send after its slot by as much
        as it lagged, which can land a request in the next window at the
        vendor. This deadline is never later than the slot's own.
        """
        return self.asked_mono + (self.slot_us - self.granted_at_us) / MICROS + after_slot_s


@dataclass(frozen=True)
class PermitAsk:
    """A permit asked for inside another script's call (``queue/fetch.lua``
    includes ``acquire.lua``): its id and ``acquire.lua``'s arguments after it."""

    id: str
    args: list[int]
    # Our monotonic clock before the call that carries the ask, as for any permit.
    asked_mono: float
    # Reserve it after a job is handed out too; otherwise only after a late permit.
    after_job: bool

    def granted(self, slot_us: int, now_us: int) -> Permit:
        return Permit(self.id, int(slot_us), int(now_us), time.monotonic(), self.asked_mono)


class Limiter:
    def __init__(self, redis: Redis, keys: AccountKeys, account: AccountSettings) -> None:
        self._redis = redis
        self._keys = keys
        self._margin_us = round(account.rate_margin_s * MICROS)
        # The pacing (burst, refill interval, how many recent slots it looks
        # at), then (limit, window) pairs: the vendor's and the customer's
        # caps, whose windows the safety margin widens.
        burst, interval_s = account.pacing or (0, 0.0)
        self._pacing = [burst, round(interval_s * MICROS), account.rate_limit]
        self._caps: list[int] = []
        for cap in account.rate_caps:
            self._caps += [cap.limit, round(cap.window_s * MICROS)]
        self._window_s = account.rate_window_s
        self._acquire = register(redis, "limiter/acquire")
        self._cool_down = register(redis, "limiter/cool_down")
        self._ids = itertools.count()
        self._tag = secrets.token_hex(4)
        watch = restart_watch(redis)
        if watch is not None:
            # A restarted Redis may have lost the last second of grants: hold
            # everything back for a window rather than risk granting them twice.
            watch.on_restart(
                f"cool-down {keys.cooldown}",
                "EVAL",
                script_source("limiter/cool_down"),
                1,
                keys.cooldown,
                round(account.rate_window_s * MICROS),
            )

    @property
    def lateness_tolerance_us(self) -> int:
        """How late, after its slot, a permit may still be traded for a job."""
        return self._margin_us // 4

    @property
    def write_by_after_slot_s(self) -> float:
        """How long after its slot a request may still start being written:
        the lateness tolerated at the trade, and the send budget after it."""
        return self._margin_us / 2 / MICROS

    @property
    def send_budget_s(self) -> float:
        """How long after that trade the request may start being written."""
        return self._margin_us / 4 / MICROS

    async def acquire(self) -> Permit:
        """Reserve the next slot of the account's allowance."""
        ask = self.ask(after_job=False)
        slot, now = await self._acquire(
            keys=[self._keys.limiter, self._keys.cooldown], args=[ask.id, *ask.args]
        )
        return ask.granted(slot, now)

    def ask(self, *, after_job: bool) -> PermitAsk:
        """A permit to reserve in the call about to be made (see :class:`PermitAsk`)."""
        return PermitAsk(
            f"{self._tag}:{next(self._ids)}",
            [self._margin_us, *self._pacing, *self._caps],
            time.monotonic(),
            after_job,
        )

    async def wait_for(self, permit: Permit) -> None:
        delay = permit.seconds_until_slot()
        if delay > 0:
            await asyncio.sleep(delay)

    async def refund(self, permit: Permit) -> None:
        """Give back a permit that sent nothing, so another request can use it."""
        await self._redis.zrem(self._keys.limiter, permit.id)

    async def cool_down(self, seconds: float | None = None) -> float:
        """Grant nothing for ``seconds`` (default: one window); return the server end, s."""
        duration = self._window_s if seconds is None else seconds
        until_us = await self._cool_down(
            keys=[self._keys.cooldown], args=[round(duration * MICROS)]
        )
        return int(until_us) / MICROS

    async def granted_between(self, since_s: float, until_s: float) -> int:
        """Permits whose slots fall in [since, until] (server epoch seconds)."""
        return int(
            await self._redis.zcount(
                self._keys.limiter, round(since_s * MICROS), round(until_s * MICROS)
            )
        )
