"""The ops side of the HTTP server: liveness, readiness and Prometheus metrics.

``/healthz`` and ``/readyz`` never ask for a key: orchestrators probe them.
``/metrics`` (and ``/openapi.json``, see http_api) say how much work is
queued, for which accounts, and whether they are paused or halted, never a
job, a number or a secret; they are open unless ``OZP_OPS_KEY`` is set, and
then answer only to that bearer key. The server binds to loopback unless
told otherwise (``run --http``).

Refused keys are logged one line per period with the count held back, so a
client retrying a wrong key cannot flood the log.

Metrics are read from Redis at scrape time, so every replica reports the
same, cluster-wide numbers: scrape one replica (or take ``max`` across
them), do not sum them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from worker.config.settings import Settings
from worker.logs import WarningSampler, get_logger
from worker.queue.lanes import Queue
from worker.store.keys import LANES, AccountKeys, accounts_key

log = get_logger(__name__)

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
OPS_KEY_DIGEST = web.AppKey("ops_key_digest", bytes)
UNAUTHORIZED_LOG = web.AppKey("unauthorized_log", WarningSampler)

# At most one http.unauthorized line per this many seconds, per server.
UNAUTHORIZED_LOG_PERIOD_S = 10.0

# A readiness probe must answer within the orchestrator's probe timeout
# (1 s by default on Kubernetes), whatever the client's own retries would do.
READY_TIMEOUT_S = 0.8
TOKEN_GENERATIONS_PERIOD_MS = 3_600_000
OUTCOMES = ("deleted", "already_deleted", "dead")
EXPOSITION_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# name -> (type, help): the metric families, in the order they are exposed.
FAMILIES: dict[str, tuple[str, str]] = {
    "ozp_queue_jobs": ("gauge", "Jobs waiting in a lane, not yet fetched by a worker."),
    "ozp_in_flight_jobs": ("gauge", "Jobs fetched by a worker and not yet settled."),
    "ozp_delayed_jobs": ("gauge", "Retries waiting for their time, not yet on the retry lane."),
    "ozp_outcomes_total": ("counter", "Jobs finished, by terminal outcome."),
    "ozp_account_halted": ("gauge", "1 while the account is halted by a credential error."),
    "ozp_account_paused": ("gauge", "1 while an operator has paused the account."),
    "ozp_token_generations_last_hour": (
        "gauge",
        "Tokens generated in the last hour (the vendor allows 10).",
    ),
}
Sample = tuple[dict[str, str], int]


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
    text = await metrics_text(request.app[REDIS], request.app[SETTINGS])
    return web.Response(body=text.encode(), headers={"Content-Type": EXPOSITION_TYPE})


async def metrics_text(redis: Redis, settings: Settings) -> str:
    """Every account's gauges and counters in the Prometheus text format."""
    seen = await redis.smembers(accounts_key(settings.key_prefix))
    # Configured accounts, then those only Redis knows (queued by another host).
    names = [*settings.accounts, *sorted(str(n) for n in seen if n not in settings.accounts)]
    seconds, micros = await redis.time()
    # The token store stamps generations with the server's clock: count by it too.
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    samples: dict[str, list[Sample]] = {name: [] for name in FAMILIES}
    for name in names:
        keys = AccountKeys(settings.key_prefix, name)
        counts = await Queue(redis, keys).counts()
        async with redis.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.stats, list(OUTCOMES))
            pipe.exists(keys.halted)
            pipe.exists(keys.paused)
            pipe.zcount(keys.token_generations, now_ms - TOKEN_GENERATIONS_PERIOD_MS, now_ms)
            outcomes, halted, paused, generations = await pipe.execute()
        account = {"account": name}
        waiting = {"urgent": counts.urgent, "retry": counts.retry, "bulk": counts.bulk}
        for lane in LANES:
            samples["ozp_queue_jobs"].append(({**account, "lane": lane}, waiting[lane]))
        samples["ozp_in_flight_jobs"].append((account, counts.in_flight))
        samples["ozp_delayed_jobs"].append((account, counts.scheduled))
        for outcome, value in zip(OUTCOMES, outcomes, strict=True):
            samples["ozp_outcomes_total"].append(({**account, "outcome": outcome}, int(value or 0)))
        samples["ozp_account_halted"].append((account, int(bool(halted))))
        samples["ozp_account_paused"].append((account, int(bool(paused))))
        samples["ozp_token_generations_last_hour"].append((account, int(generations)))
    return exposition(samples)


def exposition(samples: dict[str, list[Sample]]) -> str:
    lines: list[str] = []
    for family, (kind, help_text) in FAMILIES.items():
        lines += [f"# HELP {family} {help_text}", f"# TYPE {family} {kind}"]
        for labels, value in samples.get(family, []):
            rendered = ",".join(f'{key}="{_label_value(text)}"' for key, text in labels.items())
            lines.append(f"{family}{{{rendered}}} {value}")
    return "\n".join(lines) + "\n"


def _label_value(text: str) -> str:
    # The three escapes the text format defines; account names read from
    # Redis were written by other hosts and are not trusted to be tidy.
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def add_ops_routes(app: web.Application, settings: Settings) -> None:
    ops_key = settings.ops_key.reveal()
    app[OPS_KEY_DIGEST] = key_digest(ops_key) if ops_key else b""
    app[UNAUTHORIZED_LOG] = WarningSampler(UNAUTHORIZED_LOG_PERIOD_S)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
