"""Script calls that share a round trip to Redis.

A process with hundreds of accounts makes a thousand script calls a second
(a fetch and a settle per job), each on its own: a connection taken from the
pool, a write, a read, a wake-up. Most of a job's CPU went there. Calls made
at about the same moment go instead in one pipeline (``transaction=False``):
one connection, one write, and the replies read together, each handed back
to its own caller as if it had been made alone. Nothing else changes: each
script is still one atomic step on the server, and a pipeline never holds
anything across calls, so no call waits on another's keys.

How long a call may wait for company is its caller's choice. The settles (a
record, a retry) wait a couple of milliseconds: the answer is in hand, and
nothing is timed on their write. A fetch does not come here at all: its
permit's slot has come, and the turns of the loop a batch costs (the flush,
then the pipeline's task) would come out of the permit's lateness allowance;
measured, a busy process then had permits late by the thousand.

On Redis Cluster a pipeline spans the nodes that own the calls' slots, so
there each call goes on its own, as before (:class:`ScriptCalls`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from worker.store.cluster import is_cluster

# At most this many calls share one pipeline: their replies are read in one
# go, so a bigger batch holds its first caller back for longer.
MAX_BATCH = 64
# How long a settle (a record, a retry) waits to share its round trip: long
# enough for a busy process to gather a few, short against any request.
SETTLE_WITHIN_S = 0.002


class ScriptCalls:
    """Each call its own round trip: the default, and the one for Cluster."""

    async def call(
        self,
        script: AsyncScript,
        keys: Sequence[str | bytes],
        args: Sequence[str | bytes | int],
        *,
        within_s: float = 0.0,
    ) -> Any:
        """Run ``script``; ``within_s``: how long it may wait to share a round trip."""
        return await script(keys=keys, args=args)


@dataclass
class _Call:
    script: AsyncScript
    keys: Sequence[str | bytes]
    args: Sequence[str | bytes | int]
    reply: asyncio.Future[Any]


class BatchedScriptCalls(ScriptCalls):
    """Calls made within each other's waits go to Redis in one pipeline."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pending: list[_Call] = []
        self._flush: asyncio.TimerHandle | asyncio.Handle | None = None
        self._flush_at = 0.0
        self._running: set[asyncio.Task[None]] = set()

    async def call(
        self,
        script: AsyncScript,
        keys: Sequence[str | bytes],
        args: Sequence[str | bytes | int],
        *,
        within_s: float = 0.0,
    ) -> Any:
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Any] = loop.create_future()
        self._pending.append(_Call(script, keys, args, reply))
        now = loop.time()
        due = now + within_s if len(self._pending) < MAX_BATCH else now
        if self._flush is None or due < self._flush_at:
            if self._flush is not None:
                self._flush.cancel()
            self._flush_at = due
            # call_soon runs after everything already due in this turn of the
            # loop, so the calls those make join this batch too.
            self._flush = (
                loop.call_soon(self._send) if due <= now else loop.call_at(due, self._send)
            )
        return await reply

    def _send(self) -> None:
        batch, self._pending, self._flush = self._pending, [], None
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[_Call]) -> None:
        if len(batch) == 1:
            await _alone(batch[0])
            return
        pipe = self._redis.pipeline(transaction=False)
        for each in batch:
            pipe.execute_command("EVALSHA", each.script.sha, len(each.keys), *each.keys, *each.args)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            # The connection failed (after the client's own retries), or this
            # task was cancelled: every caller hears of it, as it would alone.
            for each in batch:
                _fail(each.reply, exc)
            if isinstance(exc, Exception):
                return
            raise
        for each, reply in zip(batch, replies, strict=True):
            if isinstance(reply, NoScriptError):
                # A server that lost its scripts (a restart, a failover): the
                # call alone loads it and runs again, like any script call.
                await _alone(each)
            elif isinstance(reply, Exception):
                _fail(each.reply, reply)
            elif not each.reply.done():
                each.reply.set_result(reply)


async def _alone(each: _Call) -> None:
    try:
        result = await each.script(keys=each.keys, args=each.args)
    except BaseException as exc:
        _fail(each.reply, exc)
        if not isinstance(exc, Exception):
            raise
        return
    if not each.reply.done():
        each.reply.set_result(result)


def _fail(reply: asyncio.Future[Any], exc: BaseException) -> None:
    if reply.done():
        return  # its caller gave up waiting (cancelled)
    if isinstance(exc, asyncio.CancelledError):
        reply.cancel()
    else:
        reply.set_exception(exc)


def script_calls(redis: Redis) -> ScriptCalls:
    """Batched calls for one process's client; each alone on Cluster."""
    return ScriptCalls() if is_cluster(redis) else BatchedScriptCalls(redis)
