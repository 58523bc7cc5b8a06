"""The Redis connection: one client per process, replies decoded as text.

Every new connection first asks whether it reached another server process
than the last one: a restart, or a replica promoted by Sentinel (see
:mod:`worker.store.sentinel`). Either may lack recent writes (AOF syncs once
a second; replication is asynchronous), so the commands registered with
:class:`RestartWatch` (the limiters' cool-downs) run on that connection
before anything else does.

A URL is only ever shown through :func:`redacted_url`; the password it
carries is also registered with the log redaction, so that no log line can
print it either.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import unquote_plus

from redis.asyncio import Redis
from redis.asyncio.connection import BlockingConnectionPool, Connection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import AuthenticationError, AuthorizationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker.errors import ConfigError, RedisCredentialsRefused, RedisUnavailable
from worker.logs import REDACTED, get_logger, register_secret
from worker.store.sentinel import is_sentinel_url, parse_sentinel_url, sentinel_client

log = get_logger(__name__)

# Enough for a blocking XREAD to come back on its own before the socket
# gives up on it.
SOCKET_TIMEOUT_S = 30.0

# Query parameters whose value is a secret, matched as parts of the name:
# redis-py reads ``password`` (and passes ``ssl_password`` and any other
# unknown parameter on to the connection), so err on the side of hiding.
_SECRET_PARAMETER_PARTS = ("pass", "secret", "token", "auth", "credential")

# What a Redis user needs, beyond the product's keys (``~{prefix}:*``), for
# every command of the product, and no @dangerous command (INFO, KEYS,
# CONFIG, CLIENT LIST, ...). tests/test_redis_security.py runs the workers
# and the CLI as a user holding exactly these, and checks that the server
# refused nothing.
REQUIRED_ACL_RULES = (
    # Connection set-up: AUTH, HELLO, CLIENT SETINFO (Redis 7.2+, which
    # redis-py sends and 7.0 does not know, hence the category), SELECT,
    # PING for health checks; CLIENT ID for the restart watch, named too
    # because Redis 6 files the whole of CLIENT under @dangerous.
    "+@connection -@dangerous +client|id",
    # EVALSHA, SCRIPT LOAD after a NOSCRIPT, EVAL for the cool-down after a
    # restart; MULTI and EXEC for drain's bookkeeping
    "+eval +evalsha +script|load +multi +exec",
    # what the scripts and the CLI read and write
    "+time +get +set +del +exists +expire +pexpire +pttl",
    "+hget +hmget +hset +hgetall +hincrby +hexists +hdel +hlen +hkeys",
    "+lpush +ltrim +lrange",
    "+sadd +srem +smembers",
    "+zadd +zrem +zcard +zcount +zscore +zrange +zrangebyscore +zremrangebyscore",
    "+xadd +xack +xdel +xlen +xrange +xrevrange +xread +xreadgroup +xautoclaim",
    "+xpending +xgroup|create +xgroup|delconsumer +xinfo|consumers +xinfo|groups",
)


def acl_setuser_line(user: str, password: str, key_prefix: str) -> str:
    """The ``ACL SETUSER`` line of a least-privilege user for ``key_prefix``."""
    rules = " ".join(REQUIRED_ACL_RULES)
    return f"ACL SETUSER {user} reset on >{password} ~{key_prefix}:* resetchannels -@all {rules}"


def redacted_url(url: str) -> str:
    """``url`` fit to show: its password, in the userinfo or the query, is ``***``.

    Every scheme (redis, rediss, unix). A malformed URL is over-redacted
    rather than under: the userinfo runs to the last ``@``, wherever it is,
    so a password holding an unescaped ``/`` or ``?`` still disappears.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    userinfo, at, location = rest.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        # A lone userinfo is a user name to redis-py, but people put
        # passwords there; and a user part holding "/" or "?" means the
        # last "@" was not the userinfo's.
        if colon and not any(c in user for c in "/?#"):
            location = f"{user}:{REDACTED}@{location}"
        else:
            location = f"{REDACTED}@{location}"
    base, question, query = location.partition("?")
    if question:
        query = "&".join(_redacted_parameter(part) for part in query.split("&"))
    return f"{scheme}{separator}{base}{question}{query}"


def _redacted_parameter(part: str) -> str:
    name, equals, _ = part.partition("=")
    if equals and any(word in unquote_plus(name).lower() for word in _SECRET_PARAMETER_PARTS):
        return f"{name}={REDACTED}"
    return part


class RestartWatch:
    """Notices that the client now talks to another Redis server process (a
    restart, or a replica promoted in a failover), and reacts before any command.

    Three signals, each enough on its own:

    - the server's address changed: only a Sentinel-managed client moves,
      and only to another server (a promoted replica);
    - ``run_id`` from ``INFO server``, new with every server process, the
      exact signal;
    - for a user refused INFO (it is @dangerous in ACL terms), the
      connection's ``CLIENT ID``, which any user may ask: a server numbers
      its connections from 1 up and never reuses a number, so a connection
      numbered below one this client already had cannot be on the same
      server process.

    The last one's blind spot: a new server that has already accepted more
    connections than the old one had before our last one (a young server
    restarted under a large fleet) passes for the old one. A promoted replica
    counts its own connections, which have nothing to do with the old
    primary's; the address catches that case. Grant INFO where the policy
    allows, for the exact signal.

    Connections set up at the same time are numbered in the order the
    server accepted them, not in the order their set-ups finish: a later
    one may report its number first. So a number is compared with the
    highest known when this connection's own set-up (AUTH, the client
    name, CLIENT ID) starts, once its socket is open: a connection the
    server accepted after this one would have had to finish all of those
    round trips before this one started its first.

    The check and the commands run one connection at a time, and the new
    server is taken as known only once its commands succeeded: no other
    connection of this client reaches the new server before the commands
    did, and one that failed half-way leaves the next to find it new again.
    """

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.address: str | None = None
        self.highest_client_id = 0
        self.info_refused = False
        self.restarts = 0
        self._commands: dict[str, tuple[Any, ...]] = {}
        self._checking = asyncio.Lock()

    def on_restart(self, name: str, *command: Any) -> None:
        """Run ``command`` first on a connection to a restarted server."""
        self._commands[name] = command

    async def on_connect(self, connection: Connection) -> None:
        seen = (self.highest_client_id, self.restarts)
        await connection.on_connect()
        Reconnects.connected()
        async with self._checking:
            known = (self.run_id, self.address, self.highest_client_id)
            signal = await self._restarted(connection, seen)
            if signal is None:
                return
            try:
                for command in self._commands.values():
                    await connection.send_command(*command)
                    await connection.read_response()
            except BaseException:
                self.run_id, self.address, self.highest_client_id = known
                raise
            self.restarts += 1
            log.warning("redis.restarted", signal=signal, actions=sorted(self._commands))

    async def _restarted(self, connection: Connection, seen: tuple[int, int]) -> str | None:
        """Which signal says this connection is on another server, if any."""
        address = _address(connection)
        moved = self.address is not None and address != self.address
        self.address = address
        if not self.info_refused:
            await connection.send_command("INFO", "server")
            try:
                info = str(await connection.read_response())
            except ResponseError:
                # NOPERM for a user without @dangerous (or a proxy that
                # hides INFO): ask once, not on every connection, since
                # each refusal also lands in the server's ACL LOG.
                self.info_refused = True
                log.debug("redis.restart_watch", signal="client_id", why="INFO refused")
            else:
                changed = self._run_id_changed(info)
                return "address" if moved else "run_id" if changed else None
        await connection.send_command("CLIENT", "ID")
        client_id = int(await connection.read_response())
        highest_before, restarts_before = seen
        if moved:
            # Another server's numbers: compare later connections with them.
            self.highest_client_id = client_id
            return "address"
        # After a restart every pooled connection reconnects at once; the
        # first to finish reports it, the others are on the same new server.
        if client_id < highest_before and self.restarts == restarts_before:
            self.highest_client_id = client_id
            return "client_id"
        self.highest_client_id = max(self.highest_client_id, client_id)
        return None

    def _run_id_changed(self, info: str) -> bool:
        run_id = next(
            (
                line.partition(":")[2].strip()
                for line in info.splitlines()
                if line.startswith("run_id:")
            ),
            "",
        )
        changed = self.run_id is not None and run_id != self.run_id
        self.run_id = run_id
        return changed


def _address(connection: Connection) -> str:
    """Where the connection went: host and port, or a Unix socket's path."""
    path = getattr(connection, "path", None)
    if path:
        return str(path)
    return f"{getattr(connection, 'host', '')}:{getattr(connection, 'port', '')}"


def restart_watch(redis: Redis) -> RestartWatch | None:
    """The watch of a client made by :func:`redis_client`, if any."""
    hook = redis.connection_pool.connection_kwargs.get("redis_connect_func")
    watch = getattr(hook, "__self__", None)
    return watch if isinstance(watch, RestartWatch) else None


class Reconnects:
    """Redis coming back after a connection of this process failed.

    A failure is noted where the client judges whether to retry it (every
    connection error and timeout passes there, retried or not); the next
    connection that completes its set-up is a reconnect, announced to each
    listener (the ``ozp_redis_reconnects_total`` counter), however many
    calls failed meanwhile. After a restart, each pooled connection found
    dead on its next use may count once more.
    """

    lost = False
    listeners: ClassVar[list[Callable[[], None]]] = []

    @classmethod
    def failed(cls) -> None:
        cls.lost = True

    @classmethod
    def connected(cls) -> None:
        if cls.lost:
            cls.lost = False
            for listener in cls.listeners:
                listener()


def _worth_retrying(error: Exception) -> bool:
    Reconnects.failed()
    # redis-py's AuthenticationError (a wrong or missing password, NOAUTH,
    # WRONGPASS) subclasses ConnectionError; retried, it would open hundreds
    # of connections over minutes before failing the same way.
    return not isinstance(error, AuthenticationError | AuthorizationError)


# Connections a process keeps to Redis at most, whatever its number of
# accounts: a call is a fraction of a millisecond, so even 300 busy accounts
# keep only a few in use at once; the idle ones share one blocking read.
MAX_CONNECTIONS = 48
# How long a call waits for a free connection before it fails as a
# connection error (and is retried like one).
CONNECTION_WAIT_S = 20.0


def redis_client(url: str) -> Redis:
    """A client that retries a dropped connection with jittered backoff.

    The URL's scheme says what it names: ``redis://``, ``rediss://`` and
    ``unix://`` one server, ``redis+sentinel://`` and ``rediss+sentinel://``
    the Sentinels of a primary (see :mod:`worker.store.sentinel`). The
    settings hold ``OZP_REDIS_MODE`` to the same rule, so every caller
    passes only the URL.
    """
    options: dict[str, Any] = {
        "decode_responses": True,
        # A stream entry holding bytes that are not UTF-8 reads as a str
        # with lone surrogates instead of raising, and writes back as the
        # same bytes.
        "encoding_errors": "surrogateescape",
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": 5.0,
        "health_check_interval": 15,
        "retry": Retry(
            EqualJitterBackoff(cap=2.0, base=0.05), retries=5, is_retryable=_worth_retrying
        ),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "redis_connect_func": RestartWatch().on_connect,
    }
    try:
        if is_sentinel_url(url):
            target = parse_sentinel_url(url)
            passwords = [target.server.get("password"), target.sentinel.get("password")]
        else:
            passwords = [parse_url(url).get("password")]
    except ValueError as exc:
        raise ConfigError(f"REDIS_URL {redacted_url(url)}: {exc}") from None
    for password in passwords:
        if isinstance(password, str):
            register_secret(password)
    try:
        if is_sentinel_url(url):
            client = sentinel_client(target, options)
        else:
            # A fixed number of connections, waited for when all are busy: a
            # process with hundreds of accounts must not open hundreds (nor
            # fail with "Too many connections" past redis-py's default).
            blocking = BlockingConnectionPool.from_url(
                url, max_connections=MAX_CONNECTIONS, timeout=CONNECTION_WAIT_S, **options
            )
            client = Redis(connection_pool=blocking)
            client.auto_close_connection_pool = True
        pool = client.connection_pool
        # No I/O: a query parameter that the connection does not take would
        # otherwise surface as a TypeError at the first command.
        pool.connection_class(**pool.connection_kwargs)
    except TypeError as exc:
        raise ConfigError(f"REDIS_URL {redacted_url(url)}: {exc}") from None
    return client


async def wait_until_reachable(
    client: Redis, url: str, stopping: asyncio.Event, max_interval_s: float = 5.0
) -> bool:
    """PING until Redis answers; False if ``stopping`` is set first.

    For a long-running worker: a container started while Redis is still
    coming up (or down for maintenance) waits for it, logging each miss,
    instead of exiting and being restarted in a loop. Refused credentials
    raise :class:`RedisCredentialsRefused` at once: waiting will not fix them.
    """
    interval = 0.1
    while not stopping.is_set():
        try:
            await client.ping()
            return True
        except (AuthenticationError, AuthorizationError) as exc:
            raise RedisCredentialsRefused(
                f"Redis at {redacted_url(url)} refused the credentials ({exc})"
            ) from None
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            if _is_certificate_refusal(exc):
                # A server whose certificate we do not trust stays untrusted.
                raise RedisUnavailable(
                    f"cannot reach Redis at {redacted_url(url)}: {exc}"
                ) from None
            log.warning("redis.waiting", url=redacted_url(url), error=str(exc), retry_in_s=interval)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval)
        interval = min(interval * 2, max_interval_s)
    return False


def _is_certificate_refusal(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "certificate verify failed" in str(error)


async def connect(url: str) -> Redis:
    """Connect and check with a PING; raise :class:`RedisUnavailable` on failure."""
    client = redis_client(url)
    try:
        await client.ping()
    except (AuthenticationError, AuthorizationError) as exc:
        await client.aclose()
        form = (
            "redis+sentinel://USER:PASSWORD@HOST:PORT,.../SERVICE/0?sentinel_password=..."
            if is_sentinel_url(url)
            else "redis://USER:PASSWORD@HOST:PORT/0"
        )
        raise RedisCredentialsRefused(
            f"Redis at {redacted_url(url)} refused the credentials ({exc}); "
            f"set the user and password in REDIS_URL ({form})"
        ) from None
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        await client.aclose()
        raise RedisUnavailable(f"cannot reach Redis at {redacted_url(url)}: {exc}") from None
    except BaseException:
        await client.aclose()
        raise
    return client
