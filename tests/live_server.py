"""A server of ours on its own event loop in a thread, for tests driven
synchronously (hypothesis), spoken to with raw HTTP over a socket."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import http.client
import socket
import threading
from collections.abc import Iterator

from worker.config.settings import Settings
from worker.http.api import AppFactory, listening
from worker.store.connection import redis_client


@contextlib.contextmanager
def serving(settings: Settings, make_app: AppFactory | None = None) -> Iterator[int]:
    """Serve on a free loopback port (yielded) until the block ends."""
    loop, stopping = asyncio.new_event_loop(), asyncio.Event()
    port: concurrent.futures.Future[int] = concurrent.futures.Future()

    async def serve() -> None:
        async with (
            redis_client(settings.redis_url_or_default) as client,
            listening(settings, client, "127.0.0.1", 0, make_app) as server,
        ):
            port.set_result(server.port)
            await stopping.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    try:
        yield port.result(timeout=10)
    finally:
        loop.call_soon_threadsafe(stopping.set)
        thread.join(10)
        loop.close()


def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send one raw request; the answer's status, headers and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        # A HEAD answer declares a length but carries no body.
        method = raw.split(b" ", 1)[0].decode("latin-1")
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
