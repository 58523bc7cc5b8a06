"""Child processes measured by the kernel: exit code, CPU time and peak RSS.

Each child is reaped with ``os.wait4``, which returns the resource usage of
that one child (not of all children, as ``RUSAGE_CHILDREN`` would), so
processes that run side by side are measured apart. ``ru_maxrss`` is the
child's high-water mark of resident memory, the same number as ``VmHWM`` in
``/proc/<pid>/status``, but read once at exit instead of sampled.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# Short enough that the measured wall time is not padded by the poll, long
# enough that polling costs the benchmark's own process next to nothing.
POLL_S = 0.02


@dataclass(frozen=True)
class Usage:
    exit_code: int
    wall_s: float
    user_s: float
    sys_s: float
    peak_rss_bytes: int

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


class Child:
    """One child process, its output in a file, reaped by :meth:`poll`."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str], log: Path) -> None:
        self.args = list(args)
        self.started = time.monotonic()
        with log.open("wb") as out:
            self._popen = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
                self.args, env=dict(env), stdout=out, stderr=subprocess.STDOUT
            )
        self.pid = self._popen.pid
        self.usage: Usage | None = None

    def poll(self) -> Usage | None:
        """The usage once the child has exited (and is reaped), else None."""
        if self.usage is not None:
            return self.usage
        pid, status, rusage = os.wait4(self.pid, os.WNOHANG)
        if pid == 0:
            return None
        # Tell Popen the child is gone, so it never waits on a reused pid.
        self._popen.returncode = os.waitstatus_to_exitcode(status)
        self.usage = Usage(
            exit_code=self._popen.returncode,
            wall_s=time.monotonic() - self.started,
            user_s=rusage.ru_utime,
            sys_s=rusage.ru_stime,
            # Linux reports kilobytes; macOS would report bytes.
            peak_rss_bytes=rusage.ru_maxrss * (1 if sys.platform == "darwin" else 1024),
        )
        return self.usage

    def kill(self) -> None:
        if self.poll() is None:
            self._popen.kill()
            deadline = time.monotonic() + 10
            while self.poll() is None and time.monotonic() < deadline:
                time.sleep(POLL_S)


def python_module(module: str, *args: str) -> list[str]:
    """A command line running ``module`` under this interpreter (the venv's)."""
    return [sys.executable, "-m", module, *args]


def wait_all(children: Sequence[Child], timeout_s: float) -> list[Usage]:
    """Every child's usage once all have exited; after ``timeout_s`` the rest are
    killed, and their usage shows it (exit code -9)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(child.poll() is not None for child in children):
            break
        time.sleep(POLL_S)
    for child in children:
        child.kill()
    return [child.usage for child in children if child.usage is not None]
