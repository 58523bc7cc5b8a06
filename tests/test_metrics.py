"""The metrics: a worker's own series and the exporter's account-wide ones.

Both expositions are read through prometheus_client's own parser and linted
by ``promtool check metrics``; the numbers are compared with what the
simulator saw and what Redis holds.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from tests.conftest import Simulator, make_settings
from worker.accounts.control import pause_account
from worker.config.settings import Settings
from worker.metrics import process
from worker.metrics.catalog import ACCOUNT_STATES, BY_NAME, FAMILIES, OUTCOME_REASONS
from worker.metrics.exporter import create_exporter_app
from worker.pool.heartbeat import Heartbeat
from worker.pool.workers import run_pool
from worker.queue.producer import Producer
from worker.results import dead_letters
from worker.store.connection import Reconnects, redis_client
from worker.store.keys import AccountKeys

CAMPAIGN = "spring_sale"
DELETABLE = ["9845000001", "9845000002", "9845000003"]
MISSING = ["7000000001", "7000000002"]
Client = TestClient[web.Request, web.Application]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition, by name and labels, through the real parser."""
    found: Samples = {}
    for metric in text_string_to_metric_families(text):
        for sample in metric.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def ours(found: Samples) -> Samples:
    return {key: v for key, v in found.items() if key[0].startswith("ozp_")}


def promtool_lint(text: str) -> None:
    """``promtool check metrics`` finds nothing to say about ``text``."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed (Debian package prometheus)")
        pytest.skip("needs promtool (Debian package prometheus)")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")


@pytest.fixture
def exporter_client(app_client: Any) -> Callable[[Settings, Redis], Awaitable[Client]]:
    async def make(settings: Settings, redis: Redis) -> Client:
        return cast(Client, await app_client(create_exporter_app(settings, redis)))

    return make


async def test_a_worker_counts_what_it_did_and_the_counts_need_no_redis(
    redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> None:
    sim: Simulator = await simulator_factory(campaigns={CAMPAIGN: set(DELETABLE)}, time_scale=30)
    settings = make_settings(redis_url, key_prefix, base_url=sim.url)
    await Producer(redis, key_prefix=key_prefix).enqueue_many(
        [(CAMPAIGN, phone) for phone in [*DELETABLE, *MISSING]]
    )
    # A failure noted by an earlier test's client (the flag is per process)
    # must not read as a reconnect of this run.
    Reconnects.lost = False
    before = samples(process.exposition().decode())

    await asyncio.wait_for(run_pool(settings, redis, asyncio.Event(), until_empty=True), 60)
    text = process.exposition().decode()
    after = samples(text)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    sent = [r for r in (await sim.inspect())["requests"] if r["endpoint"] == "delete"]
    assert len(sent) == 5
    assert grew("ozp_requests_total", account="default", answer="deleted") == 3
    assert grew("ozp_requests_total", account="default", answer="not_found") == 2
    assert grew("ozp_permits_total", account="default", result="used") == len(sent)
    assert grew("ozp_request_duration_seconds_count", account="default") == len(sent)
    assert grew("ozp_permit_wait_seconds_count", account="default") >= len(sent)
    assert grew("ozp_outcomes_total", account="default", outcome="deleted", reason="") == 3
    assert grew("ozp_redis_reconnects_total") == 0  # no outage, no reconnect
    assert grew("ozp_outcomes_total", account="default", outcome="dead", reason="no_record") == 2
    # Every outcome and reason series exists, at zero if nothing happened.
    for outcome, reason in OUTCOME_REASONS:
        labels = {"account": "default", "outcome": outcome, "reason": reason}
        assert ("ozp_outcomes_total", frozenset(labels.items())) in after
    # The counters live in this process: losing every key in Redis changes nothing.
    async for key in redis.scan_iter(f"{key_prefix}:*"):
        await redis.delete(key)
    assert ours(samples(process.exposition().decode())) == ours(after)
    assert not any(name.startswith("ozp_queue") for name, _ in after)
    promtool_lint(text)


def test_the_account_wide_families_are_gauges_and_each_family_is_documented() -> None:
    # A gauge read from Redis may go down after a restart that lost a write;
    # a counter must not, so no account-wide family is a counter.
    assert {f.kind for f in FAMILIES if f.scope == "account"} == {"gauge"}
    for spec in FAMILIES:
        assert spec.name.startswith("ozp_") and spec.help.endswith(".")
        assert spec.name.endswith("_total") == (spec.kind == "counter"), spec.name
    assert len(BY_NAME) == len(FAMILIES)


async def test_the_exporter_reports_what_redis_holds(
    redis: Redis,
    redis_url: str,
    key_prefix: str,
    simulator_factory: Any,
    exporter_client: Callable[[Settings, Redis], Awaitable[Client]],
) -> None:
    sim: Simulator = await simulator_factory(campaigns={CAMPAIGN: set(DELETABLE)}, time_scale=30)
    settings = make_settings(redis_url, key_prefix, base_url=sim.url, token_budget=7)
    keys = AccountKeys(key_prefix, "default")
    producer = Producer(redis, key_prefix=key_prefix)
    await producer.enqueue_many([(CAMPAIGN, p) for p in [*DELETABLE[:2], *MISSING]])
    await asyncio.wait_for(run_pool(settings, redis, asyncio.Event(), until_empty=True), 60)
    await producer.enqueue_many([(CAMPAIGN, "9845000011"), (CAMPAIGN, "9845000012")])
    # The oldest urgent job entered its lane ten minutes ago, by its entry id.
    seconds, _ = await redis.time()
    old = {"v": "1", "id": "old", "campaign": CAMPAIGN, "phone": "98450199"}
    await redis.xadd(keys.urgent, old, id=f"{(int(seconds) - 600) * 1000}-0")
    await producer.enqueue(CAMPAIGN, "9845000013", urgent=True)
    # A due retry on its lane, and one still waiting for its time.
    await redis.xadd(keys.retry, {"v": "1", "id": "r-1", "campaign": CAMPAIGN, "phone": "1234567"})
    await redis.zadd(keys.delayed, {'{"job": "r-2", "fields": {}}': 9_999_999_999_999})
    await pause_account(redis, keys, "maintenance")
    await Heartbeat(redis, keys, "host-a:1:abc", sweep_s=30).beat()
    await Heartbeat(redis, keys, "host-b:2:def", sweep_s=30).beat()
    gone = Heartbeat(redis, keys, "host-c:3:fed", sweep_s=30)
    await gone.beat()
    await gone.stop()

    client = await exporter_client(settings, redis)
    response = await client.get("/metrics")
    text = await response.text()
    found = samples(text)

    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    account = {"account": "default"}
    lanes = {"urgent": 2, "bulk": 2, "retry": 1, "delayed": 1, "in_flight": 0}
    for lane, jobs in lanes.items():
        assert value(found, "ozp_queue_jobs", lane=lane, **account) == jobs, lane
    queue_series = {labels for name, labels in found if name == "ozp_queue_jobs"}
    assert len(queue_series) == len(lanes)
    assert value(found, "ozp_dead_letters", reason="no_record", **account) == 2
    assert [n for n, _ in found].count("ozp_dead_letters") == 1
    for state in ACCOUNT_STATES:
        assert value(found, "ozp_account_state", state=state, **account) == (state == "paused")
    assert value(found, "ozp_workers", **account) == 2
    assert value(found, "ozp_token_budget", **account) == 7
    assert value(found, "ozp_token_budget_used", **account) == 1
    assert 0 < value(found, "ozp_token_expiry_seconds", **account) <= 3600 / 30
    assert value(found, "ozp_rate_limit", **account) == 100
    # Four requests in this window of 2 s (the tests' vendor minute), or none
    # if the drain ended a window ago: never more than the limit.
    assert 0 <= value(found, "ozp_allowance_used_ratio", **account) <= 0.04
    assert 600 <= value(found, "ozp_oldest_job_age_seconds", lane="urgent", **account) < 900
    assert value(found, "ozp_oldest_job_age_seconds", lane="in_flight", **account) == 0
    # Six jobs outstanding (delayed included) at 100 per 2 s: 1 s, rounded up.
    assert value(found, "ozp_eta_seconds", **account) == 1
    assert value(found, "ozp_redis_up") == 1
    promtool_lint(text)


async def test_the_exporter_answers_without_redis_and_says_so(
    key_prefix: str, exporter_client: Callable[[Settings, Redis], Awaitable[Client]]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    async with redis_client(url) as down:
        client = await exporter_client(make_settings(url, key_prefix), down)
        response = await client.get("/metrics")
        text = await response.text()
        found = samples(text)
        ready = await client.get("/readyz")
    assert response.status == 200 and ready.status == 503
    assert value(found, "ozp_redis_up") == 0
    assert not any(name.startswith("ozp_") and name != "ozp_redis_up" for name, _ in found)
    promtool_lint(text)


async def held_reasons(redis: Redis, keys: AccountKeys) -> Counter[str]:
    letters = await redis.xrange(keys.dlq)
    return Counter(fields.get("reason", "") for _, fields in letters)


async def test_dead_letter_counts_stay_exact_through_replay_purge_and_trimming(
    redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> None:
    sim: Simulator = await simulator_factory(campaigns={CAMPAIGN: set()}, time_scale=30)
    settings = make_settings(redis_url, key_prefix, base_url=sim.url)
    keys = AccountKeys(key_prefix, "default")
    producer = Producer(redis, key_prefix=key_prefix)
    await producer.enqueue_many([(CAMPAIGN, f"70000000{n:02d}") for n in range(5)])
    # Two entries refused before sending: dead letters of other reasons.
    await redis.xadd(keys.bulk, {"garbage": "1"})
    await redis.xadd(keys.bulk, {"v": "1", "id": "x", "campaign": "", "phone": "1"})
    await asyncio.wait_for(run_pool(settings, redis, asyncio.Event(), until_empty=True), 60)

    async def counted() -> Counter[str]:
        return Counter({k: int(v) for k, v in (await redis.hgetall(keys.dlq_reasons)).items()})

    assert await counted() == await held_reasons(redis, keys)
    assert (await counted())["no_record"] == 5 and (await counted()).total() == 7

    replayed = await dead_letters.replay(redis, keys, reason="no_record", limit=1)
    assert replayed.replayed == 1
    assert await counted() == await held_reasons(redis, keys)
    assert (await counted())["no_record"] == 4

    assert await dead_letters.purge(redis, keys, reason="no_record") == 4
    assert await counted() == await held_reasons(redis, keys)
    assert "no_record" not in await counted()

    # Capped at two: the replayed job and three more dead letters later, the
    # stream keeps the newest two, and the counts keep with it.
    await producer.enqueue_many([(CAMPAIGN, f"70000001{n:02d}") for n in range(3)])
    capped = make_settings(redis_url, key_prefix, {"stream_maxlen": 2}, base_url=sim.url)
    await asyncio.wait_for(run_pool(capped, redis, asyncio.Event(), until_empty=True), 60)
    assert await redis.xlen(keys.dlq) == 2
    assert await counted() == await held_reasons(redis, keys) == Counter(no_record=2)

    await dead_letters.purge(redis, keys)
    assert await redis.exists(keys.dlq_reasons) == 0
