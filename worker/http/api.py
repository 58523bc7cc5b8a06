"""The HTTP server: ingestion (``/v1/deletions``) beside the ops endpoints.

    POST /v1/deletions       queue one job or a batch (bearer key)     202 (409)
    GET  /v1/deletions/{id}  how a job ended, if it has (bearer key)   200
    GET  /openapi.json       the OpenAPI document of all of this       (ops key, if set)
    GET  /healthz, /readyz, /metrics                                   (http_ops)
    /console, /console/api/...  the operator console   (worker.console, operator keys)

Every answer is JSON, ``{"error": ...}`` for a refusal, with ``errors:
[{index, reason}]`` for refused items; no traceback or exception text ever
reaches a client. The order of the checks on a POST is deliberate: the key
(401) before anything else, the declared size (413) before reading a byte,
the producer's request rate (429) before any work, the number of items (413)
and the producer's item rate (429) before validating them, and validation of
every item (422) before anything is queued, so a refused request leaves no
trace. A request whose items include an id already claimed by another
producer or number answers 409: those items were not queued, the others were.

Producer keys are compared as SHA-256 digests with ``hmac.compare_digest``,
against every configured key without stopping at a match, so the time taken
tells nothing about which key, or how much of one, was right. Keys are never
logged or echoed, and are registered with the log's redaction besides.

A key is bound to its accounts (``Settings.producer_may_use``). An account it
may not use answers exactly as an account that does not exist (422), and a
job another producer queued reads as never seen: a key learns nothing of
what it may not touch.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker.config.settings import DEFAULT_HTTP_BIND, HTTP_KEEPALIVE_S, Settings
from worker.console.app import add_console_routes
from worker.errors import BadInput
from worker.http.limits import ConnectionGuard, GuardedHandler, TokenBucket
from worker.http.openapi import openapi_document
from worker.http.ops import (
    REDIS,
    SETTINGS,
    add_ops_routes,
    key_digest,
    presented_key_digest,
    require_ops_key,
    unauthorized,
)
from worker.http.requests import (
    Refused,
    default_account,
    items_of,
    plan_items,
    read_json,
    refuse_declared_size,
)
from worker.logs import WarningSampler, get_logger, register_secret
from worker.metrics.process import exposition
from worker.queue.producer import Producer, Receipt

log = get_logger(__name__)

PRODUCERS = web.AppKey("producers", dict[str, Producer])
KEY_DIGESTS = web.AppKey("key_digests", tuple[tuple[str, bytes], ...])
REQUEST_BUCKETS = web.AppKey("request_buckets", dict[str, TokenBucket])
ITEM_BUCKETS = web.AppKey("item_buckets", dict[str, TokenBucket])
OPENAPI = web.AppKey("openapi", dict[str, Any])
GUARD = web.AppKey("guard", ConnectionGuard)
REDIS_ERROR_LOG = web.AppKey("redis_error_log", WarningSampler)

# How long runner.cleanup() lets requests in flight finish at shutdown: an
# enqueue is a few Redis round trips, so a short grace loses nothing.
SHUTDOWN_GRACE_S = 5.0
# Seconds a client is asked to wait after a Redis failure: a lost connection
# usually comes back within a second; a full or misconfigured Redis does not.
RETRY_AFTER_REDIS_LOST = "1"
RETRY_AFTER_REDIS_ERROR = "5"
REDIS_ERROR_LOG_PERIOD_S = 10.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer as JSON: ours, aiohttp's own (404, 405, 413), a Redis
    failure (503), and anything unexpected (500, its text in the log only)."""
    guard = request.app.get(GUARD)
    if guard is not None:
        guard.request_started(request.protocol)
    try:
        return await handler(request)
    except Refused as refusal:
        return web.json_response(refusal.body, status=refusal.status, headers=refusal.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kept = {k: v for k, v in exc.headers.items() if k not in ("Content-Type", "Content-Length")}
        return web.json_response({"error": exc.reason}, status=exc.status, headers=kept)
    except RedisError as exc:
        return redis_failed(request, exc)
    except Exception:  # the last line of defence: logged with its traceback, answered 500
        log.exception("http.internal_error", path=request.path, method=request.method)
        return web.json_response({"error": "internal error"}, status=500)
    finally:
        if guard is not None:
            guard.request_finished(request.protocol)


def redis_failed(request: web.Request, exc: RedisError) -> web.Response:
    """503 with Retry-After for any Redis error: lost, full (OOM), moved, refused."""
    lost = isinstance(exc, RedisConnectionError | RedisTimeoutError)
    held = request.app[REDIS_ERROR_LOG].admit(asyncio.get_running_loop().time())
    if held is not None:
        # The class and the (redacted) message: Redis's replies name commands
        # and keys, never our keys' values or the client's password.
        log.warning("http.redis_error", path=request.path, error=exc, also_since_last=held)
    message = "Redis cannot be reached; try again" if lost else "Redis refused; try again later"
    retry_after = RETRY_AFTER_REDIS_LOST if lost else RETRY_AFTER_REDIS_ERROR
    return web.json_response({"error": message}, status=503, headers={"Retry-After": retry_after})


def authenticate(request: web.Request) -> str:
    """The producer's name for the request's bearer key; 401 when there is none."""
    presented = presented_key_digest(request)
    found: str | None = None
    if presented is not None:
        for name, expected in request.app[KEY_DIGESTS]:
            # No early exit: every key is compared on every request.
            if hmac.compare_digest(presented, expected):
                found = name
    if found is None:
        raise unauthorized(request)
    return found


def take_allowance(request: web.Request, producer: str, items: int = 0) -> None:
    """Take one request (or ``items`` items) from the producer's allowance;
    429 with Retry-After when it is short, and nothing taken."""
    settings = request.app[SETTINGS]
    if items:
        buckets, rate, amount, what = (
            request.app[ITEM_BUCKETS], settings.producer_items_per_s, items, "items")  # fmt: skip
    else:
        buckets, rate, amount, what = (
            request.app[REQUEST_BUCKETS], settings.producer_rate_per_s, 1, "requests")  # fmt: skip
    now = asyncio.get_running_loop().time()
    bucket = buckets.get(producer)
    if bucket is None:
        # A bucket holds one second of allowance, and never less than one
        # request's worth, so that any single acceptable request can pass.
        capacity = max(rate, float(settings.http_max_items if items else 1))
        # Made on first use, on the server's loop clock; one per configured key.
        bucket = buckets[producer] = TokenBucket(rate, capacity, now)
    wait_s = bucket.take(amount, now)
    if wait_s > 0:
        retry_after = max(1, math.ceil(min(wait_s, 3600.0)))
        raise Refused(
            429, f"too many {what} for this key", headers={"Retry-After": str(retry_after)}
        )


async def post_deletions(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    producer = authenticate(request)
    refuse_declared_size(request, settings.http_max_body_bytes)
    take_allowance(request, producer)
    items, defaults = items_of(await read_json(request, settings), settings, producer)
    if len(items) > settings.http_max_items:
        raise Refused(413, f"more than {settings.http_max_items} items in one request")
    take_allowance(request, producer, items=len(items))
    planned = await plan_items(items, defaults, settings, producer)
    # One pipelined enqueue per (account, lane); receipts go back in item order.
    groups: dict[tuple[str, bool], list[int]] = {}
    for index, plan in enumerate(planned):
        groups.setdefault((plan.account, plan.urgent), []).append(index)
    receipts: dict[int, Receipt] = {}
    for (account, urgent), indexes in groups.items():
        jobs = [planned[i].job for i in indexes]
        got = await request.app[PRODUCERS][account].enqueue_jobs(
            jobs, urgent=urgent, owner=producer
        )
        receipts.update(zip(indexes, got, strict=True))
    ordered = [receipts[i] for i in range(len(planned))]
    conflicts = [r.job_id for r in ordered if r.conflict]
    log.info(
        "http.enqueued",
        producer=producer,
        jobs=len(ordered),
        duplicates=sum(r.duplicate for r in ordered),
        conflicts=len(conflicts),
    )
    body: dict[str, Any] = {
        "jobs": [
            {"id": r.job_id, "duplicate": r.duplicate, "conflict": r.conflict} for r in ordered
        ]
    }
    if conflicts:
        shown = ", ".join(repr(job_id) for job_id in conflicts[:10])
        more = f" and {len(conflicts) - 10} more" if len(conflicts) > 10 else ""
        body["error"] = (
            f"job ids already taken by another producer or number, not queued: {shown}{more}; "
            "the other items were queued"
        )
        return web.json_response(body, status=409)
    return web.json_response(body, status=202)


async def get_deletion(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    producer = authenticate(request)
    take_allowance(request, producer)
    account = request.query.get("account", default_account(settings, producer))
    if not settings.producer_may_use(producer, account):
        raise Refused(422, "unknown account")
    try:
        status = await request.app[PRODUCERS][account].status(
            request.match_info["id"], owner=producer
        )
    except BadInput as exc:
        raise Refused(422, str(exc)) from None
    return web.json_response(status.to_dict())


async def get_openapi(request: web.Request) -> web.Response:
    require_ops_key(request)
    return web.json_response(request.app[OPENAPI])


def create_http_app(settings: Settings, redis: Redis) -> web.Application:
    """The server's application. It borrows ``redis`` and closes nothing: the
    caller owns the client, as ``run`` does for the worker pool beside it."""
    # client_max_size cuts off a body that declared no length (chunked) as it
    # is read; a declared length is refused before reading (read_json).
    app = web.Application(middlewares=[json_errors], client_max_size=settings.http_max_body_bytes)
    app[SETTINGS] = settings
    app[REDIS] = redis
    app[PRODUCERS] = {
        name: Producer(redis, account=name, key_prefix=settings.key_prefix)
        for name in settings.accounts
    }
    for key in (*settings.producer_keys.values(), settings.ops_key):
        # Should a careless line, or a library's, ever quote one: redacted.
        register_secret(key.reveal())
    app[KEY_DIGESTS] = tuple(
        (name, key_digest(key.reveal())) for name, key in settings.producer_keys.items()
    )
    app[REQUEST_BUCKETS] = {}
    app[ITEM_BUCKETS] = {}
    app[GUARD] = ConnectionGuard(settings.http_max_connections, settings.http_header_timeout_s)
    app[REDIS_ERROR_LOG] = WarningSampler(REDIS_ERROR_LOG_PERIOD_S)
    app[OPENAPI] = openapi_document(settings)
    app.router.add_post("/v1/deletions", post_deletions)
    app.router.add_get("/v1/deletions/{id}", get_deletion)
    app.router.add_get("/openapi.json", get_openapi)
    add_ops_routes(app, settings, own_metrics)
    # The operator console beside the API (off, and saying so, without operator keys).
    add_console_routes(app, settings, redis)
    return app


async def own_metrics() -> bytes:
    """A worker's /metrics: this process's series only (see worker.metrics)."""
    return exposition()


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) as a host and a port; BadInput if not.

    A bare port binds to loopback, the host of ``DEFAULT_HTTP_BIND``: listening
    on other interfaces is something to ask for by name (``0.0.0.0:8080``).
    """
    # ASCII digits only: str.isdigit() takes "²", which int() refuses.
    if text.isascii() and text.isdigit():
        text = f"{DEFAULT_HTTP_BIND.rpartition(':')[0]}:{text}"
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise BadInput(f"--http: expected HOST:PORT such as {DEFAULT_HTTP_BIND}, got {text!r}")
    return host, int(port)


AppFactory = Callable[[Settings, Redis], web.Application]


async def serve_http(
    settings: Settings,
    redis: Redis,
    host: str,
    port: int,
    stopping: asyncio.Event,
    make_app: AppFactory | None = None,
) -> None:
    """Serve on ``host:port`` until ``stopping`` is set, then let requests in
    flight finish (for up to SHUTDOWN_GRACE_S) and close the listener.

    Raises :class:`BadInput` at once when it cannot listen there (the port is
    taken, the address is not this host's).
    """
    async with listening(settings, redis, host, port, make_app):
        await stopping.wait()


@dataclass(frozen=True)
class Listening:
    """A server that is listening: its app, and the port it got (for port 0)."""

    app: web.Application
    port: int


@contextlib.asynccontextmanager
async def listening(
    settings: Settings, redis: Redis, host: str, port: int, make_app: AppFactory | None = None
) -> AsyncIterator[Listening]:
    """The server, listening on ``host:port`` while the block runs: the
    worker's (``create_http_app``) unless ``make_app`` says otherwise."""
    if make_app is None:
        if not settings.producer_keys:
            log.warning("http.no_producer_keys", effect="POST /v1/deletions answers 401")
        make_app = create_http_app
    app = make_app(settings, redis)
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_GRACE_S)
    await runner.setup()
    server = runner.server
    assert server is not None  # setup() made it
    loop = asyncio.get_running_loop()

    def connection() -> GuardedHandler:
        # Our own protocol factory instead of a TCPSite, so that every
        # connection is counted by the guard and aiohttp's own refusals are
        # JSON. No access log: its lines are unstructured, and request paths
        # carry job ids that belong in the structured lines the handlers write.
        return GuardedHandler(server, app[GUARD], loop=loop,
                              keepalive_timeout=HTTP_KEEPALIVE_S, access_log=None)  # fmt: skip

    listener: asyncio.Server | None = None
    try:
        try:
            listener = await loop.create_server(connection, host, port)
        except OSError as exc:
            raise BadInput(f"cannot serve HTTP on {host}:{port}: {exc.strerror or exc}") from None
        bound = int(listener.sockets[0].getsockname()[1])
        log.info("http.listening", host=host, port=bound)
        yield Listening(app, bound)
    finally:
        if listener is not None:
            listener.close()  # no new connections; those open finish below
        await runner.cleanup()
        if listener is not None:
            await listener.wait_closed()
        log.info("http.stopped")
