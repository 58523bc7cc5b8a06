"""Script calls sharing round trips: each caller gets its own reply or its own
error, as if it had called alone, whatever else went in the same pipeline."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from worker.queue.batching import MAX_BATCH, BatchedScriptCalls, ScriptCalls, script_calls
from worker.store.connection import redis_client

ECHO = "return {KEYS[1], ARGV[1]}"
FAILS_ON_ZERO = "if ARGV[1] == '0' then return redis.error_reply('zero') end return ARGV[1]"


async def test_calls_made_together_share_a_pipeline_and_get_their_own_replies(
    redis: Redis, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = BatchedScriptCalls(redis)
    echo = redis.register_script(ECHO)
    pipelines: list[int] = []
    real = redis.pipeline

    def counted(*args: object, **kwargs: object) -> object:
        pipelines.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(redis, "pipeline", counted)
    replies = await asyncio.gather(
        *(calls.call(echo, [f"{key_prefix}:k{i}"], [str(i)]) for i in range(10))
    )
    assert replies == [[f"{key_prefix}:k{i}", str(i)] for i in range(10)]
    assert len(pipelines) == 1

    # A call that may wait gathers the calls made meanwhile; one that may not
    # takes the waiting ones with it at once.
    waiting = asyncio.ensure_future(calls.call(echo, ["a"], ["1"], within_s=30.0))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    assert await calls.call(echo, ["b"], ["2"]) == ["b", "2"]
    assert await asyncio.wait_for(waiting, 1) == ["a", "1"]
    assert len(pipelines) == 2


async def test_a_full_batch_goes_at_once(redis: Redis) -> None:
    calls = BatchedScriptCalls(redis)
    echo = redis.register_script(ECHO)
    replies = await asyncio.wait_for(
        asyncio.gather(*(calls.call(echo, ["k"], [i], within_s=30.0) for i in range(MAX_BATCH))),
        5,
    )
    assert replies == [["k", str(i)] for i in range(MAX_BATCH)]


async def test_an_error_reaches_only_its_own_caller(redis: Redis) -> None:
    calls = BatchedScriptCalls(redis)
    script = redis.register_script(FAILS_ON_ZERO)
    results = await asyncio.gather(
        *(calls.call(script, ["k"], [str(i)]) for i in range(4)), return_exceptions=True
    )
    assert isinstance(results[0], ResponseError) and "zero" in str(results[0])
    assert results[1:] == ["1", "2", "3"]


async def test_scripts_the_server_lost_are_loaded_again(redis: Redis) -> None:
    calls = BatchedScriptCalls(redis)
    echo = redis.register_script(ECHO)
    other = redis.register_script(FAILS_ON_ZERO)
    await redis.script_flush()
    replies = await asyncio.gather(
        calls.call(echo, ["k"], ["x"]),
        calls.call(other, ["k"], ["7"]),
        calls.call(echo, ["j"], [1]),
    )
    assert replies == [["k", "x"], "7", ["j", "1"]]


async def test_a_lost_connection_reaches_every_caller() -> None:
    # Nothing listens there: the client's retries end, and each caller hears it.
    redis = redis_client("redis://127.0.0.1:9/0?socket_connect_timeout=0.2")
    try:
        calls = BatchedScriptCalls(redis)
        echo = redis.register_script(ECHO)
        results = await asyncio.wait_for(
            asyncio.gather(
                *(calls.call(echo, ["k"], [i]) for i in range(3)), return_exceptions=True
            ),
            60,
        )
    finally:
        await redis.aclose()
    assert all(isinstance(r, RedisConnectionError) for r in results)


async def test_a_caller_that_gives_up_leaves_the_others_their_replies(redis: Redis) -> None:
    calls = BatchedScriptCalls(redis)
    echo = redis.register_script(ECHO)
    impatient = asyncio.ensure_future(calls.call(echo, ["a"], ["1"], within_s=0.05))
    patient = asyncio.ensure_future(calls.call(echo, ["b"], ["2"], within_s=0.05))
    await asyncio.sleep(0)
    impatient.cancel()
    assert await asyncio.wait_for(patient, 1) == ["b", "2"]
    assert impatient.cancelled()


def test_each_call_goes_alone_unless_the_client_can_pipeline_them(redis: Redis) -> None:
    assert isinstance(script_calls(redis), BatchedScriptCalls)
    assert type(ScriptCalls()) is ScriptCalls
