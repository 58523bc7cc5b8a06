"""The ``exporter`` command's server: the account-wide series, nothing else.

It serves ``/metrics`` (``worker.metrics.accounts``), ``/healthz`` and
``/readyz`` behind the same limits and ops key as a worker's server, and no
ingestion API: it only reads Redis. Run exactly one per Redis.
"""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis

from worker.config.settings import Settings
from worker.http.api import GUARD, json_errors
from worker.http.limits import ConnectionGuard
from worker.http.ops import REDIS, SETTINGS, add_ops_routes
from worker.logs import register_secret
from worker.metrics import accounts


def create_exporter_app(settings: Settings, redis: Redis) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=1024)
    app[SETTINGS] = settings
    app[REDIS] = redis
    app[GUARD] = ConnectionGuard(settings.http_max_connections, settings.http_header_timeout_s)
    register_secret(settings.ops_key.reveal())

    async def account_metrics() -> bytes:
        return await accounts.exposition(redis, settings)

    add_ops_routes(app, settings, account_metrics)
    return app
