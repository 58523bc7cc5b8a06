"""Operator and safety switches of an account: pause, resume, halt; and how
an account's run ends."""

from __future__ import annotations

from enum import StrEnum

from redis.asyncio import Redis

from worker.logs import get_logger
from worker.store.keys import AccountKeys

log = get_logger(__name__)


class AccountExit(StrEnum):
    STOPPED = "stopped"  # asked to stop
    EMPTY = "empty"  # --until-empty and nothing is left
    HALTED = "halted"  # a credential error halted the account


async def halt_account(redis: Redis, keys: AccountKeys, reason: str) -> None:
    """Stop all sending for the account until an operator resumes it.

    Only credential errors halt: every further request would fail the same
    way, and dead-lettering the backlog would lose it. Jobs stay queued.
    """
    await redis.set(keys.halted, reason)
    log.error("account.halted", account=keys.account, reason=reason)


async def pause_account(redis: Redis, keys: AccountKeys, reason: str) -> None:
    await redis.set(keys.paused, reason or "paused by an operator")


async def resume_account(redis: Redis, keys: AccountKeys) -> bool:
    """Clear a pause and a halt; return whether there was one."""
    cleared = await redis.delete(keys.paused, keys.halted)
    return bool(cleared)


async def halt_reason(redis: Redis, keys: AccountKeys) -> str | None:
    value = await redis.get(keys.halted)
    return str(value) if value is not None else None
