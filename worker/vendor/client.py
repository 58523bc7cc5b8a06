"""The aiohttp client for the vendor's two endpoints.

One ``ClientSession`` per process (see :func:`create_session`). Answers come
back as :class:`~worker.vendor.outcomes.Answer` whatever their shape; a request that
got no answer raises :class:`TransportFailure`. Neither carries the API key
or the token.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import aiohttp

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


async def _count_connection(
    _session: aiohttp.ClientSession, context: SimpleNamespace, _params: object
) -> None:
    # aiohttp resends an idempotent request (DELETE is one) by itself when the
    # connection drops, once, with no setting to turn it off. That resend
    # would reach the vendor without a permit of its own. Every attempt takes
    # a connection first, new or reused, so the second one is refused here,
    # before anything is written to the socket.
    context.connections = getattr(context, "connections", 0) + 1
    if context.connections > 1:
        raise SendRefused("refused aiohttp's automatic resend: one permit, one request")


async def _check_send_by(
    _session: aiohttp.ClientSession, context: SimpleNamespace, _params: object
) -> None:
    # The last moment before the request is written: a connection is in hand.
    # A process starved of CPU since its permit was checked would otherwise
    # send into a later window than the permit was granted for.
    send_by = (context.trace_request_ctx or {}).get("send_by")
    if send_by is not None and time.monotonic() > send_by:
        raise PermitExpired("the permit expired before the request could be written")


def _one_attempt_per_request() -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()
    trace.on_connection_create_start.append(_count_connection)
    trace.on_connection_reuseconn.append(_count_connection)
    trace.on_connection_reuseconn.append(_check_send_by)
    trace.on_connection_create_end.append(_check_send_by)
    return trace


def create_session(request_timeout_s: float) -> aiohttp.ClientSession:
    """The process's one HTTP session."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(
            total=request_timeout_s, connect=min(10.0, request_timeout_s)
        ),
        trace_configs=[_one_attempt_per_request()],
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
        try:
            async with self._session.request(
                method,
                self._base + path,
                headers=headers,
                json=body,
                trace_request_ctx={"send_by": send_by},
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
