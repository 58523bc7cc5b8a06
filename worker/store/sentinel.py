"""Redis behind Sentinel: the client for ``redis+sentinel://`` URLs.

    redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/SERVICE[/DB][?...]

names the Sentinels (port 26379 when omitted), the service they watch and
the database. The user and password are the data servers' (the primary's
and its replicas'), as in a ``redis://`` URL. ``sentinel_password`` (and
``sentinel_username``) in the query authenticate to the Sentinels
themselves; without them the Sentinels are asked without AUTH.
``rediss+sentinel://`` speaks TLS to the Sentinels and to the servers, both
checked against the same ``ssl_*`` parameters as ``rediss://``. Every other
query parameter means what it means in a ``redis://`` URL.

The client asks the Sentinels for the primary's address whenever it opens a
connection, and whenever it hands out a pooled one if it last asked a
second ago or more; a connection to another address is reopened on the
primary. So after a promotion the process moves to the new primary within
about a second, and a connection to a primary demoted meanwhile is closed
on its first refused write (redis-py turns ``READONLY`` into a connection
error). The options, the retry policy and the restart watch are those of
:func:`worker.store.connection.redis_client`, which builds the client.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import unquote, unquote_plus, urlsplit

from redis.asyncio import Redis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
)
from redis.exceptions import AuthenticationError, AuthorizationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker.config.settings import REDIS_MODES

SENTINEL_SCHEMES = REDIS_MODES["sentinel"]
DEFAULT_SENTINEL_PORT = 26379
# Query parameters meant for the Sentinels, not for the data servers.
_SENTINEL_PARAMETERS = ("sentinel_password", "sentinel_username")
# How often a process asks the Sentinels where the primary is, besides on
# every new connection. Pooled connections live long, and a primary demoted
# by hand (SENTINEL FAILOVER) or cut off by a partition keeps taking writes
# until the Sentinels reconfigure it, some seconds later: writes that are
# lost, and grants the new primary's limiter does not know. Asking once a
# second bounds that to about a second, for one small query a second.
PRIMARY_CHECK_S = 1.0
# Plain decimal digits, as the configuration takes them.
_DIGITS = re.compile(r"[0-9]{1,9}")
# A Sentinel answers from memory at once. One that does not is skipped for
# the next (every new connection asks), so waiting long on it would only
# delay finding the primary.
SENTINEL_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class SentinelTarget:
    """What a ``redis+sentinel://`` URL names."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    tls: bool
    # For the primary's connections: db, username, password, ssl_* ...
    server: dict[str, Any] = field(repr=False)
    # For the Sentinels' connections: their credentials, and TLS as above.
    sentinel: dict[str, Any] = field(repr=False)


def is_sentinel_url(url: str) -> bool:
    return url.startswith(SENTINEL_SCHEMES)


def parse_sentinel_url(url: str) -> SentinelTarget:
    """The URL's parts; ``ValueError`` with a message that holds no secret."""
    scheme, _, _ = url.partition("://")
    tls = scheme == "rediss+sentinel"
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError("not a URL") from None
    userinfo, at, hosts = parts.netloc.rpartition("@")
    sentinels = tuple(_sentinel_address(host) for host in hosts.split(","))
    path = [unquote(piece) for piece in parts.path.split("/")[1:]]
    if not path or not path[0]:
        raise ValueError("no service name: expected /SERVICE or /SERVICE/DB after the Sentinels")
    if len(path) > 2 or (len(path) == 2 and not _DIGITS.fullmatch(path[1])):
        raise ValueError("expected /SERVICE or /SERVICE/DB (a number) after the Sentinels")
    sentinel: dict[str, Any] = {}
    kept = []
    for part in filter(None, parts.query.split("&")):
        name, _, value = part.partition("=")
        if unquote_plus(name) in _SENTINEL_PARAMETERS:
            sentinel[unquote_plus(name).removeprefix("sentinel_")] = unquote_plus(value)
        else:
            kept.append(part)
    # redis-py's own parser, on the same URL as if it named one server,
    # gives the data servers' options exactly as a redis:// URL would.
    server = dict(
        parse_url(
            f"{'rediss' if tls else 'redis'}://{userinfo}{at}sentinel-managed/"
            f"{path[1] if len(path) == 2 else 0}{'?' if kept else ''}{'&'.join(kept)}"
        )
    )
    for where in ("host", "port", "connection_class"):
        server.pop(where, None)
    if tls:
        sentinel.update({k: v for k, v in server.items() if k.startswith("ssl_")}, ssl=True)
    return SentinelTarget(sentinels, path[0], tls, server, sentinel)


def _sentinel_address(text: str) -> tuple[str, int]:
    if text.startswith("["):  # [IPv6]:port
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if not host:
        raise ValueError("a Sentinel's address is empty: expected HOST[:PORT],HOST[:PORT]")
    if not port:
        return host, DEFAULT_SENTINEL_PORT
    if not _DIGITS.fullmatch(port) or not 0 < int(port) < 65536:
        raise ValueError("a Sentinel's port must be a number from 1 to 65535")
    return host, int(port)


class SentinelRedis(Redis):
    """The primary's client; closing it also closes its connections to the Sentinels."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        pool = self.connection_pool
        if isinstance(pool, SentinelConnectionPool):
            await pool.sentinel_manager.aclose()


class _PrimaryConnection(SentinelManagedConnection):
    """A connection to the primary that asks where it is before every connect.

    redis-py asks the Sentinels in ``connect()`` only; a command resent
    after its connection dropped reconnects through ``connect_check_health``
    to the address it had, which after a failover is the old primary's,
    dead or demoted, until its retries run out (redis/redis-py#3874). Here
    every path to a new socket asks first, so the client's own retries of
    a command land on the new primary.
    """

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if not self.is_connected:
            self.host, self.port = await self.connection_pool.get_master_address()
        await super().connect_check_health(check_health, retry_socket_connect)

    async def _connect_retry(self) -> None:
        # redis-py's asks the Sentinels here, then again above: once is enough.
        await self.connect_check_health(
            check_health=self.connection_pool.check_connection, retry_socket_connect=False
        )


class _PrimarySSLConnection(_PrimaryConnection, SSLConnection):
    pass


class _PrimaryPool(SentinelConnectionPool):
    """redis-py's pool of connections to the primary, following it promptly.

    redis-py asks the Sentinels only when it opens a connection, so a
    process keeps using its pooled connections to a demoted primary for as
    long as that one still answers as a primary. Here a connection handed
    out is checked against the Sentinels' latest answer, asked at most once
    every :data:`PRIMARY_CHECK_S`, and reopened on the new primary when
    they differ (where the restart watch notices the new server).
    """

    def __init__(self, service_name: str, sentinel_manager: Sentinel, **kwargs: Any) -> None:
        # redis-py leaves these three unannotated.
        super().__init__(service_name, sentinel_manager, **kwargs)  # type: ignore[no-untyped-call]
        self._asked_at = -math.inf

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if time.monotonic() - self._asked_at >= PRIMARY_CHECK_S:
            self._asked_at = time.monotonic()
            # No answer (a failover under way, the Sentinels unreachable):
            # carry on with the connection at hand, which fails by itself
            # if its server is gone.
            with contextlib.suppress(RedisConnectionError, RedisTimeoutError):
                # When the primary moved, this also closes the idle connections.
                await self.get_master_address()  # type: ignore[no-untyped-call]
        connection = await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        if self.master_address not in (None, (connection.host, connection.port)):
            try:
                await connection.disconnect()
                await connection.connect()
            except BaseException:
                await self.release(connection)
                raise
        return connection


class _Sentinels(Sentinel):
    """redis-py's Sentinel, telling refused credentials apart.

    redis-py folds every failure of every Sentinel into one
    ``MasterNotFoundError``, a connection error, which the client retries
    and ``run`` waits out. Credentials the Sentinels refuse will not fix
    themselves: when no Sentinel answered and one refused them, that is
    what is raised, so the process stops at once with exit 3.
    """

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        refused: Exception | None = None
        failures = []
        for position, sentinel in enumerate(self.sentinels):
            where = _where(sentinel)
            try:
                # By name, as redis-py parses the RESP2 answer.
                masters = cast(dict[str, dict[str, Any]], await sentinel.sentinel_masters())
            except (AuthenticationError, AuthorizationError) as exc:
                refused = exc
                failures.append(f"{where}: {exc}")
                continue
            except (RedisConnectionError, RedisTimeoutError, ResponseError) as exc:
                failures.append(f"{where}: {exc}")
                continue
            state = masters.get(service_name)
            if state and self.check_master_state(state, service_name):
                # Ask the one that knew first next time.
                self.sentinels[0], self.sentinels[position] = sentinel, self.sentinels[0]
                return str(state["ip"]), int(state["port"])
            failures.append(f"{where}: no primary for {service_name!r} in a good state")
        if refused is not None and len(failures) == len(self.sentinels):
            raise AuthenticationError(f"a Sentinel refused the credentials ({refused})")
        raise MasterNotFoundError(f"no primary for {service_name!r}: {'; '.join(failures)}")


def _where(sentinel: Redis) -> str:
    kwargs = sentinel.connection_pool.connection_kwargs
    return f"Sentinel {kwargs.get('host')}:{kwargs.get('port')}"


def sentinel_client(target: SentinelTarget, options: dict[str, Any]) -> Redis:
    """A client of the service's primary, with ``options`` for its connections."""
    sentinels = _Sentinels(
        _unique(target.sentinels),
        sentinel_kwargs={
            "socket_timeout": SENTINEL_TIMEOUT_S,
            "socket_connect_timeout": SENTINEL_TIMEOUT_S,
            **target.sentinel,
        },
    )
    client: Redis = sentinels.master_for(
        target.service,
        redis_class=SentinelRedis,
        connection_pool_class=_PrimaryPool,
        connection_class=_PrimarySSLConnection if target.tls else _PrimaryConnection,
        # As in redis-py's from_url, what the URL says wins.
        **{**options, **target.server},
    )
    return client


def _unique(addresses: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    return list(dict.fromkeys(addresses))
