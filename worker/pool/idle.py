"""Waiting for work without a connection per idle account.

An account whose lanes are empty waits here until a lane gets an entry, a
retry falls due, or its longest wait passes. One task per process watches
every waiting account's lanes with a single blocking ``XREAD`` over all of
them, so a process with hundreds of idle accounts holds one connection for
them, not hundreds, and an idle account costs Redis nothing between its
wake-ups beyond its share of that one read.

On Redis Cluster one ``XREAD`` cannot span the accounts' slots, and a
blocking read per slot would hold a connection per idle account: there the
watch polls instead, every :data:`WATCH_BLOCK_S`, one non-blocking ``XREAD``
per slot, pipelined so that each node gets one round trip. An idle account
then costs a few reads a second, still none of its own connections.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from worker.events import wait_event
from worker.logs import get_logger
from worker.queue.lanes import Empty
from worker.store.cluster import is_cluster
from worker.store.keys import LANES, AccountKeys

log = get_logger(__name__)

# How long one XREAD blocks: also how soon a newly idle account's lanes join
# the read (a blocked read cannot take new streams).
WATCH_BLOCK_S = 0.25
# However quiet its lanes, an idle account looks again this often: for what
# no lane shows, a retry another process scheduled meanwhile or an entry the
# watch missed during a Redis outage. Two calls each time, so this bounds an
# idle account's cost at about one Redis call a second.
IDLE_WAIT_MAX_S = 2.0


@dataclass
class _Waiter:
    last_ids: dict[str, str]  # lane stream -> the last id the account saw
    woken: asyncio.Event = field(default_factory=asyncio.Event)


class LaneWatcher:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._waiters: dict[str, _Waiter] = {}  # by account
        self._changed = asyncio.Event()

    async def wait(
        self, keys: AccountKeys, empty: Empty, stopping: asyncio.Event,
        max_wait_s: float = IDLE_WAIT_MAX_S,
    ) -> None:  # fmt: skip
        """Until a lane of ``keys`` has an entry past ``empty``'s, a retry is
        due, ``stopping`` is set, or ``max_wait_s`` passes."""
        wait_s = max_wait_s
        if empty.next_due_ms is not None:
            seconds, micros = await self._redis.time()
            now_ms = int(seconds) * 1000 + int(micros) // 1000
            wait_s = min(wait_s, max(empty.next_due_ms - now_ms, 0) / 1000)
        if wait_s <= 0:
            return
        lanes = {keys.lane(lane): last for lane, last in zip(LANES, empty.last_ids, strict=True)}
        waiter = _Waiter(lanes)
        self._waiters[keys.account] = waiter
        self._changed.set()
        try:
            await _first_of(waiter.woken, stopping, wait_s)
        finally:
            if self._waiters.get(keys.account) is waiter:
                del self._waiters[keys.account]

    def poke(self, account: str) -> None:
        """Wake the account now if it waits: something of its own changed
        (a request of this process ended: its job is done, or due again)."""
        waiter = self._waiters.get(account)
        if waiter is not None:
            waiter.woken.set()

    async def run(self, over: asyncio.Event) -> None:
        """Watch the waiting accounts' lanes until ``over``."""
        while not over.is_set():
            if not self._waiters:
                self._changed.clear()
                await wait_event(self._changed, WATCH_BLOCK_S)
                continue
            waiting = dict(self._waiters)
            streams: dict[str, str] = {}
            owner: dict[str, _Waiter] = {}
            for waiter in waiting.values():
                streams.update(waiter.last_ids)
                owner.update(dict.fromkeys(waiter.last_ids, waiter))
            reply: Any
            try:
                if is_cluster(self._redis):
                    reply = await self._poll_by_slot(streams)
                else:
                    reply = await self._redis.xread(
                        streams,  # type: ignore[arg-type]
                        count=1,
                        block=round(WATCH_BLOCK_S * 1000),
                    )
            except RedisError as exc:
                # Wake everyone: each finds out for itself, and waits out the outage.
                log.debug("idle.watch_failed", error=exc)
                for waiter in waiting.values():
                    waiter.woken.set()
                await wait_event(over, WATCH_BLOCK_S)
                continue
            woke = False
            for stream in _streams_with_entries(reply):
                woken = owner.get(stream)
                if woken is not None:
                    woken.woken.set()
                    woke = True
            if is_cluster(self._redis) and not woke:
                await wait_event(over, WATCH_BLOCK_S)

    async def _poll_by_slot(self, streams: dict[str, str]) -> list[Any]:
        """The entries past ``streams``' ids, one ``XREAD`` per hash slot."""
        by_slot: dict[int, dict[str, str]] = {}
        for stream, last in streams.items():
            slot = self._redis.keyslot(stream)  # type: ignore[attr-defined]
            by_slot.setdefault(slot, {})[stream] = last
        async with self._redis.pipeline(transaction=False) as pipe:
            for group in by_slot.values():
                pipe.xread(group, count=1)  # type: ignore[arg-type]
            replies = await pipe.execute()
        return [pair for reply in replies for pair in _pairs(reply)]


def _pairs(reply: Any) -> list[Any]:
    # RESP2 answers a list of [stream, entries]; RESP3 a map of stream -> entries.
    if not reply:
        return []
    return list(reply.items()) if isinstance(reply, dict) else list(reply)


def _streams_with_entries(reply: Any) -> list[str]:
    return [str(stream) for stream, entries in _pairs(reply) if entries]


async def _first_of(first: asyncio.Event, second: asyncio.Event, seconds: float) -> None:
    """Until either event is set, or ``seconds`` pass."""
    waits = {asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())}
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for each in waits:
            each.cancel()
        await asyncio.gather(*waits, return_exceptions=True)


@contextlib.asynccontextmanager
async def watching(redis: Redis) -> AsyncIterator[LaneWatcher]:
    """A watcher whose task runs while the block does."""
    watcher = LaneWatcher(redis)
    over = asyncio.Event()
    task = asyncio.create_task(watcher.run(over))
    try:
        yield watcher
    finally:
        over.set()
        await task
