"""The HTTP server: ingestion (``/v1/deletions``) beside the ops endpoints.

    POST /v1/deletions       queue one job or a batch (bearer key)     202
    GET  /v1/deletions/{id}  how a job ended, if it has (bearer key)   200
    GET  /openapi.json       the OpenAPI document of all of this
    GET  /healthz, /readyz, /metrics                                   (http_ops)

Every refusal is JSON ``{"error": ...}``, with ``errors: [{index, reason}]``
for refused items. The order of the checks on a POST is deliberate: the key
(401) before anything else, the declared size (413) before reading a byte,
the producer's rate (429) before any work, and validation of every item
(422) before anything is queued, so a refused request leaves no trace.

Producer keys are compared as SHA-256 digests with ``hmac.compare_digest``,
against every configured key without stopping at a match, so the time taken
tells nothing about which key, or how much of one, was right. Keys are never
logged or echoed; a refusal logs the client's address only.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiolimiter import AsyncLimiter
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker.config import DEFAULT_HTTP_BIND, Settings
from worker.errors import BadInput
from worker.http_openapi import openapi_document
from worker.http_ops import REDIS, SETTINGS, add_ops_routes
from worker.jobs import Job
from worker.logs import get_logger
from worker.producer import Producer, Receipt, job_from_item, repeated_id_reason

log = get_logger(__name__)

PRODUCERS = web.AppKey("producers", dict[str, Producer])
KEY_DIGESTS = web.AppKey("key_digests", tuple[tuple[str, bytes], ...])
LIMITERS = web.AppKey("limiters", dict[str, AsyncLimiter])
OPENAPI = web.AppKey("openapi", dict[str, Any])

# Fields a batch may set for all of its items.
BATCH_DEFAULTS = ("account", "urgent")
# How long runner.cleanup() lets requests in flight finish at shutdown: an
# enqueue is a few Redis round trips, so a short grace loses nothing.
SHUTDOWN_GRACE_S = 5.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Refused(Exception):
    """A request we answer with a JSON error; raised from anywhere in a handler."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"error": message}
        if errors is not None:
            self.body["errors"] = errors
        self.headers = headers or {}


@dataclass(frozen=True)
class Planned:
    """One validated item: the job and where it goes."""

    account: str
    urgent: bool
    job: Job


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal as JSON: ours, aiohttp's own (404, 405, 413), and a lost Redis."""
    try:
        return await handler(request)
    except Refused as refusal:
        return web.json_response(refusal.body, status=refusal.status, headers=refusal.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kept = {k: v for k, v in exc.headers.items() if k not in ("Content-Type", "Content-Length")}
        return web.json_response({"error": exc.reason}, status=exc.status, headers=kept)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        log.warning("http.redis_unavailable", path=request.path, error=exc)
        return web.json_response(
            {"error": "Redis cannot be reached; try again"},
            status=503,
            headers={"Retry-After": "1"},
        )


def authenticate(request: web.Request) -> str:
    """The producer's name for the request's bearer key; 401 when there is none."""
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    found: str | None = None
    if scheme.lower() == "bearer" and presented.strip():
        digest = hashlib.sha256(presented.strip().encode("utf-8", "replace")).digest()
        for name, expected in request.app[KEY_DIGESTS]:
            # No early exit: every key is compared on every request.
            if hmac.compare_digest(digest, expected):
                found = name
    if found is None:
        log.warning("http.unauthorized", path=request.path, remote=request.remote)
        raise Refused(
            401,
            "missing or wrong bearer key",
            headers={"WWW-Authenticate": 'Bearer realm="ozonetel-purge"'},
        )
    return found


def new_limiter(rate_per_s: float) -> AsyncLimiter:
    # AsyncLimiter refuses an amount above max_rate, so below one request per
    # second the bucket holds one request and drains over 1/rate seconds.
    return AsyncLimiter(rate_per_s, 1) if rate_per_s >= 1 else AsyncLimiter(1, 1 / rate_per_s)


async def throttle(request: web.Request, producer: str) -> None:
    """Take one request from the producer's allowance; 429 when it has none."""
    limiters = request.app[LIMITERS]
    limiter = limiters.get(producer)
    if limiter is None:
        # Made on first use, inside the server's loop, which the limiter binds to.
        limiter = limiters[producer] = new_limiter(request.app[SETTINGS].producer_rate_per_s)
    if not limiter.has_capacity():
        retry_after = max(1, math.ceil(limiter.time_period / limiter.max_rate))
        raise Refused(
            429, "too many requests for this key", headers={"Retry-After": str(retry_after)}
        )
    # With capacity there, acquire() takes it without suspending: nothing else
    # runs between the check above and the take.
    await limiter.acquire()


def plan_item(item: Any, defaults: dict[str, Any], settings: Settings) -> Planned:
    """One item of a request as a job and its destination; BadInput says why not."""
    if not isinstance(item, dict):
        raise BadInput("an item must be a JSON object")
    fields = {**defaults, **item}
    account = fields.pop("account", settings.account().name)
    urgent = fields.pop("urgent", False)
    if "job_id" in fields:
        raise BadInput("unknown field 'job_id' (the job id is 'id')")
    check_destination(account, urgent, settings)
    return Planned(account, urgent, job_from_item(fields))


def check_destination(account: Any, urgent: Any, settings: Settings) -> None:
    if not isinstance(account, str) or account not in settings.accounts:
        raise BadInput("unknown account")
    if not isinstance(urgent, bool):
        raise BadInput("urgent must be true or false")


def plan_body(body: Any, settings: Settings) -> list[Planned]:
    """Validate every item of a request; 422 with each refused item's reason."""
    if not isinstance(body, dict):
        raise Refused(422, "the body must be a JSON object")
    defaults: dict[str, Any] = {}
    items: Any = [body]
    if "items" in body:
        unknown = sorted(set(body) - {"items", *BATCH_DEFAULTS})
        if unknown:
            raise Refused(422, f"unknown field {unknown[0]!r} beside 'items'")
        items = body["items"]
        if not isinstance(items, list) or not items:
            raise Refused(422, "items must be a non-empty list")
        defaults = {key: body[key] for key in BATCH_DEFAULTS if key in body}
        try:
            # Checked even when every item sets its own: a wrong default is a
            # caller's mistake worth hearing about.
            account = defaults.get("account", settings.account().name)
            check_destination(account, defaults.get("urgent", False), settings)
        except BadInput as exc:
            raise Refused(422, f"batch: {exc}") from None
    planned: list[Planned] = []
    errors: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        try:
            plan = plan_item(item, defaults, settings)
        except BadInput as exc:
            errors.append({"index": index, "reason": str(exc)})
            continue
        if plan.job.id in seen:
            # Two jobs under one id would share one terminal record.
            errors.append(
                {"index": index, "reason": repeated_id_reason(plan.job.id, seen[plan.job.id])}
            )
            continue
        seen[plan.job.id] = index
        planned.append(plan)
    if errors:
        raise Refused(
            422, f"{len(errors)} of {len(items)} items refused; nothing was queued", errors=errors
        )
    return planned


def refuse_declared_size(request: web.Request, limit: int) -> None:
    """413 on the declared length, before a byte of the body is read."""
    if request.content_length is not None and request.content_length > limit:
        raise Refused(413, f"the body is larger than {limit} bytes")


async def read_json(request: web.Request, limit: int) -> Any:
    # A body that declared no length (chunked) is cut off at client_max_size
    # while it is read.
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise Refused(413, f"the body is larger than {limit} bytes") from None
    try:
        return json.loads(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both are
        raise Refused(400, "the body is not JSON") from None


async def post_deletions(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    producer = authenticate(request)
    refuse_declared_size(request, settings.http_max_body_bytes)
    await throttle(request, producer)
    planned = plan_body(await read_json(request, settings.http_max_body_bytes), settings)
    # One pipelined enqueue per (account, lane); receipts go back in item order.
    groups: dict[tuple[str, bool], list[int]] = {}
    for index, plan in enumerate(planned):
        groups.setdefault((plan.account, plan.urgent), []).append(index)
    receipts: dict[int, Receipt] = {}
    for (account, urgent), indexes in groups.items():
        jobs = [planned[i].job for i in indexes]
        got = await request.app[PRODUCERS][account].enqueue_jobs(jobs, urgent=urgent)
        receipts.update(zip(indexes, got, strict=True))
    ordered = [receipts[i] for i in range(len(planned))]
    log.info(
        "http.enqueued",
        producer=producer,
        jobs=len(ordered),
        duplicates=sum(r.duplicate for r in ordered),
    )
    jobs_out = [{"id": r.job_id, "duplicate": r.duplicate} for r in ordered]
    return web.json_response({"jobs": jobs_out}, status=202)


async def get_deletion(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    await throttle(request, authenticate(request))
    account = request.query.get("account", settings.account().name)
    if account not in settings.accounts:
        raise Refused(422, "unknown account")
    try:
        status = await request.app[PRODUCERS][account].status(request.match_info["id"])
    except BadInput as exc:
        raise Refused(422, str(exc)) from None
    return web.json_response(status.to_dict())


async def get_openapi(request: web.Request) -> web.Response:
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
    app[KEY_DIGESTS] = tuple(
        (name, hashlib.sha256(key.reveal().encode()).digest())
        for name, key in settings.producer_keys.items()
    )
    app[LIMITERS] = {}
    app[OPENAPI] = openapi_document(settings)
    app.router.add_post("/v1/deletions", post_deletions)
    app.router.add_get("/v1/deletions/{id}", get_deletion)
    app.router.add_get("/openapi.json", get_openapi)
    add_ops_routes(app)
    return app


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) as a host and a port; BadInput if not.

    A bare port binds to loopback, the host of ``DEFAULT_HTTP_BIND``: listening
    on other interfaces is something to ask for by name (``0.0.0.0:8080``).
    """
    if text.isdigit():
        text = f"{DEFAULT_HTTP_BIND.rpartition(':')[0]}:{text}"
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise BadInput(f"--http: expected HOST:PORT such as {DEFAULT_HTTP_BIND}, got {text!r}")
    return host, int(port)


async def serve_http(
    settings: Settings, redis: Redis, host: str, port: int, stopping: asyncio.Event
) -> None:
    """Serve on ``host:port`` until ``stopping`` is set, then let requests in
    flight finish (for up to SHUTDOWN_GRACE_S) and close the listener.

    Raises :class:`BadInput` at once when it cannot listen there (the port is
    taken, the address is not this host's).
    """
    if not settings.producer_keys:
        log.warning("http.no_producer_keys", effect="POST /v1/deletions answers 401")
    # No access log: its lines are unstructured, and request paths carry job ids
    # that belong in the structured log lines the handlers write.
    runner = web.AppRunner(
        create_http_app(settings, redis), access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S
    )
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            raise BadInput(f"cannot serve HTTP on {host}:{port}: {exc.strerror or exc}") from None
        log.info("http.listening", host=host, port=port)
        await stopping.wait()
    finally:
        await runner.cleanup()
        log.info("http.stopped")
