"""The Ozonetel simulator as a process of its own, and its inspection endpoint.

A separate process, so that it stamps arrivals on its own event loop and
clock, unslowed by the benchmark and unaffected by the workers' scheduling:
its ``violations`` and ``max_in_window`` are the server's view, the one the
vendor would have.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.environment import RateSettings
from bench.processes import POLL_S, Child, Usage, python_module
from worker import simulator
from worker.simulator.config import DEFAULT_REQUEST_LOG_LIMIT

START_TIMEOUT_S = 20.0
INSPECT_TIMEOUT_S = 30.0
_LISTENING = "listening on "


@dataclass(frozen=True)
class SimulatorOptions:
    rate: RateSettings
    latency: str
    seed: int


class SimulatorProcess:
    """The simulator on a free loopback port, stopped by :meth:`stop`.

    ``python -m worker simulate``, which serves one account (``demo``); with
    ``accounts`` (a JSON file of user name -> API key), this module's own
    :func:`main`, which serves those accounts through the same simulator.
    """

    def __init__(
        self,
        campaigns: Path,
        options: SimulatorOptions,
        log: Path,
        env: Mapping[str, str],
        accounts: Path | None = None,
    ) -> None:
        flags = [
            "--host", "127.0.0.1",
            "--port", "0",
            "--campaigns", str(campaigns),
            # The simulator counts its limit per vendor minute; the time scale
            # makes that minute last one of our windows.
            "--time-scale", repr(options.rate.time_scale),
            "--rate-limit", str(options.rate.limit),
            "--latency", options.latency,
            "--seed", str(options.seed),
        ]  # fmt: skip
        if accounts is None:
            args = python_module("worker", "simulate", *flags)
        else:
            args = python_module(__name__, "--accounts", str(accounts), *flags)
            # The child imports this module by name, from wherever it runs.
            env = {**env, "PYTHONPATH": _package_root(env)}
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

    @property
    def usage(self) -> Usage | None:
        """Its CPU time and peak RSS, once stopped; it shares the machine with the workers."""
        return self._child.usage


def _package_root(env: Mapping[str, str]) -> str:
    root = str(Path(__file__).resolve().parent.parent)
    inherited = env.get("PYTHONPATH")
    return f"{root}{os.pathsep}{inherited}" if inherited else root


def main(argv: Sequence[str] | None = None) -> None:
    """The simulator serving every account of a JSON file (user name -> API key).

    ``python -m worker simulate`` serves one account; the vendor's limit is
    per API key, so a benchmark of many accounts needs a simulator that
    knows them all, counting each key's arrivals apart.
    """
    p = argparse.ArgumentParser(prog=f"python -m {__name__}")
    p.add_argument("--accounts", type=Path, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--campaigns", required=True)
    p.add_argument("--time-scale", type=float, default=1.0)
    p.add_argument("--rate-limit", type=int, default=100)
    p.add_argument("--latency", default="0")
    p.add_argument("--seed", type=int, default=None)
    args = p.parse_args(argv)
    keys: dict[str, str] = json.loads(args.accounts.read_text(encoding="utf-8"))
    campaigns = simulator.load_campaigns(args.campaigns)
    config = simulator.SimulatorConfig(
        accounts={user: simulator.AccountSpec(key) for user, key in keys.items()},
        campaigns=campaigns,
        time_scale=args.time_scale,
        rate_limit=args.rate_limit,
        latency=simulator.parse_latency(args.latency),
        seed=args.seed,
        # Every arrival of the run, tokens included, so that each account's
        # arrivals can be judged from the log (the counters are global).
        request_log_limit=max(DEFAULT_REQUEST_LOG_LIMIT, 2 * sum(map(len, campaigns.values()))),
    )
    simulator.run(config, args.host, args.port)


if __name__ == "__main__":
    main()
