"""What one client may hold of the HTTP server: connections, time, and items.

    ConnectionGuard     a cap on open connections, and a deadline for each
                        connection's request headers (slowloris)
    GuardedHandler      aiohttp's per-connection protocol, reporting to the guard,
                        and answering aiohttp's own refusals (a malformed request
                        line, an oversized header) as JSON, without echoing them
    TokenBucket         a producer's allowance of requests, or of items

At the cap, a new connection takes the place of the oldest one that is not
inside a request (one still sending its headers, first; else an idle
keep-alive one), so that connections which hold a slot without asking for
anything cannot starve ``/healthz`` or a real producer. Only when every slot
is inside a request is the newcomer refused, with a 503.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web

from worker.logs import WarningSampler, get_logger

log = get_logger(__name__)

# One line per period for the floods of this module (evictions, malformed
# requests), each with the count it stands for.
_LOG_PERIOD_S = 10.0


@dataclass
class _Connection:
    transport: asyncio.Transport
    # Inside a request (headers in, answer not yet given): never evicted.
    busy: bool = False
    # Sent at least one request's headers: no longer subject to the header deadline.
    seen_request: bool = False
    deadline: asyncio.TimerHandle | None = None


@dataclass
class GuardCounts:
    """What the guard did since it started; for tests and operators."""

    accepted: int = 0
    refused: int = 0
    evicted: int = 0
    timed_out: int = 0
    peak: int = 0


class ConnectionGuard:
    """The server's open connections, at most ``max_connections`` of them."""

    def __init__(self, max_connections: int, header_timeout_s: float) -> None:
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.counts = GuardCounts()
        self._open: dict[web.RequestHandler, _Connection] = {}
        # One sampler per event name: a handful, fixed by this module.
        self._samplers: dict[str, WarningSampler] = {}

    @property
    def open_connections(self) -> int:
        return len(self._open)

    @property
    def busy_connections(self) -> int:
        """Connections inside a request: these are never evicted."""
        return sum(connection.busy for connection in self._open.values())

    def admit(self, handler: web.RequestHandler, transport: asyncio.Transport) -> bool:
        """Make room for a new connection; False when every slot is busy."""
        if len(self._open) >= self.max_connections:
            victim = self._oldest_idle()
            if victim is None:
                self.counts.refused += 1
                self._warn("http.connections_full", refused=1)
                return False
            self.counts.evicted += 1
            self._warn("http.connections_full", evicted=1)
            self._close(victim)
        loop = asyncio.get_running_loop()
        connection = _Connection(transport)
        connection.deadline = loop.call_later(self.header_timeout_s, self._headers_overdue, handler)
        self._open[handler] = connection
        self.counts.accepted += 1
        self.counts.peak = max(self.counts.peak, len(self._open))
        return True

    def release(self, handler: web.RequestHandler) -> None:
        connection = self._open.pop(handler, None)
        if connection is not None and connection.deadline is not None:
            connection.deadline.cancel()

    def request_started(self, handler: web.RequestHandler) -> None:
        connection = self._open.get(handler)
        if connection is not None:
            connection.busy = connection.seen_request = True
            if connection.deadline is not None:
                connection.deadline.cancel()
                connection.deadline = None
            # Most recently active last: eviction picks from the front.
            self._open[handler] = self._open.pop(handler)

    def request_finished(self, handler: web.RequestHandler) -> None:
        connection = self._open.get(handler)
        if connection is not None:
            connection.busy = False

    def _oldest_idle(self) -> web.RequestHandler | None:
        # Insertion order is connect order (or last request, see
        # request_started): the first match is the oldest.
        idle = [h for h, c in self._open.items() if not c.busy]
        never_asked = [h for h in idle if not self._open[h].seen_request]
        candidates = never_asked or idle
        return candidates[0] if candidates else None

    def _headers_overdue(self, handler: web.RequestHandler) -> None:
        connection = self._open.get(handler)
        if connection is not None and not connection.seen_request:
            self.counts.timed_out += 1
            self._warn("http.header_timeout", closed=1)
            self._close(handler)

    def _close(self, handler: web.RequestHandler) -> None:
        connection = self._open.pop(handler)
        if connection.deadline is not None:
            connection.deadline.cancel()
        # abort(), not close(): nothing of ours is waiting to be written, and a
        # slow reader must not keep the socket open while we flush to it.
        connection.transport.abort()

    def malformed_request(self, status: int, exc: BaseException | None) -> None:
        # The class name only: the message of a parser error quotes the request.
        self._warn("http.malformed_request", status=status,
                   error=type(exc).__name__ if exc else "none")  # fmt: skip

    def _warn(self, event: str, **context: int | str) -> None:
        sampler = self._samplers.setdefault(event, WarningSampler(_LOG_PERIOD_S))
        held = sampler.admit(asyncio.get_running_loop().time())
        if held is not None:
            log.warning(event, open=len(self._open), limit=self.max_connections,
                        also_since_last=held, **context)  # fmt: skip


def json_error_bytes(status: int, message: str, headers: dict[str, str] | None = None) -> bytes:
    """A whole HTTP/1.1 error response, for a connection that has no request object."""
    body = json.dumps({"error": message}).encode()
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "Content-Type: application/json; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class GuardedHandler(web.RequestHandler):
    """aiohttp's connection protocol, counted by a :class:`ConnectionGuard`."""

    def __init__(self, manager: web.Server, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if not self._guard.admit(self, transport):
            transport.write(json_error_bytes(503, "too many connections; try again",
                                             {"Retry-After": "1"}))  # fmt: skip
            transport.close()
            return
        self._admitted = True
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._admitted:
            return
        self._guard.release(self)
        super().connection_lost(exc)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's own refusals (400 for a malformed request, 500 for a
        failure outside our middleware) as JSON. The exception's text is
        neither logged nor sent: a parser error quotes the offending header
        line, which may hold a bearer key."""
        if request.writer.output_size > 0:
            raise ConnectionError("the response was already started")
        self._guard.malformed_request(status, exc)
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        response = web.json_response({"error": phrase}, status=status)
        response.force_close()
        return response


class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``capacity`` saved up.

    Pure: the caller passes the clock, so that tests can move it.
    """

    def __init__(self, rate_per_s: float, capacity: float, now: float) -> None:
        self.rate_per_s = rate_per_s
        self.capacity = capacity
        self._tokens = capacity
        self._at = now

    def take(self, amount: float, now: float) -> float:
        """Take ``amount`` and return 0, or take nothing and return how many
        seconds until ``amount`` would be there (inf if it never can be)."""
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate_per_s)
        self._at = now
        if amount <= self._tokens:
            self._tokens -= amount
            return 0.0
        if amount > self.capacity:
            return float("inf")
        return (amount - self._tokens) / self.rate_per_s
