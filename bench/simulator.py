"""The Ozonetel simulator as a process of its own, and its inspection endpoint.

A separate process, so that it stamps arrivals on its own event loop and
clock, unslowed by the benchmark and unaffected by the workers' scheduling:
its ``violations`` and ``max_in_window`` are the server's view, the one the
vendor would have.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.environment import RateSettings
from bench.processes import POLL_S, Child, python_module

START_TIMEOUT_S = 20.0
INSPECT_TIMEOUT_S = 30.0
_LISTENING = "listening on "


@dataclass(frozen=True)
class SimulatorOptions:
    rate: RateSettings
    latency: str
    seed: int


class SimulatorProcess:
    """``python -m worker simulate`` on a free loopback port, stopped by :meth:`stop`."""

    def __init__(
        self, campaigns: Path, options: SimulatorOptions, log: Path, env: Mapping[str, str]
    ) -> None:
        args = python_module(
            "worker", "simulate",
            "--host", "127.0.0.1",
            "--port", "0",
            "--campaigns", str(campaigns),
            # The simulator counts its limit per vendor minute; the time scale
            # makes that minute last one of our windows.
            "--time-scale", repr(options.rate.time_scale),
            "--rate-limit", str(options.rate.limit),
            "--latency", options.latency,
            "--seed", str(options.seed),
        )  # fmt: skip
        # Output to a file rather than a pipe: nobody reads a pipe after the
        # first line, and a full pipe would stall the simulator mid-run.
        self._child = Child(args, env, log)
        self._log = log
        self.url = self._wait_for_url()

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._child.poll() is not None:
                raise RuntimeError(f"the simulator exited at start: {self._tail()}")
            for line in self._log.read_text(errors="replace").splitlines():
                if _LISTENING in line:
                    url = line.rsplit(_LISTENING, 1)[1].strip()
                    # Loopback only: the benchmark sends nothing anywhere else.
                    if not url.startswith("http://127.0.0.1:"):
                        self.stop()
                        raise RuntimeError(f"the simulator is not on loopback: {url}")
                    return url
            time.sleep(POLL_S)
        self.stop()
        raise RuntimeError(f"the simulator printed no URL in {START_TIMEOUT_S:.0f} s")

    def _tail(self) -> str:
        return self._log.read_text(errors="replace")[-500:].strip()

    def requests(self) -> dict[str, Any]:
        """``GET /_sim/requests``: every arrival (``mono`` times) and the exact counters."""
        url = f"{self.url}/_sim/requests"
        with urllib.request.urlopen(url, timeout=INSPECT_TIMEOUT_S) as response:  # noqa: S310 - loopback URL checked above
            document: dict[str, Any] = json.load(response)
        return document

    def stop(self) -> None:
        self._child.kill()
