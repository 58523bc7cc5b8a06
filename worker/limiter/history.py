"""Requests sent per minute, for the last hour, per account: the console's rate chart.

Each request that left counts once, in the minute of its permit's slot (the
Redis server's clock, as the limiter granted it), never by a host's clock
or by when the answer came back. A calendar minute is a 60 s window, so no
minute can show more than the limiter allowed.

One hash per account (``AccountKeys.rate_minutes``): minute index (slot
// 60 s) -> requests. ``limiter/history.lua`` keeps it to about
``KEEP_MINUTES`` fields and gives it a TTL, so memory is bounded and an idle
account leaves nothing.

The count is taken in the step that settles the request, not in a call of
its own: ``results/record.lua`` and ``queue/retry.lua`` include
``history.lua`` (see :mod:`worker.limiter.scripts`) and run it when told the
slot of a request that left (:func:`chart_args`). A chart that cannot be
written (a wrong type under its key) fails no job: the included call is
protected, and the settle goes on without it.
"""

from __future__ import annotations

from redis.asyncio import Redis

from worker.store.keys import AccountKeys

MINUTE_US = 60_000_000
MINUTE_MS = 60_000
# More than the chart's hour, so that a chart read just as a minute turns
# never finds its oldest minute trimmed.
KEEP_MINUTES = 70
# Outlives the kept minutes: the hash's TTL is only renewed when a new
# minute's field is made.
TTL_MS = (KEEP_MINUTES + 2) * MINUTE_MS
MAX_MINUTES = KEEP_MINUTES
# How a settling script includes history.lua (see worker.limiter.scripts).
INCLUDED = ("limiter/history", "note_sent")


def chart_args(sent_slot_us: int | None) -> list[int | str]:
    """The arguments a settling script passes on to ``history.lua``: the slot of
    the request that left (empty: nothing left, nothing to count), the
    minutes kept and the hash's TTL."""
    return ["" if sent_slot_us is None else int(sent_slot_us), KEEP_MINUTES, TTL_MS]


async def minutes(redis: Redis, keys: AccountKeys, count: int = 60) -> list[tuple[int, int]]:
    """The last ``count`` minutes as (minute start, epoch ms on the Redis clock;
    requests), oldest first, zero-filled, the current minute last."""
    if not 1 <= count <= MAX_MINUTES:
        raise ValueError(f"count must be 1 to {MAX_MINUTES}, got {count}")
    seconds, _ = await redis.time()
    current = int(seconds) // 60
    indices = list(range(current - count + 1, current + 1))
    values = await redis.hmget(keys.rate_minutes, [str(i) for i in indices])
    return [(i * MINUTE_MS, _count(v)) for i, v in zip(indices, values, strict=True)]


def _count(value: object) -> int:
    # Anyone with access to Redis can write this hash: a field that is not a
    # count reads as nothing sent rather than breaking the chart.
    try:
        number = int(str(value)) if value is not None else 0
    except ValueError:
        return 0
    return max(number, 0)
