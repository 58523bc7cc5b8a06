"""Redis connections per worker process, sampled while the workers run.

The workers name no Redis connection, so ``CLIENT LIST`` cannot tell one
process's from another's. The kernel can: a process's sockets are the
``socket:[inode]`` links in ``/proc/<pid>/fd``, and ``/proc/net/tcp`` gives
each inode's remote port. A socket counts when it is established to the
Redis port. ``INFO clients`` gives the server's own total beside it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

# Often while the processes start, when they open their connections (and
# when a process that opens too many dies, within a second); then rarely
# enough to cost next to nothing with thousands of sockets to read.
START_SAMPLE_EVERY_S = 0.05
START_S = 5.0
SAMPLE_EVERY_S = 0.5
_ESTABLISHED = "01"


def _redis_sockets(port: int) -> set[str]:
    """Inodes of the IPv4 sockets established to ``port`` on this host."""
    inodes = set()
    with Path("/proc/net/tcp").open(encoding="ascii") as table:
        next(table)  # the header
        for line in table:
            parts = line.split()
            remote, state, inode = parts[2], parts[3], parts[9]
            if state == _ESTABLISHED and int(remote.rpartition(":")[2], 16) == port:
                inodes.add(inode)
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets ``pid`` holds open; empty once it has exited."""
    found: set[str] = set()
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return found
    for name in names:
        try:
            target = os.readlink(f"{fd_dir}/{name}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            found.add(target[8:-1])
    return found


@dataclass
class ConnectionPeaks:
    """The most Redis connections seen at one sample: per process, all of them,
    and the server's count of its clients (the sampler's own left out)."""

    per_process: dict[int, int] = field(default_factory=dict)
    workers_total: int = 0
    server_clients: int = 0
    samples: int = 0

    @property
    def max_per_process(self) -> int:
        return max(self.per_process.values(), default=0)


def sample_once(peaks: ConnectionPeaks, pids: Sequence[int], port: int, client: Redis) -> None:
    to_redis = _redis_sockets(port)
    total = 0
    for pid in pids:
        count = len(_socket_inodes(pid) & to_redis)
        peaks.per_process[pid] = max(peaks.per_process.get(pid, 0), count)
        total += count
    peaks.workers_total = max(peaks.workers_total, total)
    try:
        clients = int(client.info("clients")["connected_clients"]) - 1
    except RedisError:
        clients = 0  # a server too busy to answer in time: the kernel's count stands
    peaks.server_clients = max(peaks.server_clients, clients)
    peaks.samples += 1


@contextmanager
def sampled(
    pids: Sequence[int], redis_url: str, port: int, peaks: ConnectionPeaks
) -> Iterator[ConnectionPeaks]:
    """Sample into ``peaks``, in a thread, until the block ends: every
    :data:`START_SAMPLE_EVERY_S` for :data:`START_S`, then every :data:`SAMPLE_EVERY_S`."""
    stop = threading.Event()

    def loop() -> None:
        started = time.monotonic()
        with Redis.from_url(redis_url, socket_timeout=5) as client:
            while not stop.is_set():
                sample_once(peaks, pids, port, client)
                early = time.monotonic() - started < START_S
                stop.wait(START_SAMPLE_EVERY_S if early else SAMPLE_EVERY_S)

    thread = threading.Thread(target=loop, name="redis-connections", daemon=True)
    thread.start()
    try:
        yield peaks
    finally:
        stop.set()
        thread.join()
