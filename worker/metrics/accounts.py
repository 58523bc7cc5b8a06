"""Account-wide metrics, read from Redis at scrape time: what the ``exporter`` serves.

One exporter per Redis: these series describe shared state (the backlog, the
dead letters, the token), so a second exporter would count it twice in any
``sum``. The workers never serve them. Every number here is a gauge; the
counters of what happened live in the workers' own registries, in memory,
where a Redis restart cannot make them go down.

Times come from the Redis server's clock, the clock the limiter, the token
store and the heartbeats are stamped with.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from redis.asyncio import Redis
from redis.exceptions import RedisError

from worker.accounts.status import (
    account_settings,
    account_state,
    eta_seconds,
    known_accounts,
    server_time_ms,
)
from worker.config.settings import Settings
from worker.limiter.permits import Limiter
from worker.logs import WarningSampler, get_logger
from worker.metrics.catalog import ACCOUNT_STATES, AGED_LANES, family
from worker.pool.heartbeat import live_workers
from worker.queue.lanes import Queue
from worker.results.records import stored_int
from worker.store.keys import CONSUMER_GROUP, LANES, AccountKeys

log = get_logger(__name__)

# The exporter's own process metrics; the account series are made per scrape.
PROCESS_REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=PROCESS_REGISTRY)
PlatformCollector(registry=PROCESS_REGISTRY)
GCCollector(registry=PROCESS_REGISTRY)

# One exporter.redis_failed line per this many seconds.
FAILURE_LOG_PERIOD_S = 30.0
_failures = WarningSampler(FAILURE_LOG_PERIOD_S)


@dataclass
class AccountView:
    """One account's numbers at one scrape."""

    name: str
    queue: dict[str, int] = field(default_factory=dict)  # lane -> jobs
    oldest_age_s: dict[str, float] = field(default_factory=dict)  # lane -> age
    dead_letters: dict[str, int] = field(default_factory=dict)  # reason -> letters
    eta_s: int = 0
    allowance_used: float = 0.0
    rate_limit: int = 0
    state: str = "running"
    token_expiry_s: float | None = None
    token_budget_used: int = 0
    token_budget: int = 0
    workers: int = 0


async def read_account(redis: Redis, settings: Settings, name: str, now_ms: int) -> AccountView:
    account = account_settings(settings, name)
    keys = AccountKeys(settings.key_prefix, name)
    counts = await Queue(redis, keys).counts()
    view = AccountView(name=name)
    view.queue = {
        "urgent": counts.urgent,
        "bulk": counts.bulk,
        "retry": counts.retry,
        "delayed": counts.scheduled,
        "in_flight": counts.in_flight,
    }
    view.oldest_age_s = await oldest_ages(redis, keys, now_ms)
    window_ms = round(account.token_budget_window_s * 1000)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.dlq_reasons)
        pipe.exists(keys.halted)
        pipe.exists(keys.paused)
        pipe.exists(keys.token_wait)
        pipe.hget(keys.token, "exp_ms")
        pipe.zcount(keys.token_generations, now_ms - window_ms, now_ms)
        reasons, halted, paused, token_wait, exp_ms, generations = await pipe.execute()
    view.dead_letters = {
        str(reason) or "unknown": count
        for reason, raw in reasons.items()
        if (count := stored_int(raw) or 0) > 0
    }
    view.state = account_state(halted, paused, token_wait)
    expires_ms = stored_int(exp_ms)
    view.token_expiry_s = (expires_ms - now_ms) / 1000 if expires_ms is not None else None
    view.token_budget_used = int(generations)
    view.token_budget = account.token_budget
    now_s = now_ms / 1000
    granted = await Limiter(redis, keys, account).granted_between(
        now_s - account.rate_window_s, now_s
    )
    view.rate_limit = account.rate_limit
    view.allowance_used = granted / account.rate_limit
    view.eta_s = eta_seconds(counts.outstanding, account) or 0
    view.workers = await live_workers(redis, keys, now_ms)
    return view


async def oldest_ages(redis: Redis, keys: AccountKeys, now_ms: int) -> dict[str, float]:
    """Per aged lane, the age of its oldest job from its entry id (0 when empty).

    Waiting jobs are the entries after the group's last delivered id (the
    lanes delete an entry once it is recorded, so what remains before that id
    is held); held jobs are the pending entries, oldest first.
    """
    async with redis.pipeline(transaction=False) as pipe:
        for lane in LANES:
            pipe.xinfo_groups(keys.lane(lane))
            pipe.xpending(keys.lane(lane), CONSUMER_GROUP)
        replies = await pipe.execute(raise_on_error=False)
    last_delivered: dict[str, str] = {}
    held_since: list[int] = []
    for index, lane in enumerate(LANES):
        groups, pending = replies[2 * index], replies[2 * index + 1]
        last_delivered[lane] = "0-0"
        if isinstance(groups, list):
            for group in groups:
                if isinstance(group, dict) and group.get("name") == CONSUMER_GROUP:
                    last_delivered[lane] = str(group.get("last-delivered-id") or "0-0")
        if isinstance(pending, dict) and pending.get("pending"):
            stamp = entry_ms(str(pending.get("min") or ""))
            if stamp is not None:
                held_since.append(stamp)
    async with redis.pipeline(transaction=False) as pipe:
        for lane in LANES:
            pipe.xrange(keys.lane(lane), min=f"({last_delivered[lane]}", count=1)
        firsts = await pipe.execute(raise_on_error=False)
    ages = dict.fromkeys(AGED_LANES, 0.0)
    for lane, first in zip(LANES, firsts, strict=True):
        if isinstance(first, list) and first:
            stamp = entry_ms(str(first[0][0]))
            if stamp is not None:
                ages[lane] = max((now_ms - stamp) / 1000, 0.0)
    if held_since:
        ages["in_flight"] = max((now_ms - min(held_since)) / 1000, 0.0)
    return ages


def entry_ms(entry_id: str) -> int | None:
    """The milliseconds part of a stream entry id; None if it is not one."""
    head = entry_id.partition("-")[0]
    return int(head) if head.isascii() and head.isdigit() and len(head) <= 15 else None


async def read_accounts(redis: Redis, settings: Settings) -> list[AccountView]:
    now_ms = await server_time_ms(redis)
    names = await known_accounts(redis, settings)
    return [await read_account(redis, settings, name, now_ms) for name in names]


class Snapshot:
    """A prometheus_client collector over the views read at one scrape."""

    def __init__(self, views: list[AccountView] | None) -> None:
        self._views = views  # None: Redis could not be read

    def collect(self) -> Iterator[Metric]:
        up = _gauge("ozp_redis_up")
        up.add_metric([], 1 if self._views is not None else 0)
        yield up
        if self._views is None:
            return
        views = self._views
        queue, ages = _gauge("ozp_queue_jobs"), _gauge("ozp_oldest_job_age_seconds")
        dead, eta = _gauge("ozp_dead_letters"), _gauge("ozp_eta_seconds")
        allowance, limit = _gauge("ozp_allowance_used_ratio"), _gauge("ozp_rate_limit")
        state, expiry = _gauge("ozp_account_state"), _gauge("ozp_token_expiry_seconds")
        used, budget = _gauge("ozp_token_budget_used"), _gauge("ozp_token_budget")
        workers = _gauge("ozp_workers")
        for view in views:
            name = view.name
            for lane, jobs in view.queue.items():
                queue.add_metric([name, lane], jobs)
            for lane, age in view.oldest_age_s.items():
                ages.add_metric([name, lane], age)
            for reason, letters in sorted(view.dead_letters.items()):
                dead.add_metric([name, reason], letters)
            eta.add_metric([name], view.eta_s)
            allowance.add_metric([name], view.allowance_used)
            limit.add_metric([name], view.rate_limit)
            for each in ACCOUNT_STATES:
                state.add_metric([name, each], 1 if each == view.state else 0)
            if view.token_expiry_s is not None:
                expiry.add_metric([name], view.token_expiry_s)
            used.add_metric([name], view.token_budget_used)
            budget.add_metric([name], view.token_budget)
            workers.add_metric([name], view.workers)
        yield from (queue, ages, dead, eta, allowance, limit, state, expiry, used, budget, workers)


def _gauge(name: str) -> GaugeMetricFamily:
    spec = family(name)
    assert spec.kind == "gauge" and spec.scope == "account", name
    return GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)


async def exposition(redis: Redis, settings: Settings) -> bytes:
    """The exporter's ``/metrics``: every account's series, then its own process's."""
    views: list[AccountView] | None
    try:
        views = await read_accounts(redis, settings)
    except (RedisError, OSError) as exc:
        views = None
        held = _failures.admit(time.monotonic())
        if held is not None:
            log.warning("exporter.redis_failed", error=exc, also_since_last=held)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot(views))
    return generate_latest(registry) + generate_latest(PROCESS_REGISTRY)
