"""The fleet benchmark: N worker processes drain one backlog through one allowance.

Per configuration: a fresh redis-server, a fresh simulator holding exactly
the backlog's numbers, the backlog queued by the real importer, then N
``python -m worker run --until-empty`` processes started together and timed
until the last one exits. The simulator judges the rate (it stamps every
arrival on its own clock); the kernel reports each worker's CPU time and
peak RSS when it is reaped; Redis reports its own CPU.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.environment import RateSettings, base_env, product_env
from bench.importing import import_file
from bench.measures import max_in_window, utilization
from bench.processes import Child, Usage, python_module, wait_all
from bench.redis_server import fresh_redis, sample, stream_length
from bench.simulator import SimulatorOptions, SimulatorProcess
from worker.config.settings import DEFAULT_ACCOUNT, DEFAULT_KEY_PREFIX
from worker.store.keys import AccountKeys

KEYS = AccountKeys(DEFAULT_KEY_PREFIX, DEFAULT_ACCOUNT)
# Past this many ideal drain times (plus start-up) the run is stuck, not slow.
_TIMEOUT_FACTOR = 3.0
_TIMEOUT_SLACK_S = 60.0
_IDLE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class FleetOptions:
    rate: RateSettings
    jobs: int
    latency: str
    seed: int
    concurrency: int

    @property
    def ideal_drain_s(self) -> float:
        """The physical limit the brief names: N jobs at ``limit`` per ``window``."""
        return self.jobs * self.rate.window_s / self.rate.limit


@dataclass(frozen=True)
class FleetResult:
    processes: int
    jobs: int
    sent: int  # delete requests that reached the simulator, retries included
    token_requests: int
    violations: int  # the simulator's: arrivals beyond the limit in their window
    max_in_window: int  # the simulator's, over every window it saw
    utilization: float | None
    drain_s: float  # first worker started to last worker exited
    ideal_drain_s: float
    drain_ratio: float
    send_span_s: float  # first to last arrival at the simulator
    worker_cpu_s: float
    worker_sys_share: float  # of worker_cpu_s, the kernel's part (syscalls, loopback TCP)
    cpu_ms_per_job: float
    startup_cpu_s: float  # one worker that starts, finds nothing queued, and exits
    net_cpu_ms_per_job: float
    peak_rss_mib: float  # the largest of the processes' peaks
    mean_peak_rss_mib: float
    redis_cpu_ms_per_job: float
    done: int  # entries in the results stream
    dead: int  # entries in the dead-letter stream
    exit_codes: list[int]


def start_workers(count: int, env: dict[str, str], run_dir: Path, name: str) -> list[Child]:
    command = python_module("worker", "run", "--until-empty")
    return [Child(command, env, worker_log(run_dir, name, i)) for i in range(count)]


def worker_log(run_dir: Path, name: str, index: int) -> Path:
    return run_dir / f"{name}-{index}.log"


def delete_arrivals(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in report["requests"] if r["endpoint"] == "delete"]


def run_timeout_s(ideal_drain_s: float) -> float:
    """Past this, the run is stuck (or the machine is too slow for it), not slow."""
    return _TIMEOUT_FACTOR * ideal_drain_s + _TIMEOUT_SLACK_S


@dataclass(frozen=True)
class WorkerRun:
    """N worker processes started together, and what they cost."""

    usages: list[Usage]
    started: float  # time.monotonic() as the first worker started
    drain_s: float  # first worker started to last worker exited (or was killed)
    redis_cpu_s: float  # redis-server's own CPU meanwhile


def run_workers(
    processes: int,
    env: dict[str, str],
    run_dir: Path,
    redis_url: str,
    timeout_s: float,
    watch: Callable[[list[Child]], AbstractContextManager[object]] | None = None,
) -> WorkerRun:
    """Start ``processes`` workers on what is queued and reap them all; ``watch``
    runs beside them (sampling them, say) from start to exit."""
    before = sample(redis_url)
    started = time.monotonic()
    workers = start_workers(processes, env, run_dir, "worker")
    with nullcontext() if watch is None else watch(workers):
        usages = wait_all(workers, timeout_s)
    drain_s = max(w.started + u.wall_s for w, u in zip(workers, usages, strict=True)) - started
    after = sample(redis_url)
    return WorkerRun(usages, started, drain_s, after.cpu_s - before.cpu_s)


def measure_idle(env: dict[str, str], run_dir: Path) -> Usage:
    """The fixed cost of a process (interpreter, imports, connecting, a token,
    shutdown): one worker on an empty queue, so that it can be told apart
    from the cost of the jobs."""
    (idle,) = wait_all(start_workers(1, env, run_dir, "idle-worker"), _IDLE_TIMEOUT_S)
    return idle


def net_cpu_ms(usages: Sequence[Usage], idle: Usage, count: int) -> float:
    """The workers' CPU less one idle process's per worker, in ms per ``count``."""
    return 1000 * (sum(u.cpu_s for u in usages) - len(usages) * idle.cpu_s) / count


def run_fleet(
    options: FleetOptions, processes: int, workdir: Path, csv: Path, campaigns: Path
) -> FleetResult:
    run_dir = workdir / f"fleet-{processes}"
    run_dir.mkdir(parents=True, exist_ok=True)
    rate, jobs = options.rate, options.jobs
    with fresh_redis(run_dir / "redis") as server:
        sim = SimulatorProcess(
            campaigns,
            SimulatorOptions(rate, options.latency, options.seed),
            run_dir / "simulator.log",
            base_env(),
        )
        try:
            env = product_env(server.url, sim.url, rate, options.concurrency)
            import_file(env, csv, run_dir / "import.log", jobs)
            run = run_workers(
                processes, env, run_dir, server.url, run_timeout_s(options.ideal_drain_s)
            )
            report = sim.requests()
            # Every arrival as the simulator saw it, for a look at the
            # violations with --workdir.
            (run_dir / "requests.json").write_text(json.dumps(report), encoding="utf-8")
            done = stream_length(server.url, KEYS.results)
            dead = stream_length(server.url, KEYS.dlq)
            idle = measure_idle(env, run_dir)
        finally:
            sim.stop()
    return _result(options, processes, run, idle, report, done, dead)


def _result(
    options: FleetOptions,
    processes: int,
    run: WorkerRun,
    idle: Usage,
    report: dict[str, Any],
    done: int,
    dead: int,
) -> FleetResult:
    rate, jobs = options.rate, options.jobs
    usages, drain_s = run.usages, run.drain_s
    arrivals = [float(r["mono"]) for r in delete_arrivals(report)]
    cpu_s = sum(u.cpu_s for u in usages)
    peaks = [u.peak_rss_bytes / 2**20 for u in usages]
    # Recomputed from the log as a cross-check of the simulator's counter;
    # the two differ only if the log was capped (over 200,000 requests).
    measured_max = max_in_window(arrivals, rate.window_s)
    return FleetResult(
        processes=processes,
        jobs=jobs,
        sent=len(arrivals),
        token_requests=sum(1 for r in report["requests"] if r["endpoint"] == "token"),
        violations=int(report["violations"]),
        max_in_window=max(int(report["max_in_window"]), measured_max),
        utilization=utilization(arrivals, rate.limit, rate.window_s),
        drain_s=drain_s,
        ideal_drain_s=options.ideal_drain_s,
        drain_ratio=drain_s / options.ideal_drain_s,
        send_span_s=max(arrivals) - min(arrivals) if arrivals else 0.0,
        worker_cpu_s=cpu_s,
        worker_sys_share=sum(u.sys_s for u in usages) / cpu_s if cpu_s else 0.0,
        cpu_ms_per_job=1000 * cpu_s / jobs,
        startup_cpu_s=idle.cpu_s,
        net_cpu_ms_per_job=net_cpu_ms(usages, idle, jobs),
        peak_rss_mib=max(peaks),
        mean_peak_rss_mib=sum(peaks) / len(peaks),
        redis_cpu_ms_per_job=1000 * run.redis_cpu_s / jobs,
        done=done,
        dead=dead,
        exit_codes=[u.exit_code for u in usages],
    )
