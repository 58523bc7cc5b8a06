"""Typed reads of the results and dead-letter streams, page by page.

redis-py types stream replies loosely (bytes or str, optional everywhere);
our client decodes replies as text, so the entries are narrowed here once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis

Entry = tuple[str, dict[str, str]]
PAGE = 200


def as_entries(reply: Any) -> list[Entry]:
    """An XRANGE-style reply as (id, fields) pairs of text."""
    return [(str(entry_id), dict(fields or {})) for entry_id, fields in reply or []]


async def entries_from(redis: Redis, key: str, start: str = "-") -> AsyncIterator[Entry]:
    """Every entry from ``start`` (inclusive) on, oldest first, ``PAGE`` at a time."""
    while True:
        page = as_entries(await redis.xrange(key, min=start, max="+", count=PAGE))
        for entry in page:
            yield entry
        if len(page) < PAGE:
            return
        # An exclusive start ("(id") so the last entry is not read twice.
        start = f"({page[-1][0]}"


async def latest(redis: Redis, key: str, count: int) -> list[Entry]:
    """The newest ``count`` entries, oldest first."""
    return list(reversed(as_entries(await redis.xrevrange(key, max="+", min="-", count=count))))


async def last_id(redis: Redis, key: str) -> str:
    """The newest entry's id, or ``0-0`` for an empty or missing stream."""
    newest = as_entries(await redis.xrevrange(key, max="+", min="-", count=1))
    return newest[0][0] if newest else "0-0"


async def entries_after(redis: Redis, key: str, after_id: str, block_ms: int) -> list[Entry]:
    """Entries newer than ``after_id``, waiting up to ``block_ms`` for the first."""
    reply = await redis.xread({key: after_id}, count=PAGE, block=block_ms)
    if not reply:
        return []
    # RESP2 answers a list of [key, entries]; RESP3 a map of key -> entries.
    streams = reply.items() if isinstance(reply, dict) else reply
    return [entry for _, entries in streams for entry in as_entries(entries)]
