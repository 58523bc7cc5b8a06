"""The tenants benchmark: N accounts, each with its own allowance, on P worker processes.

Per configuration: a fresh redis-server; one simulator that knows all N
accounts and counts each API key's arrivals apart; an ``OZP_CONFIG`` file
with one ``[accounts.NAME]`` per account (its key in a file of its own,
``api_key_file``); every account's backlog queued; then P ``python -m worker
run --until-empty`` processes, each working every account, started together
and timed until the last one exits, or stopped at the fleet's time cap.
Meanwhile the Redis connections of each process are sampled.

Every account has the same backlog, some windows' worth, so the run lasts
about as many windows however many accounts there are; what grows with N is
the allowance, ``N x limit`` per window, and what the processes must do to
use it.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis import Redis

from bench.connections import ConnectionPeaks, sampled
from bench.deletions import CAMPAIGN, phone, write_campaigns
from bench.environment import RateSettings, base_env, global_env, write_accounts_config
from bench.fleet import (
    WorkerRun,
    delete_arrivals,
    measure_idle,
    net_cpu_ms,
    run_timeout_s,
    run_workers,
    worker_log,
)
from bench.measures import max_in_window, over_limit, utilization_or_rate
from bench.processes import Child, Usage
from bench.redis_server import fresh_redis
from bench.simulator import SimulatorOptions, SimulatorProcess
from worker.config.settings import DEFAULT_KEY_PREFIX
from worker.intake.importer import import_jobs
from worker.queue.jobs import Job, make_job, new_job_ids
from worker.queue.lanes import Queue
from worker.store.connection import redis_client
from worker.store.keys import AccountKeys

# Killed at the time cap: expected when the processes cannot keep up.
KILLED = -9
# Lines of a failed worker's log shown under the table.
_TAIL_LINES = 5
_TAIL_CHARS = 400


@dataclass(frozen=True)
class TenantOptions:
    rate: RateSettings
    backlog_windows: int  # each account's backlog, in windows' worth of its limit
    latency: str
    seed: int
    concurrency: int
    # redis-py's max_connections for the workers' pool, as a REDIS_URL query
    # parameter, as an operator would set it; None: the product's own pool.
    redis_max_connections: int | None = None

    @property
    def jobs_per_account(self) -> int:
        return self.backlog_windows * self.rate.limit

    @property
    def ideal_drain_s(self) -> float:
        """Every account's backlog at its own limit, all at once."""
        return self.backlog_windows * self.rate.window_s


@dataclass(frozen=True)
class WorkerFailure:
    worker: str  # its log's name
    exit_code: int
    log_tail: str


@dataclass(frozen=True)
class TenantResult:
    accounts: int
    processes: int
    jobs: int  # queued before the workers started, all accounts
    sent: int  # delete requests that reached the simulator, retries included
    token_requests: int
    allowed_per_s: float  # accounts x limit / window
    sent_per_s: float  # sent over send_s
    max_violations: int  # the most of any account; the simulator's rule
    violations: int  # the simulator's own count, every account
    max_in_window: int  # the most arrivals of one account in any window
    min_utilization: float
    median_utilization: float
    estimated_utilization: int  # accounts whose utilization is the rate-based value
    drain_s: float  # first worker started to last worker exited (or was killed)
    first_request_s: float | None  # first worker started to the first delete's arrival
    send_s: float  # first worker started to the last delete's arrival (drain_s if none)
    ideal_drain_s: float
    timeout_s: float
    capped: bool  # the workers were stopped at timeout_s, work still queued
    worker_cpu_s: float
    startup_cpu_s: float  # one worker, every account configured, nothing queued
    cpu_ms_per_request: float | None  # None when nothing was sent
    net_cpu_ms_per_request: float | None  # None when nothing was sent
    peak_rss_mib: float
    redis_cpu_ms_per_request: float | None  # None when nothing was sent
    max_redis_connections_per_process: int
    max_redis_connections_workers: int  # all worker processes at one sample
    max_redis_clients: int  # the server's INFO clients, at one sample
    connection_samples: int
    done: int  # entries in the results streams, all accounts
    dead: int  # entries in the dead-letter streams
    exit_codes: list[int]
    idle_exit_code: int
    simulator_cpu_s: float | None  # the simulator's CPU over the whole configuration
    failures: list[WorkerFailure] = field(default_factory=list)


def account_names(count: int) -> list[str]:
    width = len(str(count - 1))
    return [f"t{i:0{width}d}" for i in range(count)]


def _api_keys(names: Sequence[str]) -> dict[str, str]:
    # Distinct per account: the vendor counts its limit per API key.
    return {name: f"bench-key-{name}" for name in names}


async def _queue_backlogs(redis_url: str, names: Sequence[str], per_account: int) -> int:
    """Queue each account's backlog through the importer's own path; the
    numbers of account i are the i-th slice of the simulator's campaign."""
    redis = redis_client(redis_url)
    queued = 0
    try:
        for index, name in enumerate(names):
            first = index * per_account
            ids = new_job_ids(per_account)
            jobs: list[Job] = [
                make_job(CAMPAIGN, phone(n), f"row {n}", ids[n - first], caller_id=False)
                for n in range(first, first + per_account)
            ]
            keys = AccountKeys(DEFAULT_KEY_PREFIX, name)
            queued += (await import_jobs(Queue(redis, keys), jobs)).queued
    finally:
        await redis.aclose()
    return queued


def _streams(redis_url: str, names: Sequence[str], jobs: int) -> tuple[int, int]:
    """Entries in every account's results and dead-letter streams. Short of
    ``jobs`` (a run stopped at its cap), what is still queued is then dropped,
    so that the idle worker finds nothing to do, as after a complete drain."""
    every = [AccountKeys(DEFAULT_KEY_PREFIX, name) for name in names]
    with Redis.from_url(redis_url, socket_timeout=30) as client:
        pipe = client.pipeline(transaction=False)
        for keys in every:
            pipe.xlen(keys.results)
            pipe.xlen(keys.dlq)
        lengths = pipe.execute()
        done, dead = sum(lengths[0::2]), sum(lengths[1::2])
        if done + dead < jobs:
            for keys in every:
                pipe.delete(keys.urgent, keys.bulk, keys.retry, keys.delayed, keys.pending)
            pipe.execute()
    return done, dead


def _tail(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines()[-_TAIL_LINES:]
    return "\n".join(line[:_TAIL_CHARS] for line in lines)


def _failures(run_dir: Path, usages: Sequence[Usage], capped: bool) -> list[WorkerFailure]:
    failed = []
    for index, usage in enumerate(usages):
        if usage.exit_code == 0 or (capped and usage.exit_code == KILLED):
            continue
        log = worker_log(run_dir, "worker", index)
        failed.append(WorkerFailure(log.name, usage.exit_code, _tail(log)))
    return failed


@dataclass(frozen=True)
class _Measured:
    """What one configuration's run left to judge, before any arithmetic."""

    run_dir: Path
    jobs: int
    run: WorkerRun
    timeout_s: float
    idle: Usage
    report: dict[str, Any]
    peaks: ConnectionPeaks
    done: int
    dead: int
    simulator: Usage | None


def run_tenants(
    options: TenantOptions, accounts: int, processes: int, workdir: Path
) -> TenantResult:
    run_dir = workdir / f"tenants-{accounts}x{processes}"
    run_dir.mkdir(parents=True, exist_ok=True)
    names = account_names(accounts)
    keys_file = run_dir / "simulator-accounts.json"
    keys_file.write_text(json.dumps(_api_keys(names)), encoding="utf-8")
    campaigns = write_campaigns(run_dir / "campaigns.json", accounts * options.jobs_per_account)
    peaks = ConnectionPeaks()
    with fresh_redis(run_dir / "redis") as server:
        sim = SimulatorProcess(
            campaigns,
            SimulatorOptions(options.rate, options.latency, options.seed),
            run_dir / "simulator.log",
            base_env(),
            accounts=keys_file,
        )
        try:
            config = write_accounts_config(
                run_dir / "config" / "accounts.toml", sim.url, options.rate, _api_keys(names)
            )
            url = server.url
            if options.redis_max_connections is not None:
                url += f"?max_connections={options.redis_max_connections}"
            env = {**global_env(url, options.concurrency), "OZP_CONFIG": str(config)}
            jobs = asyncio.run(_queue_backlogs(server.url, names, options.jobs_per_account))

            def watch(workers: list[Child]) -> AbstractContextManager[object]:
                return sampled([w.pid for w in workers], server.url, server.port, peaks)

            timeout_s = run_timeout_s(options.ideal_drain_s)
            run = run_workers(processes, env, run_dir, server.url, timeout_s, watch)
            report = sim.requests()
            (run_dir / "requests.json").write_text(json.dumps(report), encoding="utf-8")
            done, dead = _streams(server.url, names, jobs)
            idle = measure_idle(env, run_dir)
        finally:
            sim.stop()
    measured = _Measured(run_dir, jobs, run, timeout_s, idle, report, peaks, done, dead, sim.usage)
    return _result(options, names, measured)


def _result(options: TenantOptions, names: Sequence[str], m: _Measured) -> TenantResult:
    rate, run = options.rate, m.run
    capped = KILLED in (u.exit_code for u in run.usages)
    # Each account's arrivals, by the name the simulator gives its key.
    arrivals: dict[str, list[float]] = {f"acct:{name}": [] for name in names}
    for record in delete_arrivals(m.report):
        arrivals.setdefault(str(record["api_key_id"]), []).append(float(record["mono"]))
    by_account = list(arrivals.values())
    utilizations = [
        utilization_or_rate(times, rate.limit, rate.window_s, run.drain_s) for times in by_account
    ]
    values = [value for value, _ in utilizations]
    # Arrivals and run.started are both CLOCK_MONOTONIC readings: one clock
    # for every process of the host.
    first = min((min(times) for times in by_account if times), default=None)
    last = max((max(times) for times in by_account if times), default=None)
    send_s = run.drain_s if last is None else last - run.started
    sent = sum(map(len, by_account))
    cpu_s = sum(u.cpu_s for u in run.usages)
    return TenantResult(
        accounts=len(names),
        processes=len(run.usages),
        jobs=m.jobs,
        sent=sent,
        token_requests=sum(1 for r in m.report["requests"] if r["endpoint"] == "token"),
        allowed_per_s=len(names) * rate.limit / rate.window_s,
        sent_per_s=sent / send_s,
        max_violations=max(over_limit(t, rate.limit, rate.window_s) for t in by_account),
        violations=int(m.report["violations"]),
        max_in_window=max(max_in_window(t, rate.window_s) for t in by_account),
        min_utilization=min(values),
        median_utilization=statistics.median(values),
        estimated_utilization=sum(1 for _, estimated in utilizations if estimated),
        drain_s=run.drain_s,
        first_request_s=None if first is None else first - run.started,
        send_s=send_s,
        ideal_drain_s=options.ideal_drain_s,
        timeout_s=m.timeout_s,
        capped=capped,
        worker_cpu_s=cpu_s,
        startup_cpu_s=m.idle.cpu_s,
        cpu_ms_per_request=1000 * cpu_s / sent if sent else None,
        net_cpu_ms_per_request=net_cpu_ms(run.usages, m.idle, sent) if sent else None,
        peak_rss_mib=max(u.peak_rss_bytes for u in run.usages) / 2**20,
        redis_cpu_ms_per_request=1000 * run.redis_cpu_s / sent if sent else None,
        max_redis_connections_per_process=m.peaks.max_per_process,
        max_redis_connections_workers=m.peaks.workers_total,
        max_redis_clients=m.peaks.server_clients,
        connection_samples=m.peaks.samples,
        done=m.done,
        dead=m.dead,
        exit_codes=[u.exit_code for u in run.usages],
        idle_exit_code=m.idle.exit_code,
        simulator_cpu_s=None if m.simulator is None else m.simulator.cpu_s,
        failures=_failures(m.run_dir, run.usages, capped),
    )
