"""Each worker's heartbeat per account: who is alive, for ``ozp_workers``.

A worker stamps itself in the account's workers set every sweep (a quarter
of the visibility timeout), valid for a few sweeps, and removes itself when
it stops. The exporter counts the stamps still valid on Redis's clock.
"""

from __future__ import annotations

from redis.asyncio import Redis

from worker.store.keys import AccountKeys
from worker.store.lua import register

# A worker counts as alive for this many sweeps after its last stamp: one
# missed sweep (a slow Redis call, a stall) does not make it vanish.
ALIVE_SWEEPS = 3
# Stamps this long past their validity are removed by the next stamp.
FORGET_AFTER_MS = 3_600_000


class Heartbeat:
    def __init__(self, redis: Redis, keys: AccountKeys, consumer: str, sweep_s: float) -> None:
        self._script = register(redis, "pool/heartbeat")
        self._keys = keys
        self._consumer = consumer
        self._alive_ms = round(ALIVE_SWEEPS * sweep_s * 1000)

    async def beat(self) -> int:
        """Stamp this worker alive; return how many workers are alive."""
        return int(await self._script(
            keys=[self._keys.workers], args=[self._consumer, self._alive_ms, FORGET_AFTER_MS]
        ))  # fmt: skip

    async def stop(self) -> None:
        await self._script(keys=[self._keys.workers], args=[self._consumer, 0, FORGET_AFTER_MS])


async def live_workers(redis: Redis, keys: AccountKeys, now_ms: int) -> int:
    return int(await redis.zcount(keys.workers, now_ms, "+inf"))
