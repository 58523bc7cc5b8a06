"""The actions log: what operators did to an account, newest first, capped,
expiring, and readable whatever else has been pushed onto the list."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from worker.accounts.control import (
    ACTIONS_KEPT,
    ACTIONS_TTL_S,
    DETAIL_MAX,
    OPERATOR_MAX,
    pause_account,
    recent_actions,
    record_action,
    resume_account,
)
from worker.store.connection import redis_client
from worker.store.keys import AccountKeys

_prefixes = itertools.count()
FIELDS = {"at_ms", "operator", "action", "detail"}


async def redis_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


def well_formed(entry: dict[str, Any]) -> bool:
    return (
        set(entry) == FIELDS
        and type(entry["at_ms"]) is int
        and entry["at_ms"] >= 0
        and all(isinstance(entry[name], str) for name in ("operator", "action", "detail"))
    )


async def test_an_action_is_logged_with_the_redis_time_newest_first(
    redis: Redis, key_prefix: str
) -> None:
    keys = AccountKeys(key_prefix, "default")
    before = await redis_ms(redis)
    await record_action(redis, keys, "alice", "replay", "3 dead letters, reason no_record")
    await record_action(redis, keys, "bob", "purge", "all")
    after = await redis_ms(redis)

    actions = await recent_actions(redis, keys)
    assert [(a["operator"], a["action"], a["detail"]) for a in actions] == [
        ("bob", "purge", "all"),
        ("alice", "replay", "3 dead letters, reason no_record"),
    ]
    assert all(set(a) == FIELDS for a in actions)
    assert before <= actions[1]["at_ms"] <= actions[0]["at_ms"] <= after
    assert 0 < await redis.ttl(keys.actions) <= ACTIONS_TTL_S
    assert await recent_actions(redis, keys, limit=1) == actions[:1]
    assert await recent_actions(redis, keys, limit=0) == []


async def test_the_log_keeps_the_newest_hundred(redis: Redis, key_prefix: str) -> None:
    keys = AccountKeys(key_prefix, "default")
    for n in range(ACTIONS_KEPT + 30):
        await record_action(redis, keys, "alice", "pause", f"#{n}")

    assert await redis.llen(keys.actions) == ACTIONS_KEPT
    everything = await recent_actions(redis, keys, limit=1000)
    assert [a["detail"] for a in everything] == [f"#{n}" for n in range(129, 29, -1)]
    assert [a["detail"] for a in await recent_actions(redis, keys)] == [
        f"#{n}" for n in range(129, 109, -1)
    ]


async def test_what_is_written_is_bounded_and_valid_text(redis: Redis, key_prefix: str) -> None:
    keys = AccountKeys(key_prefix, "default")
    await record_action(redis, keys, "o" * 500, "pause", "\u00e9" * 1000 + "tail")
    # A reason typed with a byte that is not UTF-8 arrives as a lone surrogate.
    await record_action(redis, keys, "cli", "pause", "bad byte \udcff here")

    raw = await redis.lrange(keys.actions, 0, -1)
    assert all(len(item) < 2000 for item in raw)
    surrogate, long = await recent_actions(redis, keys)
    assert long["detail"] == "\u00e9" * DETAIL_MAX
    assert long["operator"] == "o" * OPERATOR_MAX
    assert surrogate["detail"] == "bad byte ? here"


async def test_pause_and_resume_say_who_and_what(redis: Redis, key_prefix: str) -> None:
    keys = AccountKeys(key_prefix, "default")
    await pause_account(redis, keys, "maintenance window")
    await resume_account(redis, keys, by="alice")
    await redis.set(keys.halted, "credentials refused")
    await pause_account(redis, keys, "", by="bob")
    assert await resume_account(redis, keys) is True
    assert await resume_account(redis, keys, by="carol") is False

    assert not await redis.exists(keys.paused, keys.halted)
    logged = [(a["operator"], a["action"], a["detail"]) for a in await recent_actions(redis, keys)]
    assert logged == [
        ("carol", "resume", "was neither paused nor halted"),
        ("cli", "resume", "paused: paused by an operator; halted: credentials refused"),
        ("bob", "pause", "paused by an operator"),
        ("alice", "resume", "paused: maintenance window"),
        ("cli", "pause", "maintenance window"),
    ]


JUNK: list[bytes | str] = [
    b"",
    b"not json",
    b"\xff\xfe\x00 not text",
    b"[1, 2, 3]",
    b'"just a string"',
    b"null",
    b'{"at_ms": true, "operator": "a", "action": "pause", "detail": ""}',
    b'{"at_ms": 1.5, "operator": "a", "action": "pause", "detail": ""}',
    b'{"at_ms": -1, "operator": "a", "action": "pause", "detail": ""}',
    b'{"at_ms": 1, "operator": 7, "action": "pause", "detail": ""}',
    b'{"at_ms": 1, "action": "pause", "detail": ""}',
    b'{"at_ms": 1, "operator": "a\\ud800", "action": "pause", "detail": ""}',
    b'{"at_ms": 1, "operator": "\xff", "action": "pause", "detail": ""}',
    b"[" * 100_000,
    b"[" * 3000,
    b'{"at_ms": NaN, "operator": "a", "action": "pause", "detail": ""}',
    b'{"at_ms": 1, "operator": "a", "action": "pause", "detail": "' + b"x" * 100_000 + b'"}',
]


async def test_junk_on_the_list_is_skipped_and_the_limit_still_filled(
    redis: Redis, key_prefix: str
) -> None:
    keys = AccountKeys(key_prefix, "default")
    for n in range(25):
        await record_action(redis, keys, "alice", "pause", f"#{n}")
    # Pushed after: more junk than one page of the default limit, newest of all.
    await redis.lpush(keys.actions, *JUNK, *JUNK)
    # Someone else's well-formed entry, with a field of their own, reads as ours.
    extra = {"at_ms": 5, "operator": "eve", "action": "x", "detail": "y", "more": [1]}
    await redis.lpush(keys.actions, json.dumps(extra))

    actions = await recent_actions(redis, keys)
    assert all(well_formed(a) for a in actions)
    assert actions[0] == {"at_ms": 5, "operator": "eve", "action": "x", "detail": "y"}
    assert [a["detail"] for a in actions[1:]] == [f"#{n}" for n in range(24, 5, -1)]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
_ACTION_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "at_ms": st.integers(min_value=-(2**70), max_value=2**70) | _JSON,
        "operator": st.text(max_size=80) | _JSON,
        "action": st.text(max_size=40) | _JSON,
        "detail": st.text(max_size=300) | _JSON,
    },
)
_PUSHED = (
    st.binary(max_size=300)
    | _JSON.map(lambda v: json.dumps(v).encode())
    | _ACTION_LIKE.map(lambda v: json.dumps(v).encode())
    | _ACTION_LIKE.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass"))
)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(pushed=st.lists(_PUSHED, max_size=30), limit=st.integers(min_value=0, max_value=40))
def test_nothing_pushed_onto_the_list_breaks_reading_it(
    redis_url: str, pushed: list[bytes], limit: int
) -> None:
    asyncio.run(_read_after_pushing(redis_url, pushed, limit))


async def _read_after_pushing(redis_url: str, pushed: list[bytes], limit: int) -> None:
    redis = redis_client(redis_url)
    keys = AccountKeys(f"al{next(_prefixes)}", "default")
    try:
        await record_action(redis, keys, "alice", "pause", "ours, oldest")
        if pushed:
            await redis.lpush(keys.actions, *pushed)
        await record_action(redis, keys, "bob", "resume", "ours, newest")

        actions = await recent_actions(redis, keys, limit)

        assert len(actions) <= limit
        assert all(well_formed(a) for a in actions)
        for action in actions:
            json.dumps(action, ensure_ascii=False).encode("utf-8")  # never a lone surrogate
        if limit:
            assert actions[0]["detail"] == "ours, newest"
        if limit >= len(pushed) + 2:
            assert actions[-1]["detail"] == "ours, oldest"
    finally:
        await redis.delete(keys.actions)
        await redis.aclose()
