"""``run``, ``pause`` and ``resume``: the worker pool and its switches."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from worker.accounts import control
from worker.accounts.control import AccountExit
from worker.cli.app import (
    EXIT_HALTED,
    EXIT_OK,
    AccountOption,
    account_keys,
    connected,
    err,
    execute,
    out,
    stop_on_signals,
)
from worker.cli.safe_text import visible
from worker.config.settings import DEFAULT_HTTP_BIND, Settings
from worker.errors import BadInput
from worker.store.connection import redis_client, wait_until_reachable


def run(
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1, help="Requests in flight per account in this process (OZP_CONCURRENCY)."
        ),
    ] = None,
    until_empty: Annotated[
        bool, typer.Option(help="Stop once every account has nothing queued, delayed or in flight.")
    ] = False,
    account: Annotated[
        list[str] | None,
        typer.Option("--account", "-a", help="Work only this account (repeatable). Default: all."),
    ] = None,
    http: Annotated[
        str | None,
        typer.Option(
            metavar="HOST:PORT",
            help="Also serve /healthz, /readyz, /metrics and the ingestion API "
            f"(/v1/deletions, keys in OZP_PRODUCER_KEYS), e.g. {DEFAULT_HTTP_BIND}; "
            "a bare port listens on loopback only.",
        ),
    ] = None,
) -> None:
    """Run the worker pool: send the queued deletions at the allowed rate until stopped.

    Safe to run on many hosts at once: the rate limit, the token and the queues
    are shared through Redis. SIGTERM or Ctrl-C stops fetching, lets requests in
    flight finish, and leaves anything unfinished for another worker. Exits 4 if
    an account was halted by a credential error (its backlog stays queued).
    Started while Redis is down, it waits for Redis (logging redis.waiting),
    serving /healthz meanwhile and /readyz once Redis answers; a refused
    password or an untrusted certificate still exits 3 at once.
    """

    async def work(settings: Settings) -> int:
        if concurrency is not None:
            settings = settings.with_overrides(concurrency=concurrency)
        # Imported here: loading aiohttp costs every other command a quarter second.
        from worker.http.api import parse_bind, serve_http
        from worker.pool.workers import run_pool

        bind = parse_bind(http) if http is not None else None
        stopping = stop_on_signals()
        url = settings.redis_url_or_default
        redis = redis_client(url, settings.redis_mode)
        try:
            server: asyncio.Task[None] | None = None
            if bind is not None:
                # Serving before Redis answers: /healthz says the process is
                # alive (no restart loop) and /readyz that Redis is not there yet.
                server = asyncio.create_task(serve_http(settings, redis, *bind, stopping))
                # A server that cannot listen stops the pool too, gracefully.
                server.add_done_callback(lambda _: stopping.set())
            try:
                if not await wait_until_reachable(redis, url, stopping):
                    return EXIT_OK  # stopped before Redis came
                exits = await run_pool(
                    settings, redis, stopping, until_empty=until_empty, accounts=account or None
                )
            finally:
                # --until-empty ends the pool by itself; the server ends with it.
                stopping.set()
                if server is not None:
                    await server  # re-raises a failure to listen: BadInput, exit 2
        finally:
            await redis.aclose()
        halted = sorted(name for name, why in exits.items() if why is AccountExit.HALTED)
        if halted:
            err.print(
                f"halted: {visible(', '.join(halted))}; see `ozonetel-purge status`, fix the "
                "credentials, then `ozonetel-purge resume`",
                markup=False,
            )
            return EXIT_HALTED
        return EXIT_OK

    execute(work)


def pause(
    account: AccountOption = None,
    reason: Annotated[str, typer.Option(help="Shown in `status`.")] = "paused by an operator",
) -> None:
    """Stop sending for an account, on every worker, until `resume`. Jobs stay queued."""

    async def work(settings: Settings) -> int:
        keys = account_keys(settings, account)
        async with connected(settings) as redis:
            await control.pause_account(redis, keys, reason)
        out.print(f"paused {visible(keys.account)}: {visible(reason)}", markup=False)
        return EXIT_OK

    execute(work)


def resume(account: AccountOption = None) -> None:
    """Restart sending for an account: clears a pause and a credential halt."""

    async def work(settings: Settings) -> int:
        keys = account_keys(settings, account)
        async with connected(settings) as redis:
            cleared = await control.resume_account(redis, keys)
        message = "resumed" if cleared else "was not paused or halted"
        out.print(f"{visible(keys.account)}: {message}", markup=False)
        return EXIT_OK

    execute(work)


DEFAULT_EXPORTER_BIND = "9108"


def exporter(
    http: Annotated[
        str,
        typer.Option(
            metavar="HOST:PORT",
            help="Where to serve /metrics, /healthz and /readyz, e.g. 0.0.0.0:9108; "
            "a bare port listens on loopback only.",
        ),
    ] = DEFAULT_EXPORTER_BIND,
) -> None:
    """Serve the account-wide metrics read from Redis: backlog, dead letters, token, workers.

    Run exactly one per Redis (the workers serve only their own series, so
    sums across every target stay true). While Redis cannot be read, /metrics
    still answers, with ozp_redis_up 0, and /readyz answers 503.
    """

    async def work(settings: Settings) -> int:
        from worker.http.api import parse_bind, serve_http
        from worker.metrics.exporter import create_exporter_app

        host, port = parse_bind(http)
        stopping = stop_on_signals()
        redis = redis_client(settings.redis_url_or_default, settings.redis_mode)
        try:
            await serve_http(settings, redis, host, port, stopping, create_exporter_app)
        finally:
            await redis.aclose()
        return EXIT_OK

    execute(work)


DEFAULT_CONSOLE_BIND = "8090"


def console(
    http: Annotated[
        str,
        typer.Option(
            metavar="HOST:PORT",
            help="Where to serve the console, e.g. 0.0.0.0:8090; a bare port listens on "
            "loopback only.",
        ),
    ] = DEFAULT_CONSOLE_BIND,
) -> None:
    """Serve the operator console alone, against the configured Redis.

    The same console `run --http` serves beside the API, for a laptop pointed
    at a Redis: overview, rate chart, dead letters, results, pause and resume.
    Operators sign in with a key of OZP_OPERATOR_KEYS (name:key, or
    name:key:read for a read-only operator); without it there is no console.
    """

    async def work(settings: Settings) -> int:
        from worker.console.app import create_console_app
        from worker.http.api import listening, parse_bind

        if not settings.operator_keys:
            raise BadInput(
                "the console is off: set OZP_OPERATOR_KEYS=name:key (16+ characters) to turn it on"
            )
        host, port = parse_bind(http)
        stopping = stop_on_signals()
        redis = redis_client(settings.redis_url_or_default, settings.redis_mode)
        try:
            async with listening(settings, redis, host, port, create_console_app) as server:
                err.print(f"console on http://{host}:{server.port}/console", markup=False)
                await stopping.wait()
        finally:
            await redis.aclose()
        return EXIT_OK

    execute(work)
