"""The HTTP server under abuse, over real HTTP on loopback against our own
redis-server: hostile bodies, Redis failures, slow and idle connections,
floods of items, keys reaching for accounts and jobs not theirs."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from tests.conftest import TIME_SCALE, Simulator, eventually, make_settings
from worker.config.settings import AccountSettings, Secret, Settings
from worker.http.api import GUARD, PRODUCERS, Listening, listening
from worker.http.requests import plan_items
from worker.logs import configure_logging
from worker.pool.workers import run_pool
from worker.store.connection import redis_client
from worker.store.embedded import EmbeddedRedis
from worker.store.keys import AccountKeys

KEYS = {"crm": "crm-key-0123456789abcdef", "batch": "batch-key-0123456789abcdef"}
OPS_KEY = "ops-key-0123456789abcdef"
CAMPAIGN = "spring_sale"
Serve = Callable[..., Awaitable[Listening]]


def bearer(producer: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[producer]}"}


def settings_for(redis_url: str, key_prefix: str, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "producer_keys": {name: Secret(key) for name, key in KEYS.items()},
        "producer_rate_per_s": 1000.0,
    }
    values.update(changes)
    return make_settings(redis_url, key_prefix, values)


@pytest.fixture
async def serve(redis: Redis) -> AsyncIterator[Serve]:
    """Start the real server (serve_http's own listener) on a free loopback port."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(settings: Settings, client: Redis | None = None) -> Listening:
            return await stack.enter_async_context(
                listening(settings, client or redis, "127.0.0.1", 0)
            )

        yield start


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def url(server: Listening, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


async def lanes(redis: Redis, key_prefix: str, account: str = "default") -> tuple[int, int]:
    keys = AccountKeys(key_prefix, account)
    return int(await redis.xlen(keys.urgent)), int(await redis.xlen(keys.bulk))


async def post(
    session: aiohttp.ClientSession, server: Listening, body: Any, producer: str = "crm"
) -> tuple[int, dict[str, Any], dict[str, str]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with session.post(url(server, "/v1/deletions"), data=data,
                            headers=bearer(producer)) as response:  # fmt: skip
        assert response.content_type == "application/json"
        return response.status, await response.json(), dict(response.headers)


def items(count: int, start: int = 0) -> list[dict[str, str]]:
    return [{"campaign": CAMPAIGN, "phone": f"98{start + i:08d}"} for i in range(count)]


async def test_deeply_nested_json_is_a_400_not_a_crash(
    serve: Serve, session: aiohttp.ClientSession, redis: Redis, redis_url: str, key_prefix: str
) -> None:
    server = await serve(settings_for(redis_url, key_prefix))
    for body in (b"[" * 100_000, b'{"items": ' + b"[" * 100_000, b'{"a":' * 50_000):
        status, answer, _ = await post(session, server, body)
        assert status == 400 and answer == {"error": "the body is nested too deeply"}
    assert await lanes(redis, key_prefix) == (0, 0)


class Exploding:
    """A producer whose enqueue fails with an exception nobody expected."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    async def enqueue_jobs(self, *args: Any, **kwargs: Any) -> Any:
        raise self.exc


async def test_an_unexpected_exception_is_a_json_500_without_its_text(
    serve: Serve, session: aiohttp.ClientSession, redis_url: str, key_prefix: str
) -> None:
    server = await serve(settings_for(redis_url, key_prefix))
    secret_detail = "internal detail 9845012345 /srv/secret/path"
    server.app[PRODUCERS]["default"] = Exploding(RuntimeError(secret_detail))  # type: ignore[assignment]
    with capture_logs() as logs:
        async with session.post(url(server, "/v1/deletions"), json=items(1)[0],
                                headers=bearer("crm")) as response:  # fmt: skip
            text = await response.text()
    assert response.status == 500 and response.content_type == "application/json"
    assert json.loads(text) == {"error": "internal error"}
    assert "Traceback" not in text and "RuntimeError" not in text
    assert [entry["event"] for entry in logs] == ["http.internal_error"]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A redis-server of this test's own, to fill up or lock down."""
    with EmbeddedRedis(tmp_path, persist=False) as server:
        yield server


async def test_every_kind_of_redis_error_is_a_503_with_retry_after(
    serve: Serve,
    session: aiohttp.ClientSession,
    redis: Redis,
    redis_url: str,
    key_prefix: str,
    private_redis: EmbeddedRedis,
) -> None:
    # ResponseError: the lane is not a stream.
    wrong_type = await serve(settings_for(redis_url, key_prefix))
    await redis.set(AccountKeys(key_prefix, "default").bulk, "not a stream")
    # OutOfMemoryError: a Redis with no room and no eviction.
    async with redis_client(private_redis.url) as full_client:
        await full_client.config_set("maxmemory-policy", "noeviction")
        await full_client.config_set("maxmemory", "1")
        full = await serve(settings_for(private_redis.url, key_prefix), full_client)
        # NoPermissionError: a user that may only PING.
        await full_client.config_set("maxmemory", "0")
        await full_client.acl_setuser("pinger", enabled=True, passwords=["+pinger-password-1"],
                                      keys=["*"], categories=["-@all"],
                                      commands=["+ping", "+hello", "+auth", "+client",
                                                "+info"])  # fmt: skip
        await full_client.config_set("maxmemory", "1")
        host, port = private_redis.url.rsplit("@", 1)[-1].split("/")[0].split(":")
        locked_url = f"redis://pinger:pinger-password-1@{host}:{port}/0"
        async with redis_client(locked_url) as locked_client:
            locked = await serve(settings_for(locked_url, key_prefix), locked_client)
            with capture_logs() as logs:
                answers = [await post(session, s, items(1)[0]) for s in (wrong_type, full, locked)]
            await full_client.config_set("maxmemory", "0")
    for status, answer, headers in answers:
        assert status == 503, answer
        assert int(headers["Retry-After"]) >= 1 and "Redis" in answer["error"]
    assert {entry["event"] for entry in logs} == {"http.redis_error"}
    assert "pinger-password-1" not in repr(logs)


async def test_the_connection_cap_evicts_slow_connections_and_health_still_answers(
    serve: Serve, session: aiohttp.ClientSession, redis_url: str, key_prefix: str
) -> None:
    cap, slow_count = 20, 50
    server = await serve(settings_for(redis_url, key_prefix, http_max_connections=cap,
                                      http_header_timeout_s=600.0))  # fmt: skip
    guard = server.app[GUARD]
    slow: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for _ in range(slow_count):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and never the rest
        await writer.drain()
        slow.append((reader, writer))
    closed = [asyncio.create_task(reader.read()) for reader, _ in slow]
    try:
        await eventually(_count_done(closed, slow_count - cap), timeout_s=20)
        assert guard.counts.accepted == slow_count and guard.counts.evicted == slow_count - cap
        # The oldest went first: the last `cap` are the ones still open.
        assert all(task.done() for task in closed[: slow_count - cap])
        assert not any(task.done() for task in closed[slow_count - cap :])
        async with session.get(url(server, "/healthz")) as response:
            assert response.status == 200 and await response.json() == {"ok": True}
        assert guard.counts.peak == cap and guard.counts.refused == 0
        assert guard.open_connections <= cap
    finally:
        for task in closed:
            task.cancel()
        for _, writer in slow:
            writer.close()


def _count_done(tasks: list[asyncio.Task[bytes]], expected: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return sum(task.done() for task in tasks) >= expected

    return check


async def test_connections_that_never_finish_their_headers_are_closed(
    serve: Serve, session: aiohttp.ClientSession, redis_url: str, key_prefix: str
) -> None:
    server = await serve(settings_for(redis_url, key_prefix, http_header_timeout_s=0.2))
    guard = server.app[GUARD]
    slow = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(10)]
    for _, writer in slow:
        writer.write(b"POST /v1/deletions HTTP/1.1\r\nHost: x\r\n")
    # A prompt client is not affected, before or after the deadline.
    async with session.get(url(server, "/healthz")) as response:
        assert response.status == 200
    endings = await asyncio.wait_for(
        asyncio.gather(*(reader.read() for reader, _ in slow), return_exceptions=True), 20
    )
    assert all(ending in (b"",) or isinstance(ending, ConnectionError) for ending in endings)
    assert guard.counts.timed_out == 10
    async with session.get(url(server, "/healthz")) as response:
        assert response.status == 200
    for _, writer in slow:
        writer.close()


async def test_when_every_slot_is_inside_a_request_a_newcomer_gets_a_json_503(
    serve: Serve, redis_url: str, key_prefix: str
) -> None:
    server = await serve(settings_for(redis_url, key_prefix, http_max_connections=3))
    guard = server.app[GUARD]
    busy = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(3)]
    for _, writer in busy:
        # Headers in full, then a body that never comes: inside a request.
        writer.write(b"POST /v1/deletions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                     b"Authorization: Bearer " + KEYS["crm"].encode() + b"\r\n\r\n{")  # fmt: skip

    async def all_busy() -> bool:
        return guard.busy_connections == 3

    await eventually(all_busy, timeout_s=10)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    answer = await asyncio.wait_for(reader.read(), 10)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in head
    assert json.loads(body) == {"error": "too many connections; try again"}
    assert guard.counts.refused == 1 and guard.counts.evicted == 0
    for _, other in [*busy, (reader, writer)]:
        other.close()


async def test_items_are_limited_per_second_and_per_request(
    serve: Serve, session: aiohttp.ClientSession, redis: Redis, redis_url: str, key_prefix: str
) -> None:
    server = await serve(settings_for(redis_url, key_prefix, producer_items_per_s=10.0,
                                      http_max_items=100))  # fmt: skip
    too_many = await post(session, server, {"items": items(101)})
    assert too_many[0] == 413 and "more than 100 items" in too_many[1]["error"]
    assert (await post(session, server, {"items": items(100)}))[0] == 202
    status, answer, headers = await post(session, server, {"items": items(50, start=100)})
    assert status == 429 and "too many items" in answer["error"]
    # 50 items at 10 a second: about 5 seconds, never less than the real need.
    assert 4 <= int(headers["Retry-After"]) <= 6
    # The other producer has an allowance of its own.
    assert (await post(session, server, {"items": items(100, start=200)}, "batch"))[0] == 202
    assert await lanes(redis, key_prefix) == (0, 200)


async def test_validation_yields_to_the_event_loop_between_slices() -> None:
    settings = load_default_settings()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    planned = await plan_items(items(1000), {}, settings, "crm")
    task.cancel()
    assert len(planned) == 1000
    # Ten slices of 100: the loop ran other work between each pair.
    assert ticks - before >= 9


def load_default_settings() -> Settings:
    return make_settings("redis://unused", "t", {"producer_keys": {"crm": Secret(KEYS["crm"])}})


async def test_a_key_reaches_only_its_accounts_and_its_own_jobs(
    serve: Serve,
    session: aiohttp.ClientSession,
    redis: Redis,
    redis_url: str,
    key_prefix: str,
    simulator_factory: Any,
) -> None:
    sim: Simulator = await simulator_factory(
        campaigns={CAMPAIGN: {"9845000001"}}, time_scale=TIME_SCALE
    )
    settings = make_settings(redis_url, key_prefix, base_url=sim.url)
    settings = settings.with_overrides(
        accounts={**settings.accounts, "other": AccountSettings(name="other")},
        producer_keys={name: Secret(key) for name, key in KEYS.items()},
        producer_accounts={"crm": ("default",), "batch": ("*",)},
        producer_rate_per_s=1000.0,
    )
    server = await serve(settings)
    refused = await post(session, server, {**items(1)[0], "account": "other"})
    assert refused[0] == 422 and refused[1]["errors"][0]["reason"] == "unknown account"
    batch_refused = await post(session, server, {"items": items(1), "account": "other"})
    assert batch_refused[0] == 422 and batch_refused[1]["error"] == "batch: unknown account"
    assert await lanes(redis, key_prefix, "other") == (0, 0)

    # crm's job goes to crm's only account without naming it, and finishes.
    job = {"campaign": CAMPAIGN, "phone": "9845000001", "id": "crm-7"}
    assert (await post(session, server, job))[0] == 202
    await asyncio.wait_for(
        run_pool(settings, redis, asyncio.Event(), until_empty=True, accounts=["default"]), 60
    )

    async def status(producer: str, job_id: str, account: str = "") -> tuple[int, Any]:
        query = f"?account={account}" if account else ""
        async with session.get(url(server, f"/v1/deletions/{job_id}{query}"),
                               headers=bearer(producer)) as response:  # fmt: skip
            return response.status, await response.json()

    own = await status("crm", "crm-7")
    assert own[0] == 200 and own[1]["state"] == "finished"
    # Another key asking for it sees exactly what it sees of an id nobody used.
    probe, never = await status("batch", "crm-7"), await status("batch", "never-1")
    assert probe[0] == never[0] == 200 and probe[1]["state"] == "unknown"
    assert {**probe[1], "job_id": "x"} == {**never[1], "job_id": "x"}
    # An account the key may not use answers as one that does not exist.
    assert await status("crm", "crm-7", "other") == await status("crm", "crm-7", "nowhere")
    assert (await status("crm", "crm-7", "other"))[0] == 422


async def test_an_id_claimed_by_another_producer_or_number_is_a_409_and_the_rest_is_queued(
    serve: Serve, session: aiohttp.ClientSession, redis: Redis, redis_url: str, key_prefix: str
) -> None:
    server = await serve(settings_for(redis_url, key_prefix))
    first = {"campaign": CAMPAIGN, "phone": "9845000001", "id": "shared-1"}
    assert (await post(session, server, first))[0] == 202
    other_number = {"campaign": CAMPAIGN, "phone": "9845000002", "id": "shared-1"}
    for n, (producer, clashing) in enumerate((("batch", first), ("crm", other_number))):
        fresh = {"campaign": CAMPAIGN, "phone": f"984500001{n}", "id": f"fresh-{n}"}
        status, answer, _ = await post(session, server, {"items": [clashing, fresh]}, producer)
        assert status == 409
        assert answer["jobs"][0] == {"id": "shared-1", "duplicate": False, "conflict": True}
        assert answer["jobs"][1]["conflict"] is False
        assert "'shared-1'" in answer["error"] and "other items were queued" in answer["error"]
    assert await lanes(redis, key_prefix) == (0, 3)


async def test_ops_endpoints_ask_for_the_ops_key_when_one_is_set(
    serve: Serve, session: aiohttp.ClientSession, redis_url: str, key_prefix: str
) -> None:
    server = await serve(settings_for(redis_url, key_prefix, ops_key=Secret(OPS_KEY)))
    ops = {"Authorization": f"Bearer {OPS_KEY}"}
    with capture_logs() as logs:
        for path in ("/metrics", "/openapi.json"):
            for headers in ({}, bearer("crm"), {"Authorization": f"Bearer {OPS_KEY}x"}):
                async with session.get(url(server, path), headers=headers) as refused:
                    assert refused.status == 401
                    assert (await refused.json())["error"] == "missing or wrong bearer key"
            async with session.get(url(server, path), headers=ops) as allowed:
                assert allowed.status == 200
        for path in ("/healthz", "/readyz"):
            async with session.get(url(server, path)) as probe:
                assert probe.status == 200
        # The ops key is not a producer key.
        assert (await post_with(session, server, ops))[0] == 401
        for _ in range(50):
            await post_with(session, server, {"Authorization": "Bearer wrong-key-0123456789"})
    # 57 refusals, one line: the first; the rest are counted in the next period.
    assert [entry["event"] for entry in logs] == ["http.unauthorized"]
    assert OPS_KEY not in repr(logs)


async def post_with(
    session: aiohttp.ClientSession, server: Listening, headers: dict[str, str]
) -> tuple[int, Any]:
    async with session.post(url(server, "/v1/deletions"), json=items(1)[0],
                            headers=headers) as response:  # fmt: skip
        return response.status, await response.json()


async def test_an_oversized_header_with_a_key_never_reaches_the_log_or_the_answer(
    serve: Serve, redis_url: str, key_prefix: str, capfd: pytest.CaptureFixture[str]
) -> None:
    log_stream = io.StringIO()
    configure_logging(level="debug", json=True, stream=log_stream)
    try:
        server = await serve(settings_for(redis_url, key_prefix))
        answers = []
        for header in (
            f"Authorization: Bearer {KEYS['crm']}{'x' * 10_000}",
            f"Authorization: Bearer {'y' * 60}{KEYS['batch']}{'x' * 10_000}",
            f"X-Note: Bearer {KEYS['crm']} {'z' * 10_000}",
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(f"GET /v1/deletions/x HTTP/1.1\r\nHost: x\r\n{header}\r\n\r\n".encode())
            answers.append(await asyncio.wait_for(reader.read(), 10))
            writer.close()
    finally:
        configure_logging(level="warning", json=True)
    output = log_stream.getvalue() + "".join(capfd.readouterr())
    for answer in answers:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.") and b" 400 " in head.split(b"\r\n")[0]
        assert json.loads(body) == {"error": "Bad Request"}
        assert not any(key.encode() in answer for key in KEYS.values())
    assert "http.malformed_request" in output
    assert not any(key in output for key in KEYS.values())
    assert not any(key[:12] in output for key in KEYS.values())
