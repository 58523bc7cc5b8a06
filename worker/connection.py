"""The Redis connection: one client per process, replies decoded as text.

Every new connection first asks the server for its ``run_id``. When it has
changed, the server restarted and may have lost recent writes (AOF syncs
once a second), so the commands registered with :class:`RestartWatch` (the
limiters' cool-downs) run on that connection before anything else does.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker.errors import RedisUnavailable
from worker.logs import get_logger

log = get_logger(__name__)

# Enough for a blocking XREAD to come back on its own before the socket
# gives up on it.
SOCKET_TIMEOUT_S = 30.0


class RestartWatch:
    """Notices that the Redis server restarted, and reacts before any command."""

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.restarts = 0
        self._commands: dict[str, tuple[Any, ...]] = {}

    def on_restart(self, name: str, *command: Any) -> None:
        """Run ``command`` first on a connection to a restarted server."""
        self._commands[name] = command

    async def on_connect(self, connection: Connection) -> None:
        await connection.on_connect()
        await connection.send_command("INFO", "server")
        info = str(await connection.read_response())
        run_id = next(
            (
                line.partition(":")[2].strip()
                for line in info.splitlines()
                if line.startswith("run_id:")
            ),
            "",
        )
        if self.run_id is not None and run_id != self.run_id:
            self.restarts += 1
            log.warning("redis.restarted", actions=sorted(self._commands))
            for command in self._commands.values():
                await connection.send_command(*command)
                await connection.read_response()
        self.run_id = run_id


def restart_watch(redis: Redis) -> RestartWatch | None:
    """The watch of a client made by :func:`redis_client`, if any."""
    hook = redis.connection_pool.connection_kwargs.get("redis_connect_func")
    watch = getattr(hook, "__self__", None)
    return watch if isinstance(watch, RestartWatch) else None


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
        redis_connect_func=RestartWatch().on_connect,
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
