"""Serving the simulator: in-process (``start``) or as a blocking server (``run``)."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from aiohttp import web

from worker.simulator.app import create_app
from worker.simulator.config import SimulatorConfig

# A hung request (fault "hang") may still be sleeping at shutdown; waiting the
# aiohttp default of 60 s for it would only stall the caller.
SHUTDOWN_TIMEOUT_S = 1.0


async def start(
    config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, str]:
    """Serve a new simulator on ``host:port`` (0: a free port); returns the runner and base URL.

    The caller owns the runner and ends it with ``await runner.cleanup()``.
    """
    runner = web.AppRunner(
        create_app(config),
        handle_signals=False,
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound_host, bound_port = runner.addresses[0][:2]
    except BaseException:
        await runner.cleanup()
        raise
    url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    return runner, f"http://{url_host}:{bound_port}"


async def serve_until_signalled(
    config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 8080
) -> None:
    runner, url = await start(config, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        # The one line a script waits for; flushed, because stdout may be a pipe.
        print(f"ozonetel simulator listening on {url}", flush=True)
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signum)
        await runner.cleanup()


def run(config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve until SIGINT or SIGTERM; prints one line with the base URL first."""
    asyncio.run(serve_until_signalled(config, host, port))
