"""The ops side of the HTTP server: liveness, readiness and Prometheus metrics.

``/healthz`` and ``/readyz`` never ask for a key: orchestrators probe them.
``/metrics`` (and ``/openapi.json``, see http_api) say how much work is
queued, for which accounts, and whether they are paused or halted, never a
job, a number or a secret; they are open unless ``OZP_OPS_KEY`` is set, and
then answer only to that bearer key. The server binds to loopback unless
told otherwise (``run --http``).

Refused keys are logged one line per period with the count held back, so a
client retrying a wrong key cannot flood the log.

``/metrics`` on a worker is that process's own series (``worker.metrics.process``),
safe to sum across replicas; on the ``exporter`` it is the account-wide
series read from Redis (``worker.metrics.accounts``), served once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from worker.config.settings import Settings
from worker.logs import WarningSampler, get_logger

log = get_logger(__name__)

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
OPS_KEY_DIGEST = web.AppKey("ops_key_digest", bytes)
UNAUTHORIZED_LOG = web.AppKey("unauthorized_log", WarningSampler)
# What /metrics answers: a worker's own series, or the exporter's account-wide ones.
MetricsSource = Callable[[], Awaitable[bytes]]
METRICS: web.AppKey[MetricsSource] = web.AppKey("metrics")

# At most one http.unauthorized line per this many seconds, per server.
UNAUTHORIZED_LOG_PERIOD_S = 10.0

# A readiness probe must answer within the orchestrator's probe timeout
# (1 s by default on Kubernetes), whatever the client's own retries would do.
READY_TIMEOUT_S = 0.8
# The text format prometheus_client writes, as every Prometheus 2 reads it.
EXPOSITION_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def healthz(request: web.Request) -> web.Response:
    """Alive: the event loop answers. Says nothing about Redis, on purpose, so
    that an orchestrator does not restart healthy workers during a Redis outage."""
    return web.json_response({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    """Ready when Redis answers a PING in time."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await request.app[REDIS].ping()
    except (RedisError, OSError, TimeoutError):
        return web.json_response({"ok": False, "error": "Redis does not answer"}, status=503)
    return web.json_response({"ok": True})


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "replace")).digest()


def presented_key_digest(request: web.Request) -> bytes | None:
    """The digest of the request's bearer key, or None when it shows none."""
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return None
    return key_digest(presented.strip())


def unauthorized(request: web.Request) -> web.HTTPUnauthorized:
    """The 401 to raise, logged once per period with how many were held back."""
    held = request.app[UNAUTHORIZED_LOG].admit(asyncio.get_running_loop().time())
    if held is not None:
        log.warning("http.unauthorized", path=request.path, remote=request.remote,
                    also_since_last=held)  # fmt: skip
    return web.HTTPUnauthorized(
        reason="missing or wrong bearer key",
        headers={"WWW-Authenticate": 'Bearer realm="ozonetel-purge"'},
    )


def require_ops_key(request: web.Request) -> None:
    """401 unless OZP_OPS_KEY is unset or the request shows it."""
    expected = request.app[OPS_KEY_DIGEST]
    if not expected:
        return
    presented = presented_key_digest(request)
    if presented is None or not hmac.compare_digest(presented, expected):
        raise unauthorized(request)


async def metrics(request: web.Request) -> web.Response:
    require_ops_key(request)
    body = await request.app[METRICS]()
    return web.Response(body=body, headers={"Content-Type": EXPOSITION_TYPE})


def add_ops_routes(app: web.Application, settings: Settings, metrics_source: MetricsSource) -> None:
    """/healthz, /readyz, and /metrics answered by ``metrics_source``."""
    app[METRICS] = metrics_source
    ops_key = settings.ops_key.reveal()
    app[OPS_KEY_DIGEST] = key_digest(ops_key) if ops_key else b""
    app[UNAUTHORIZED_LOG] = WarningSampler(UNAUTHORIZED_LOG_PERIOD_S)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
