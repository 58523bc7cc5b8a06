"""A drain's progress, published in Redis for the operator console.

While ``drain`` (or ``demo``) runs, its live view publishes, about once a
second and once at the end, the numbers its panel shows into the drain's own
hash (``keys.drain(tag)``), beside the import's resume point, and adds the
tag to the account's set of drains (``keys.drains``). A console on any host
lists them with :func:`drains`.

The fields (``PROGRESS_FIELDS``) are apart from the import's own
(``imported_through_line``, ``imported``, ``d:<line>``); ``file`` is shared,
with the same value (the file's name).
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

from worker.accounts.status import known_accounts, server_time_ms
from worker.config.settings import DEFAULT_RESULT_TTL_S, Settings
from worker.store.keys import AccountKeys

# What a snapshot may hold; ``updated_ms`` is always the Redis clock's, at publishing.
SNAPSHOT_FIELDS = ("file", "phase", "rows", "queued", "done", "dead", "rejected")
COUNT_FIELDS = ("rows", "queued", "done", "dead", "rejected", "updated_ms")
PROGRESS_FIELDS = (*SNAPSHOT_FIELDS, "updated_ms")
# Text read back is bounded: anyone with access to Redis can write these hashes.
TEXT_MAX = 255


async def publish(
    redis: Redis,
    keys: AccountKeys,
    tag: str,
    snapshot: dict[str, int | str],
    *,
    ttl_s: int = DEFAULT_RESULT_TTL_S,
) -> None:
    """Write ``snapshot`` (fields of ``SNAPSHOT_FIELDS``; the others keep their
    last values) and the Redis time into the drain's hash, and list the drain.

    Both keys live ``ttl_s`` from the last publish: the drain's hash is the one
    the import keeps for as long as the jobs' records (``OZP_RESULT_TTL_S``).
    """
    unknown = sorted(set(snapshot) - set(SNAPSHOT_FIELDS))
    if unknown:
        # A name outside the list could overwrite the import's resume point.
        raise ValueError(f"not a progress field: {', '.join(unknown)}")
    fields: dict[FieldT, EncodableT] = dict(snapshot.items())
    fields["updated_ms"] = await server_time_ms(redis)
    key = keys.drain(tag)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping=fields)
        pipe.expire(key, ttl_s)
        pipe.sadd(keys.drains, tag)
        pipe.expire(keys.drains, ttl_s)
        await pipe.execute()


async def drains(redis: Redis, settings: Settings) -> list[dict[str, Any]]:
    """Every known account's drains that published progress, newest update first
    within each account: ``account``, ``tag`` and the ``PROGRESS_FIELDS``.

    A tag whose hash has expired is removed from its set. (A drain that
    publishes again in between is listed again by its next publish.)
    """
    listed: list[dict[str, Any]] = []
    for account in await known_accounts(redis, settings):
        keys = AccountKeys(settings.key_prefix, account)
        tags = sorted(str(tag) for tag in await redis.smembers(keys.drains))
        if not tags:
            continue
        async with redis.pipeline(transaction=False) as pipe:
            for tag in tags:
                pipe.exists(keys.drain(tag))
                pipe.hmget(keys.drain(tag), list(PROGRESS_FIELDS))
            replies = await pipe.execute()
        gone: list[str] = []
        found: list[dict[str, Any]] = []
        for tag, exists, values in zip(tags, replies[::2], replies[1::2], strict=True):
            if not exists:
                gone.append(tag)
                continue
            entry = _entry(account, tag, dict(zip(PROGRESS_FIELDS, values, strict=True)))
            if entry is not None:
                found.append(entry)
        if gone:
            await redis.srem(keys.drains, *gone)
        listed += sorted(found, key=lambda entry: (-entry["updated_ms"], entry["tag"]))
    return listed


def _entry(account: str, tag: str, values: dict[str, Any]) -> dict[str, Any] | None:
    """The console's view of one drain; None if it has published nothing readable
    (a hash with only the import's fields, or someone else's writing)."""
    entry: dict[str, Any] = {"account": account, "tag": _text(tag)}
    for name in ("file", "phase"):
        if values[name] is None:
            return None
        entry[name] = _text(values[name])
    for name in COUNT_FIELDS:
        number = _count(values[name])
        if number is None:
            return None
        entry[name] = number
    return entry


def _text(value: object) -> str:
    # A file name that is not UTF-8 came back with lone surrogates: "?" instead.
    return str(value)[:TEXT_MAX].encode("utf-8", "replace").decode("utf-8")


def _count(value: object) -> int | None:
    # A field never published (done and dead before the first status read) is 0.
    if value is None:
        return 0
    text = str(value)
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        return None
    return int(text)
