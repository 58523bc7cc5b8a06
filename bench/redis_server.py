"""A fresh redis-server per measurement, and the two numbers read from it.

One server per configuration, without persistence: no run sees another's
keys, limiter state or memory, and no disk writes disturb the timing.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from redis import Redis

from worker.store.embedded import EmbeddedRedis, find_redis_server


@dataclass(frozen=True)
class RedisSample:
    used_memory: int  # bytes, INFO memory
    cpu_s: float  # the server's user + system CPU since it started, INFO cpu


@contextmanager
def fresh_redis(state_dir: Path) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(state_dir, persist=False) as server:
        yield server


def sample(url: str) -> RedisSample:
    with Redis.from_url(url, socket_timeout=10) as client:
        memory = client.info("memory")
        cpu = client.info("cpu")
    return RedisSample(
        used_memory=int(memory["used_memory"]),
        cpu_s=float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
    )


def stream_length(url: str, key: str) -> int:
    with Redis.from_url(url, socket_timeout=10) as client:
        return int(client.xlen(key))


def server_version() -> str:
    """``redis-server --version``, as the binary the benchmark starts reports it."""
    done = subprocess.run(  # noqa: S603 - the binary EmbeddedRedis itself would start
        [find_redis_server(), "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    return done.stdout.strip() or done.stderr.strip()
