"""The aiohttp client for the vendor's two endpoints.

One ``ClientSession`` per process (see :func:`create_session`). Answers come
back as :class:`~worker.vendor.outcomes.Answer` whatever their shape; a request that
got no answer raises :class:`TransportFailure`. Neither carries the API key
or the token.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.tracing import Trace

from worker.config.settings import AccountSettings
from worker.errors import PermitExpired, SendRefused
from worker.queue.jobs import Job
from worker.vendor.outcomes import Answer, parse_body

DELETE_PATH = "/ca_apis/deleteCampaignData"
TOKEN_PATH = "/ca_apis/CAToken/generateToken"  # noqa: S105 - a path, not a secret
# Vendor bodies are a few hundred bytes; anything longer is kept only in part.
MAX_BODY_CHARS = 4096


class TransportFailure(Exception):
    """No answer: a timeout, a refused or dropped connection. It may have arrived."""


class TransportTimeout(TransportFailure):
    """No answer within the request timeout."""


class NotSent(Exception):
    """Abandoned before a byte was written: the permit's moment had passed."""


@dataclass
class _Attempt:
    """One request's right to be written: once, and not after ``send_by``."""

    send_by: float | None
    connections: int = 0


# The request this task is making. aiohttp asks the connector for every
# attempt from the task that made the request, its own resend included, so
# the connector reads here whose permit a connection would be spent on.
# (aiohttp's trace hooks see the request too, but a hook that raises leaves
# the connection it was called about open and out of the pool: one socket
# on each end kept for good per refusal.)
_ATTEMPT: ContextVar[_Attempt | None] = ContextVar("vendor_attempt", default=None)


class _OnePermitConnector(aiohttp.TCPConnector):
    """Refuses an attempt that may not be written, with its connection in hand."""

    async def connect(
        self,
        req: ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp's own signature
    ) -> Connection:
        attempt = _ATTEMPT.get()
        if attempt is None:
            return await super().connect(req, traces, timeout)
        # aiohttp resends an idempotent request (DELETE is one) by itself when
        # the connection drops, once, with no setting to turn it off. That
        # resend would reach the vendor without a permit of its own. It is
        # refused before it takes a connection, so there is none to give back.
        attempt.connections += 1
        if attempt.connections > 1:
            raise SendRefused("refused aiohttp's automatic resend: one permit, one request")
        connection = await super().connect(req, traces, timeout)
        # The last moment before the request is written: a connection is in
        # hand. A process starved of CPU since its permit was checked would
        # otherwise send into a later window than the permit was granted for.
        if attempt.send_by is not None and time.monotonic() > attempt.send_by:
            # Nothing was written on it, so it is as good as before: back to
            # the pool, where the next request saves the handshake.
            connection.release()
            raise PermitExpired("the permit expired before the request could be written")
        return connection


def create_session(request_timeout_s: float) -> aiohttp.ClientSession:
    """The process's one HTTP session."""
    return aiohttp.ClientSession(
        connector=_OnePermitConnector(),
        timeout=aiohttp.ClientTimeout(
            total=request_timeout_s, connect=min(10.0, request_timeout_s)
        ),
        raise_for_status=False,
    )


class OzonetelClient:
    def __init__(self, session: aiohttp.ClientSession, account: AccountSettings) -> None:
        self._session = session
        self._account = account
        self._base = account.base_url.rstrip("/")

    async def generate_token(self) -> Answer:
        return await self._call(
            "POST",
            TOKEN_PATH,
            {"apiKey": self._account.api_key.reveal()},
            {"userName": self._account.username},
        )

    async def delete_record(
        self, job: Job, token: str | None, send_by: float | None = None
    ) -> Answer:
        """Send one deletion; ``send_by`` (monotonic) is the latest moment to
        start writing it, after which :class:`NotSent` is raised instead."""
        headers = {"apiKey": self._account.api_key.reveal()}
        if self._account.auth_mode == "token" and token is not None:
            headers["Authorization"] = f"Bearer {token}"
        body = {
            "campaignName": job.campaign,
            "phoneNumber": job.phone,
            "userName": self._account.username,
            "name": job.name,
        }
        return await self._call("DELETE", DELETE_PATH, headers, body, send_by)

    async def _call(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: dict[str, Any],
        send_by: float | None = None,
    ) -> Answer:
        attempt = _ATTEMPT.set(_Attempt(send_by))
        try:
            async with self._session.request(
                method, self._base + path, headers=headers, json=body
            ) as response:
                raw = await response.text(errors="replace")
                return Answer(response.status, parse_body(raw), raw[:MAX_BODY_CHARS])
        except PermitExpired as exc:
            raise NotSent(str(exc)) from None
        except SendRefused as exc:
            raise TransportFailure(str(exc)) from None
        except TimeoutError:
            raise TransportTimeout("timeout") from None
        except aiohttp.ClientError as exc:
            # The exception's text names the host and port, never a header.
            raise TransportFailure(f"{type(exc).__name__}: {exc}") from None
        finally:
            _ATTEMPT.reset(attempt)
