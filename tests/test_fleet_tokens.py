"""One token for all processes: one generation per expiry, no storm when
another system takes the token, and a pause (not a hammer) when the budget
is spent."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.conftest import eventually
from tests.fleet import (
    FLEET_LIMIT,
    FLEET_TIME_SCALE,
    Fleet,
    SimProcess,
    sim_post,
    sim_report,
    worker_env,
    write_campaigns,
)
from worker.queue.jobs import make_job
from worker.queue.lanes import Queue
from worker.store.keys import AccountKeys

pytestmark = pytest.mark.slow

SIM_RATE = ("--time-scale", str(FLEET_TIME_SCALE), "--rate-limit", str(FLEET_LIMIT))
REFUSALS = {"Token Expired", "Invalid Token"}


async def start(
    redis: Redis, prefix: str, tmp_path: Path, jobs: int, *sim_options: str
) -> tuple[SimProcess, AccountKeys, list[str]]:
    phones = [f"98450{i:05d}" for i in range(jobs)]
    sim = await SimProcess.start(
        write_campaigns(tmp_path / "c.json", {"c": phones}), *SIM_RATE, *sim_options
    )
    keys = AccountKeys(prefix, "default")
    await Queue(redis, keys).enqueue_many(make_job("c", p) for p in phones)
    return sim, keys, phones


async def test_four_processes_generate_one_token_per_expiry(
    redis: Redis, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    # Tokens live 60 vendor seconds: 4 s here; the run lasts about six of them.
    sim, keys, phones = await start(redis, key_prefix, tmp_path, 240, "--token-ttl-s", "60")
    fleet = Fleet(worker_env(redis_url, key_prefix, sim.url), tmp_path)
    try:
        await fleet.start(4)
        assert await fleet.wait(90) == [0, 0, 0, 0]
    finally:
        await fleet.stop_all()
        report = await sim_report(sim.url)
        await sim.stop()

    tokens = sorted(report["tokens"], key=lambda t: t["iat"])
    lifetime = tokens[0]["exp"] - tokens[0]["iat"]
    assert len(tokens) >= 4
    # One generation per expiry, late in each token's life: the JWT's
    # whole-second claims blur each gap by up to a second.
    for older, newer in itertools.pairwise(tokens):
        assert newer["iat"] - older["iat"] >= 0.8 * lifetime - 1, tokens
    refused = [r for r in report["requests"] if r["message"] in REFUSALS]
    assert len(refused) <= (len(tokens) - 1) * 16
    results = [f for _, f in await redis.xrange(keys.results)]
    assert sorted(f["phone"] for f in results) == sorted(phones)
    assert {(f["outcome"], f["attempts"]) for f in results} == {("deleted", "1")}


async def test_a_token_taken_by_another_system_is_replaced_once(
    redis: Redis, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    sim, keys, phones = await start(redis, key_prefix, tmp_path, 200)
    fleet = Fleet(worker_env(redis_url, key_prefix, sim.url), tmp_path)
    try:
        await fleet.start(4)

        async def some_done() -> bool:
            return int(await redis.xlen(keys.results)) >= 60

        await eventually(some_done)
        await sim_post(sim.url, "tokens/issue", {"userName": "demo"})
        assert await fleet.wait(90) == [0, 0, 0, 0]
    finally:
        await fleet.stop_all()
        report = await sim_report(sim.url)
        await sim.stop()

    # Ours, the other system's, and exactly one more of ours: no storm.
    assert len(report["tokens"]) == 3
    assert report["generations"] == 3
    results = [f for _, f in await redis.xrange(keys.results)]
    assert sorted(f["phone"] for f in results) == sorted(phones)
    assert {f["outcome"] for f in results} == {"deleted"}


async def test_a_spent_budget_pauses_every_process_with_a_visible_reason(
    redis: Redis, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    sim, keys, _ = await start(
        redis, key_prefix, tmp_path, 400, "--token-ttl-s", "60", "--token-budget", "2"
    )
    env = worker_env(redis_url, key_prefix, sim.url, OZP_TOKEN_BUDGET="2")
    fleet = Fleet(env, tmp_path)
    try:
        await fleet.start(3, args=())
        await eventually(lambda: redis.exists(keys.token_wait), timeout_s=60)
        status = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "worker", "status", "--json",
            env=env, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await status.communicate()

        # The last token stays valid until its exp, and may be used until
        # then; from that moment on, not one request.
        async def last_token_expired() -> bool:
            seconds, micros = await redis.time()
            exp_ms = int(await redis.hget(keys.token, "exp_ms") or 0)
            return seconds * 1000 + micros // 1000 > exp_ms + 500

        await eventually(last_token_expired)
        before = len((await sim_report(sim.url))["requests"])
        await asyncio.sleep(2.0)
        after = await sim_report(sim.url)
    finally:
        await fleet.stop_all()
        await sim.stop()

    token = json.loads(out)["accounts"]["default"]["token"]
    assert "budget" in (token["waiting"] or ""), token
    assert token["generations_in_window"] == 2 and token["budget"] == 2
    # Never a third generation, and no request at all while paused.
    assert after["generations"] == 2
    assert len(after["requests"]) == before
