"""Real worker processes (``python -m worker run``) for the distributed tests.

Each process gets its own environment (the test's Redis, key prefix and
simulator), writes its JSON logs to a file of its own, and may be started
under a wrapper such as ``faketime`` to give it a host clock of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

# One definition of each measure, shared with the benchmark.

# The vendor's 100 per 60 s, compressed: 40 per 4 s.
FLEET_LIMIT = 40
FLEET_WINDOW_S = 4.0
# The margin is 3.75 % of the window, not production's 0.5 s of a minute
# (under 1 %): compressing time shrinks the margin but not a busy machine's
# scheduling delays. A quarter of it bounds how late a worker may trade its
# permit for a job, another quarter how late it may then write the request;
# the rest absorbs the simulator's own late stamping of arrivals, a process
# on two shared cores. At 1 % (40 ms), with other test runs loading the
# machine, the simulator once stamped two arrivals 60 ms late and counted the
# requests a window later as over the limit.
FLEET_MARGIN_S = 0.15
FLEET_TIME_SCALE = 60.0 / FLEET_WINDOW_S  # the simulator: its minute lasts one window


def worker_env(redis_url: str, prefix: str, sim_url: str, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OZP_", "OZONETEL_"))}
    env.update(
        {
            "REDIS_URL": redis_url,
            "OZP_KEY_PREFIX": prefix,
            "OZONETEL_BASE_URL": sim_url,
            "OZONETEL_API_KEY": "demo-key",
            "OZONETEL_USERNAME": "demo",
            "OZP_RATE_LIMIT": str(FLEET_LIMIT),
            "OZP_RATE_WINDOW_S": str(FLEET_WINDOW_S),
            "OZP_RATE_MARGIN_S": str(FLEET_MARGIN_S),
            "OZP_CONCURRENCY": "4",
            "OZP_REQUEST_TIMEOUT_S": "2",
            "OZP_VISIBILITY_TIMEOUT_S": "5",
            "OZP_RETRY_BASE_S": "0.1",
            "OZP_RETRY_MAX_S": "1",
            "OZP_TOKEN_BUDGET_WINDOW_S": str(3600 / FLEET_TIME_SCALE),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


@dataclass
class Fleet:
    """Worker processes, started and reaped by the test."""

    env: dict[str, str]
    log_dir: Path
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)

    async def start(
        self, count: int = 1, args: Sequence[str] = ("--until-empty",), wrapper: Sequence[str] = ()
    ) -> list[asyncio.subprocess.Process]:
        started = []
        for _ in range(count):
            index = len(self.processes)
            log = (self.log_dir / f"worker-{index}.log").open("wb")
            process = await asyncio.create_subprocess_exec(
                *wrapper,
                sys.executable,
                "-m",
                "worker",
                "run",
                *args,
                env=self.env,
                stdout=log,
                stderr=log,
            )
            log.close()
            self.processes.append(process)
            started.append(process)
        return started

    async def wait(self, timeout_s: float) -> list[int]:
        """Exit codes of every process, once all have ended."""
        async with asyncio.timeout(timeout_s):
            return [await process.wait() for process in self.processes]

    def kill(self, process: asyncio.subprocess.Process, sig: int = signal.SIGKILL) -> None:
        if process.returncode is None:
            process.send_signal(sig)

    async def stop_all(self) -> None:
        for process in self.processes:
            self.kill(process)
        for process in self.processes:
            await process.wait()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))


@dataclass
class SimProcess:
    """The simulator as a process of its own, timing arrivals on its own loop."""

    process: asyncio.subprocess.Process
    url: str

    @classmethod
    async def start(cls, campaigns_file: Path, *options: str) -> SimProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "worker",
            "simulate",
            "--port",
            "0",
            "--campaigns",
            str(campaigns_file),
            *options,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert process.stdout is not None
        async with asyncio.timeout(20):
            line = (await process.stdout.readline()).decode()
        url = line.strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:"), line
        return cls(process, url)

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()


async def sim_report(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/_sim/requests") as r:
        return dict(await r.json())


async def sim_post(url: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/_sim/{path}", json=body or {}) as response,
    ):
        assert response.status == 200, await response.text()
        return dict(await response.json())


def write_campaigns(path: Path, campaigns: dict[str, Sequence[str]]) -> Path:
    path.write_text(json.dumps({name: list(numbers) for name, numbers in campaigns.items()}))
    return path
