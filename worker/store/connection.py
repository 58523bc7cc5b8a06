"""The Redis connection: one client per process, replies decoded as text.

Every new connection first asks whether it reached another server process
than the last one: a restart, or a replica promoted by Sentinel (see
:mod:`worker.store.sentinel`) or by Redis Cluster (see
:mod:`worker.store.cluster`). Either may lack recent writes, so the
commands registered with the :class:`~worker.store.restarts.RestartWatch`
(the limiters' cool-downs) run on that connection before anything else does.

A URL is only ever shown through :func:`redacted_url`; the password it
carries is also registered with the log redaction, so that no log line can
print it either.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any
from urllib.parse import unquote_plus

from redis.asyncio import Redis
from redis.asyncio.connection import BlockingConnectionPool, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import AuthenticationError, AuthorizationError, RedisClusterException
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker.config.settings import DEFAULT_REDIS_MODE
from worker.errors import ConfigError, RedisCredentialsRefused, RedisUnavailable
from worker.logs import REDACTED, get_logger, register_secret
from worker.store.cluster import ClusterRestartWatch, cluster_client, cluster_watch
from worker.store.restarts import Reconnects, RestartWatch
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
    # Redis Cluster: the slot map, read at start and after a redirect or a
    # failover (a standalone server never hears it)
    "+cluster|slots",
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


def restart_watch(redis: Redis) -> RestartWatch | ClusterRestartWatch | None:
    """The watch of a client made by :func:`redis_client`, if any."""
    watches = cluster_watch(redis)
    if watches is not None:
        return watches
    pool = getattr(redis, "connection_pool", None)
    hook = None if pool is None else pool.connection_kwargs.get("redis_connect_func")
    watch = getattr(hook, "__self__", None)
    return watch if isinstance(watch, RestartWatch) else None


def _worth_retrying(error: Exception) -> bool:
    Reconnects.failed()
    # redis-py's AuthenticationError (a wrong or missing password, NOAUTH,
    # WRONGPASS) subclasses ConnectionError; retried, it would open hundreds
    # of connections over minutes before failing the same way.
    return not isinstance(error, AuthenticationError | AuthorizationError)


# Connections a process keeps to Redis (to each node of a cluster) at most,
# whatever its number of accounts: a call is a fraction of a millisecond, so
# even 300 busy accounts keep only a few in use at once; the idle ones share
# one blocking read.
MAX_CONNECTIONS = 48
# How long a call waits for a free connection before it fails as a
# connection error (and is retried like one).
CONNECTION_WAIT_S = 20.0


def redis_client(url: str, mode: str = DEFAULT_REDIS_MODE) -> Redis:
    """A client that retries a dropped connection with jittered backoff.

    The URL's scheme says what it names: ``redis://``, ``rediss://`` and
    ``unix://`` one server, ``redis+sentinel://`` and ``rediss+sentinel://``
    the Sentinels of a primary (see :mod:`worker.store.sentinel`). The
    settings hold ``OZP_REDIS_MODE`` to the same rule. A cluster node's URL
    looks like any server's, so ``mode`` (the settings' ``redis_mode``) says
    ``cluster`` (see :mod:`worker.store.cluster`).
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
        elif mode == "cluster":
            # No pool to check: the cluster client rejects what its nodes
            # would not take when it is built.
            return cluster_client(url, options, MAX_CONNECTIONS)
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
    except (TypeError, RedisClusterException) as exc:
        # redis-py's cluster refusals run to several lines of advice; the
        # first says what is wrong.
        reason = next(iter(str(exc).splitlines()), type(exc).__name__)
        raise ConfigError(f"REDIS_URL {redacted_url(url)}: {reason}") from None
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


async def connect(url: str, mode: str = DEFAULT_REDIS_MODE) -> Redis:
    """Connect and check with a PING; raise :class:`RedisUnavailable` on failure."""
    client = redis_client(url, mode)
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
