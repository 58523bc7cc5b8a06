"""The state directory of ``drain`` without ``REDIS_URL``: a private, persistent Redis.

Layout (default ``./.ozp-state``)::

    .ozp-state/
      lock         held (flock) by the one drain using this directory
      redis.pid    the redis-server that drain started, for the next one
      redis/       the server's --dir: its AOF (appendonlydir/) and redis.log

One drain at a time: two servers on one AOF would corrupt it, and the
take-over of held jobs (see :mod:`worker.drain.batch`) relies on no other process
holding any. The lock is an ``flock``, so it dies with its holder, even on
SIGKILL. The holder's redis-server then gets SIGTERM (see
:mod:`worker.store.embedded`) and writes its AOF out while exiting; the next drain
waits for that to finish before starting a server on the same files.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from redis import Redis as SyncRedis

from worker.errors import BadInput, EmbeddedRedisError
from worker.store.embedded import EmbeddedRedis

PREDECESSOR_EXIT_TIMEOUT_S = 30.0


@contextlib.contextmanager
def private_redis(state_dir: Path) -> Iterator[EmbeddedRedis]:
    """Lock ``state_dir``, start its redis-server (AOF on), stop it on exit."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"{state_dir}: cannot create the state directory: {exc.strerror}") from None
    with _locked(state_dir / "lock"):
        pid_file = state_dir / "redis.pid"
        _wait_for_predecessor(pid_file)
        server = EmbeddedRedis(state_dir / "redis", persist=True)
        with server:
            pid_file.write_text(f"{_server_pid(server)}\n")
            yield server


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[IO[str]]:
    handle = path.open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise BadInput(
                f"{path.parent}: another drain is using this state directory (pid {holder}); "
                "wait for it, or pass a different --state-dir"
            ) from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield handle
    finally:
        handle.close()


def _wait_for_predecessor(pid_file: Path) -> None:
    """Wait until the server a killed drain left behind has written its AOF and exited."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return
    deadline = time.monotonic() + PREDECESSOR_EXIT_TIMEOUT_S
    while _is_redis_server(pid):
        if time.monotonic() > deadline:
            raise EmbeddedRedisError(
                f"the redis-server of an earlier drain (pid {pid}) is still running; "
                "stop it, then run the drain again"
            )
        time.sleep(0.05)


def _is_redis_server(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        # Gone, or no /proc (not Linux): nothing we can wait for.
        return False
    return b"redis-server" in cmdline


def _server_pid(server: EmbeddedRedis) -> int:
    """The server's pid, as the server itself tells it."""
    # The server asks every client for its password, this one included.
    with SyncRedis(
        host="127.0.0.1", port=server.port, password=server.password, socket_timeout=5
    ) as client:
        return int(client.info("server")["process_id"])
