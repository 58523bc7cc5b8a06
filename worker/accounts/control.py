"""Operator and safety switches of an account: pause, resume, halt; how an
account's run ends; and the log of operators' actions the console shows."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

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


async def pause_account(redis: Redis, keys: AccountKeys, reason: str, by: str = "cli") -> None:
    """Stop dispatch until resumed; ``by`` (an operator's name, or ``cli``) goes in the log."""
    reason = reason or "paused by an operator"
    await redis.set(keys.paused, reason)
    await record_action(redis, keys, by, "pause", reason)


async def resume_account(redis: Redis, keys: AccountKeys, by: str = "cli") -> bool:
    """Clear a pause and a halt; return whether there was one."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.get(keys.paused)
        pipe.get(keys.halted)
        pipe.delete(keys.paused, keys.halted)
        paused, halted, cleared = await pipe.execute()
    was = [f"{what}: {why}" for what, why in (("paused", paused), ("halted", halted)) if why]
    detail = "; ".join(was) or "was neither paused nor halted"
    await record_action(redis, keys, by, "resume", detail)
    return bool(cleared)


async def halt_reason(redis: Redis, keys: AccountKeys) -> str | None:
    value = await redis.get(keys.halted)
    return str(value) if value is not None else None


# The actions log: what operators did to the account, newest first, for the
# console. Capped and expiring, so it costs a few kilobytes per account.
ACTIONS_KEPT = 100
ACTIONS_TTL_S = 30 * 24 * 3600
OPERATOR_MAX = 64
ACTION_MAX = 32
DETAIL_MAX = 200
# Longer than any entry record_action writes (every character escaped): a
# longer one was pushed by someone else, and is skipped without being parsed.
ENTRY_MAX = 12 * (OPERATOR_MAX + ACTION_MAX + DETAIL_MAX) + 200
_FIELDS = ("operator", "action", "detail")


def _bounded(text: str, limit: int) -> str:
    # A lone surrogate (a non-UTF-8 byte from argv or Redis) becomes "?":
    # the entry must read back as text anyone can encode.
    return text[:limit].encode("utf-8", "replace").decode("utf-8")


async def record_action(
    redis: Redis, keys: AccountKeys, operator: str, action: str, detail: str
) -> None:
    """Log an operator's action on the account, timed by the Redis clock."""
    seconds, micros = await redis.time()
    entry = {
        "at_ms": int(seconds) * 1000 + int(micros) // 1000,
        "operator": _bounded(operator, OPERATOR_MAX),
        "action": _bounded(action, ACTION_MAX),
        "detail": _bounded(detail, DETAIL_MAX),
    }
    async with redis.pipeline(transaction=True) as pipe:
        pipe.lpush(keys.actions, json.dumps(entry))
        pipe.ltrim(keys.actions, 0, ACTIONS_KEPT - 1)
        pipe.expire(keys.actions, ACTIONS_TTL_S)
        await pipe.execute()


async def recent_actions(redis: Redis, keys: AccountKeys, limit: int = 20) -> list[dict[str, Any]]:
    """Up to ``limit`` logged actions, newest first: ``at_ms``, ``operator``,
    ``action``, ``detail``. Entries that are not ones :func:`record_action`
    could have written are skipped: anyone with access to Redis can push here."""
    found: list[dict[str, Any]] = []
    start = 0
    # Read in pages of ``limit``: a well-kept log is one read; junk costs more
    # reads, never more than the entries the log is capped at.
    while limit > 0 and start < ACTIONS_KEPT and len(found) < limit:
        stop = min(start + limit, ACTIONS_KEPT) - 1
        page = await redis.lrange(keys.actions, start, stop)
        for item in page:
            entry = _action_entry(item)
            if entry is not None and len(found) < limit:
                found.append(entry)
        if len(page) < stop - start + 1:
            break
        start = stop + 1
    return found


def _action_entry(item: object) -> dict[str, Any] | None:
    if not isinstance(item, str) or len(item) > ENTRY_MAX:
        return None
    try:
        value = json.loads(item)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    at_ms = value.get("at_ms")
    if not isinstance(at_ms, int) or isinstance(at_ms, bool) or at_ms < 0:
        return None
    entry: dict[str, Any] = {"at_ms": at_ms}
    for name, limit in zip(_FIELDS, (OPERATOR_MAX, ACTION_MAX, DETAIL_MAX), strict=True):
        text = value.get(name)
        if not isinstance(text, str) or not _encodable(text):
            return None
        entry[name] = text[:limit]
    return entry


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
