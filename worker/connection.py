"""The Redis connection: one client per process, replies decoded as text."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker.errors import RedisUnavailable

# Enough for a blocking XREAD to come back on its own before the socket
# gives up on it.
SOCKET_TIMEOUT_S = 30.0


def redis_client(url: str) -> Redis:
    """A client that retries a dropped connection with jittered backoff."""
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=5.0,
        health_check_interval=15,
        retry=Retry(EqualJitterBackoff(cap=2.0, base=0.05), retries=5),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


async def connect(url: str) -> Redis:
    """Connect and check with a PING; raise :class:`RedisUnavailable` on failure."""
    client = redis_client(url)
    try:
        await client.ping()
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        await client.aclose()
        raise RedisUnavailable(f"cannot reach Redis at {_without_password(url)}: {exc}") from None
    return client


def _without_password(url: str) -> str:
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"
