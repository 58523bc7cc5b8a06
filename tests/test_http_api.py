"""The HTTP server over real HTTP on loopback, against our own redis-server;
the worker pool and the simulator finish jobs where an outcome is needed."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import hypothesis
import pytest
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate
from redis.asyncio import Redis
from structlog.testing import capture_logs

from tests.conftest import TIME_SCALE, Simulator, make_settings
from worker.config.settings import AccountSettings, Secret, Settings
from worker.errors import BadInput
from worker.http.api import create_http_app, parse_bind, serve_http
from worker.http.limits import TokenBucket
from worker.pool.workers import run_pool
from worker.store.connection import redis_client
from worker.store.keys import AccountKeys

KEYS = {"crm": "crm-key-0123456789abcdef", "batch": "batch-key-0123456789abcdef"}
CRM = {"Authorization": f"Bearer {KEYS['crm']}"}
CAMPAIGN = "spring_sale"
DELETABLE = ["9845000001", "9845000002", "9845000003"]
SIMULATED = {"campaigns": {CAMPAIGN: set(DELETABLE)}, "time_scale": TIME_SCALE}
Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


def api_settings(
    redis_url: str, key_prefix: str, base_url: str = "http://127.0.0.1:9", **changes: Any
) -> Settings:
    global_changes: dict[str, Any] = {
        "producer_keys": {name: Secret(key) for name, key in KEYS.items()},
        "producer_accounts": {name: ("*",) for name in KEYS},
        "producer_rate_per_s": 1000.0,
    }
    global_changes.update(changes)
    return make_settings(redis_url, key_prefix, global_changes, base_url=base_url)


@pytest.fixture
async def make_client(redis: Redis) -> AsyncIterator[MakeClient]:
    clients: list[Client] = []

    async def make(settings: Settings, client: Redis | None = None) -> Client:
        app = create_http_app(settings, client or redis)
        test_client: Client = TestClient(TestServer(app, host="127.0.0.1"))
        await test_client.start_server()
        clients.append(test_client)
        return test_client

    yield make
    for test_client in clients:
        await test_client.close()


@pytest.fixture
async def api(make_client: MakeClient, redis_url: str, key_prefix: str) -> Client:
    return await make_client(api_settings(redis_url, key_prefix))


async def lanes(redis: Redis, key_prefix: str, account: str = "default") -> tuple[int, int]:
    keys = AccountKeys(key_prefix, account)
    return int(await redis.xlen(keys.urgent)), int(await redis.xlen(keys.bulk))


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-key-at-all-000"}, {"Authorization": "Bearer "},
     {"Authorization": f"Basic {KEYS['crm']}"}, {"Authorization": f"Bearer {KEYS['crm']}x"}],
)  # fmt: skip
async def test_a_missing_or_wrong_key_is_refused_without_a_trace(
    api: Client, redis: Redis, key_prefix: str, headers: dict[str, str]
) -> None:
    with capture_logs() as logs:
        posted = await api.post("/v1/deletions", json={"campaign": CAMPAIGN, "phone": "9845012345"},
                                headers=headers)  # fmt: skip
        got = await api.get("/v1/deletions/some-id", headers=headers)
    for response in (posted, got):
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await response.json()) == {"error": "missing or wrong bearer key"}
    assert await lanes(redis, key_prefix) == (0, 0)
    # One line stands for a period's refusals: a retrying client cannot flood the log.
    assert [entry["event"] for entry in logs] == ["http.unauthorized"]
    assert logs[0]["also_since_last"] == 0
    assert all(key not in repr(logs) for key in KEYS.values())


async def test_an_oversized_body_is_refused_declared_or_chunked(
    make_client: MakeClient, redis: Redis, redis_url: str, key_prefix: str
) -> None:
    client = await make_client(api_settings(redis_url, key_prefix, http_max_body_bytes=1000))
    items = [{"campaign": CAMPAIGN, "phone": f"98450{i:05d}"} for i in range(40)]
    declared = await client.post("/v1/deletions", json={"items": items}, headers=CRM)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"items": ['
        for i in range(40):
            yield b'{"campaign": "spring_sale", "phone": "98450%05d"},' % i
        yield b'{"campaign": "spring_sale", "phone": "9845099999"}]}'

    chunked = await client.post("/v1/deletions", data=chunks(), headers=CRM)
    fits = await client.post("/v1/deletions", json={"items": items[:5]}, headers=CRM)

    assert declared.status == 413 and chunked.status == 413
    assert "larger than 1000 bytes" in (await declared.json())["error"]
    assert "larger than 1000 bytes" in (await chunked.json())["error"]
    assert fits.status == 202 and await lanes(redis, key_prefix) == (0, 5)


async def test_bad_items_are_named_and_nothing_of_the_request_is_queued(
    api: Client, redis: Redis, key_prefix: str
) -> None:
    items: list[Any] = [
        {"campaign": CAMPAIGN, "phone": "9845000001"},
        {"campaign": CAMPAIGN, "phone": "12"},
        {"campaign": CAMPAIGN, "phone": 9845000003},
        {"campaign": CAMPAIGN, "phone": "9845000004", "account": "nobody"},
        {"campaign": CAMPAIGN, "phone": "9845000005", "id": "x1"},
        {"campaign": CAMPAIGN, "phone": "9845000006", "id": "x1"},
        {"campaign": CAMPAIGN, "phone": "9845000007", "urgent": "yes"},
        "not an object",
    ]
    response = await api.post("/v1/deletions", json={"items": items, "urgent": True}, headers=CRM)

    assert response.status == 422
    body = await response.json()
    reasons = {error["index"]: error["reason"] for error in body["errors"]}
    assert sorted(reasons) == [1, 2, 3, 5, 6, 7]
    assert "phone number must be" in reasons[1] and "must be a string" in reasons[2]
    assert reasons[3] == "unknown account" and "repeats item 4" in reasons[5]
    assert "urgent" in reasons[6] and "object" in reasons[7]
    assert "nothing was queued" in body["error"]
    assert await lanes(redis, key_prefix) == (0, 0)
    assert await redis.scard(AccountKeys(key_prefix, "default").pending) == 0


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"{not json", 400), (b"\xff\xfe", 400), (b"[1, 2]", 422), (b'{"items": []}', 422),
     (b'{"items": [{"campaign": "c", "phone": "9845012345"}], "extra": 1}', 422),
     (b'{"campaign": "c", "phone": "9845012345", "job_id": "a"}', 422),
     (b'{"items": [{"campaign": "c", "phone": "9845012345", "account": "default"}],'
      b' "account": "nobody"}', 422),
     (b'{"campaign": "c", "phone": "9845012345", "account": null}', 422)],
)  # fmt: skip
async def test_malformed_bodies_are_refused(
    api: Client, redis: Redis, key_prefix: str, body: bytes, status: int
) -> None:
    response = await api.post("/v1/deletions", data=body, headers=CRM)
    assert response.status == status
    assert isinstance((await response.json())["error"], str)
    assert await lanes(redis, key_prefix) == (0, 0)


async def test_each_producer_is_throttled_on_its_own_and_a_throttled_request_queues_nothing(
    make_client: MakeClient, redis: Redis, redis_url: str, key_prefix: str
) -> None:
    client = await make_client(api_settings(redis_url, key_prefix, producer_rate_per_s=2.0))
    jobs = [{"campaign": CAMPAIGN, "phone": f"984500000{i}"} for i in range(3)]
    responses = [await client.post("/v1/deletions", json=job, headers=CRM) for job in jobs]
    throttled = responses[-1]
    other = await client.post("/v1/deletions", json={"campaign": CAMPAIGN, "phone": "9845000009"},
                              headers={"Authorization": f"Bearer {KEYS['batch']}"})  # fmt: skip

    assert [response.status for response in responses] == [202, 202, 429]
    assert throttled.headers["Retry-After"] == "1"
    assert "too many" in (await throttled.json())["error"]
    assert other.status == 202
    assert await lanes(redis, key_prefix) == (0, 3)


def test_a_token_bucket_refills_at_its_rate_and_says_how_long_to_wait() -> None:
    bucket = TokenBucket(0.5, 1, now=100.0)  # below one per second: holds one
    assert bucket.take(1, 100.0) == 0.0
    assert bucket.take(1, 100.0) == 2.0 and bucket.take(1, 101.0) == 1.0
    assert bucket.take(1, 102.0) == 0.0
    items = TokenBucket(1000.0, 1000.0, now=0.0)
    assert items.take(1000, 0.0) == 0.0 and items.take(500, 0.25) == 0.25
    assert items.take(250, 0.25) == 0.0 and items.take(1001, 99.0) == float("inf")


async def test_a_batch_goes_to_its_accounts_and_lanes_in_order(
    make_client: MakeClient, redis: Redis, redis_url: str, key_prefix: str
) -> None:
    settings = api_settings(redis_url, key_prefix)
    other = AccountSettings(name="other")
    settings = settings.with_overrides(accounts={**settings.accounts, "other": other})
    client = await make_client(settings)
    items = [
        {"campaign": CAMPAIGN, "phone": "9845000001", "id": "a"},
        {"campaign": CAMPAIGN, "phone": "9845000002", "urgent": False},
        {"campaign": CAMPAIGN, "phone": "9845000003", "account": "other", "id": "c"},
        {"campaign": CAMPAIGN, "phone": "9845000001"},
    ]
    response = await client.post("/v1/deletions", json={"items": items, "urgent": True},
                                 headers=CRM)  # fmt: skip

    assert response.status == 202
    jobs = (await response.json())["jobs"]
    assert [job["duplicate"] for job in jobs] == [False, False, False, True]
    assert jobs[0]["id"] == "a" and jobs[2]["id"] == "c"
    assert await lanes(redis, key_prefix) == (1, 1)
    assert await lanes(redis, key_prefix, "other") == (1, 0)
    [(_, fields)] = await redis.xrange(AccountKeys(key_prefix, "default").bulk)
    assert fields["id"] == jobs[1]["id"]


async def test_post_then_follow_the_job_to_its_outcome(
    make_client: MakeClient, redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> None:
    sim: Simulator = await simulator_factory(**SIMULATED)
    settings = api_settings(redis_url, key_prefix, base_url=sim.url)
    client = await make_client(settings)
    job = {"campaign": CAMPAIGN, "phone": DELETABLE[0], "id": "crm-42"}

    posted = await client.post("/v1/deletions", json=job, headers=CRM)
    assert posted.status == 202
    assert await posted.json() == {"jobs": [{"id": "crm-42", "duplicate": False,
                                             "conflict": False}]}  # fmt: skip
    queued = await client.get("/v1/deletions/crm-42", headers=CRM)
    assert (await queued.json())["state"] == "unknown"

    await asyncio.wait_for(run_pool(settings, redis, asyncio.Event(), until_empty=True), 60)
    finished = await client.get("/v1/deletions/crm-42", headers=CRM)
    again = await client.post("/v1/deletions", json=job, headers=CRM)

    status = await finished.json()
    assert finished.status == 200
    picked = [status[k] for k in ("job_id", "account", "state", "outcome", "attempts")]
    assert picked == ["crm-42", "default", "finished", "deleted", 1]
    assert status["message"] == "Deleted Successfully" and status["reason"] is None
    assert await again.json() == {"jobs": [{"id": "crm-42", "duplicate": True,
                                            "conflict": False}]}  # fmt: skip
    assert await lanes(redis, key_prefix) == (0, 0)
    bad = await client.get("/v1/deletions/crm-42?account=nobody", headers=CRM)
    assert bad.status == 422


async def test_ops_endpoints_answer_without_a_key_and_readiness_follows_redis(
    api: Client, make_client: MakeClient, key_prefix: str
) -> None:
    async with redis_client(f"redis://127.0.0.1:{closed_port()}/0") as down:
        stranded = await make_client(api_settings("redis://unused", key_prefix), down)
        assert (await api.get("/healthz")).status == 200
        assert await (await api.get("/readyz")).json() == {"ok": True}
        assert (await stranded.get("/healthz")).status == 200
        not_ready = await stranded.get("/readyz")
        assert not_ready.status == 503 and (await not_ready.json())["ok"] is False
        job = {"campaign": "c", "phone": "98450123"}
        lost = await stranded.post("/v1/deletions", json=job, headers=CRM)
        assert lost.status == 503 and "Redis" in (await lost.json())["error"]
        # A worker's /metrics is its own process's series: no Redis needed.
        own = await stranded.get("/metrics")
        assert own.status == 200 and "ozp_requests_total" in await own.text()
    missing = await api.get("/nowhere")
    assert missing.status == 404 and (await missing.json())["error"] == "Not Found"


async def test_the_openapi_document_is_valid_and_covers_every_route(api: Client) -> None:
    response = await api.get("/openapi.json")
    document = await response.json()
    validate(document)
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in api.app.router.routes()
        if route.resource is not None
        and route.method != "HEAD"
        # The operator console is pages for people, documented in the README.
        and not route.resource.canonical.startswith("/console")
    }
    documented = {(m, path) for path, ops in document["paths"].items() for m in ops}
    assert documented | {("get", "/openapi.json")} == routes


async def test_serve_http_binds_where_told_and_serves_until_the_stopping_event(
    redis: Redis, redis_url: str, key_prefix: str
) -> None:
    assert parse_bind("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_bind("[::1]:9000") == ("::1", 9000) and parse_bind("81") == ("127.0.0.1", 81)
    for bad in ("host:", ":80", "host:99999", "host:http", "8080x", "²", "host:٨٠"):
        with pytest.raises(BadInput, match="HOST:PORT"):
            parse_bind(bad)
    port = closed_port()
    stopping = asyncio.Event()
    settings = make_settings(redis_url, key_prefix)  # no producer key: POST is closed
    serving = asyncio.create_task(serve_http(settings, redis, "127.0.0.1", port, stopping))
    url = f"http://127.0.0.1:{port}/healthz"
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            try:
                async with session.get(url) as response:
                    assert await response.json() == {"ok": True}
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.02)
        else:
            raise AssertionError("the server never answered")
        deletions = url.replace("healthz", "v1/deletions")
        async with session.post(deletions, json={}, headers=CRM) as refused:
            assert refused.status == 401
        # A second server cannot take the port, and says so at once.
        with pytest.raises(BadInput, match=f"cannot serve HTTP on 127.0.0.1:{port}"):
            await asyncio.wait_for(serve_http(settings, redis, "127.0.0.1", port, stopping), 10)
        stopping.set()
        await asyncio.wait_for(serving, 10)
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.get(url):
                pass


@pytest.fixture
def live_url(redis_url: str, key_prefix: str) -> Iterator[str]:
    """The server on its own loop in a thread: schemathesis calls it synchronously."""
    port, loop, stopping = closed_port(), asyncio.new_event_loop(), asyncio.Event()
    settings = api_settings(redis_url, key_prefix)

    async def serve() -> None:
        async with redis_client(redis_url) as client:
            await serve_http(settings, client, "127.0.0.1", port, stopping)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    for _ in range(250):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
            break
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    loop.call_soon_threadsafe(stopping.set)
    thread.join(10)
    loop.close()


def has_no_repeated_ids(case: Any) -> bool:
    items = case.body.get("items") if isinstance(case.body, dict) else None
    ids = [item["id"] for item in items or [] if isinstance(item, dict) and "id" in item]
    return len(ids) == len(set(ids))


def test_generated_requests_get_documented_answers(live_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{live_url}/openapi.json")
    checked = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        # Unique ids within a batch is the one rule JSON Schema cannot state
        # (uniqueItems compares whole items); the server refuses a repeat (422).
        @hypothesis.given(case=operation.as_strategy().filter(has_no_repeated_ids))
        @hypothesis.settings(max_examples=25, deadline=None, database=None, derandomize=True,
                             suppress_health_check=list(hypothesis.HealthCheck))  # fmt: skip
        def conforms(case: Any) -> None:
            case.call_and_validate(base_url=live_url, headers=CRM)

        conforms()
        checked += 1
    assert checked == 5


async def test_a_record_with_numbers_past_every_range_reads_as_json_not_a_500(
    api: Client, redis: Redis, key_prefix: str
) -> None:
    """A results entry written by hand (or by an old version) with an
    ``enqueued_at`` no datetime can hold: the status still answers."""
    keys = AccountKeys(key_prefix, "default")
    result_id = await redis.xadd(
        keys.results,
        {"job_id": "crm-big", "outcome": "deleted", "attempts": "1e999",
         "enqueued_at": "99999999999999999999", "finished_at": "-5"},
    )  # fmt: skip
    await redis.hset(
        keys.job("crm-big"), mapping={"outcome": "deleted", "result_id": result_id, "owner": "crm"}
    )
    got = await api.get("/v1/deletions/crm-big", headers=CRM)
    assert got.status == 200, await got.text()
    body = await got.json()
    assert (body["outcome"], body["attempts"], body["finished_at"]) == ("deleted", 0, None)
