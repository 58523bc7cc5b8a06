"""End to end in one process: Redis queue -> limiter -> token -> simulator ->
results and dead letters, all real (our redis-server, the simulator over HTTP)."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from typing import Any

from redis.asyncio import Redis

from tests.conftest import TIME_SCALE, Simulator, eventually, make_settings
from worker.config.settings import Settings
from worker.pool.workers import AccountExit, run_pool
from worker.queue.jobs import Job, make_job
from worker.queue.lanes import Queue
from worker.results.records import dead_letter_view, result_view
from worker.store.keys import AccountKeys

CAMPAIGN = "spring_sale"
DELETABLE = [f"98450{i:05d}" for i in range(100)]
LEFT_ALONE = [f"98451{i:05d}" for i in range(20)]
UNKNOWN = [f"70000{i:05d}" for i in range(40)]


async def drain(settings: Settings, redis: Redis, timeout_s: float = 60) -> dict[str, AccountExit]:
    stopping = asyncio.Event()
    return await asyncio.wait_for(run_pool(settings, redis, stopping, until_empty=True), timeout_s)


async def read_stream(redis: Redis, key: str) -> list[tuple[str, dict[str, str]]]:
    return [(entry_id, fields) for entry_id, fields in await redis.xrange(key)]


async def _at_least(redis: Redis, stream: str, count: int) -> bool:
    return int(await redis.xlen(stream)) >= count


def sim_config(**changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "campaigns": {CAMPAIGN: set(DELETABLE + LEFT_ALONE)},
        "time_scale": TIME_SCALE,
    }
    config.update(changes)
    return config


async def test_mixed_jobs_drain_to_one_honest_record_each(
    redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> None:
    sim: Simulator = await simulator_factory(**sim_config())
    settings = make_settings(redis_url, key_prefix, base_url=sim.url)
    keys = AccountKeys(key_prefix, "default")
    queue = Queue(redis, keys)

    jobs: list[Job] = [make_job(CAMPAIGN, phone) for phone in DELETABLE]
    jobs += [make_job(CAMPAIGN, phone) for phone in UNKNOWN]
    jobs += [make_job("no_such_campaign", f"98452{i:05d}") for i in range(20)]
    duplicates = [make_job(CAMPAIGN, phone) for phone in DELETABLE[:39]]
    enqueued = await queue.enqueue_many(jobs[:150])
    enqueued_dupes = await queue.enqueue_many(duplicates, lane="urgent")
    enqueued_rest = await queue.enqueue_many(jobs[150:])
    # A producer in another language XADDs directly, and forgets the number.
    await redis.xadd(keys.bulk, {"v": "1", "id": "raw-empty-phone", "campaign": CAMPAIGN,
                                 "phone": ""})  # fmt: skip
    # And another sends something that is not a job at all.
    await redis.xadd(keys.bulk, {"phoneNumber": "9845099999", "campaignName": CAMPAIGN})
    assert len(enqueued.queued) + len(enqueued_rest.queued) == 160
    assert enqueued_dupes.queued == [] and len(enqueued_dupes.duplicates) == 39

    assert await drain(settings, redis) == {"default": AccountExit.EMPTY}

    results = [fields for _, fields in await read_stream(redis, keys.results)]
    by_job = Counter(fields["job_id"] for fields in results)
    assert len(results) == 162 and set(by_job.values()) == {1}
    outcomes = Counter((f["outcome"], f["reason"]) for f in results)
    assert outcomes == {
        ("deleted", ""): 100,
        ("dead", "no_record"): 40,
        ("dead", "invalid_campaign"): 20,
        ("dead", "missing_phone"): 1,
        ("dead", "malformed"): 1,
    }
    for fields in results:
        if fields["outcome"] == "deleted":
            assert fields["phone"] in DELETABLE and fields["message"] == "Deleted Successfully"

    letters = [dead_letter_view(i, f) for i, f in await read_stream(redis, keys.dlq)]
    assert Counter(letter["reason"] for letter in letters) == {
        "no_record": 40, "invalid_campaign": 20, "missing_phone": 1, "malformed": 1,
    }  # fmt: skip
    [raw] = [f["raw"] for _, f in await read_stream(redis, keys.dlq) if f["reason"] == "malformed"]
    assert json.loads(raw) == {"phoneNumber": "9845099999", "campaignName": CAMPAIGN}
    assert {x["phone"] for x in letters if x["reason"] == "no_record"} == set(UNKNOWN)
    assert all(x["message"] for x in letters)

    remaining = await sim.campaigns()
    assert sorted(remaining[CAMPAIGN]) == sorted(LEFT_ALONE)
    report = await sim.inspect()
    assert report["violations"] == 0
    deletes = [r for r in report["requests"] if r["endpoint"] == "delete"]
    # The empty number was dead-lettered without spending a request.
    assert len(deletes) == 160
    assert (await queue.counts()).outstanding == 0
    assert await redis.scard(keys.pending) == 0
    view = result_view(*(await redis.xrange(keys.results, count=1))[0])
    assert view["outcome"] in {"deleted", "dead"} and view["finished_at"].endswith("+00:00")


async def test_an_expired_token_is_refreshed_once_and_the_run_goes_on(
    redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> None:
    sim: Simulator = await simulator_factory(**sim_config())
    settings = make_settings(redis_url, key_prefix, base_url=sim.url, rate_limit=20)
    keys = AccountKeys(key_prefix, "default")
    queue = Queue(redis, keys)
    await queue.enqueue_many(make_job(CAMPAIGN, phone) for phone in DELETABLE[:60])

    run = asyncio.create_task(drain(settings, redis))
    await eventually(lambda: _at_least(redis, keys.results, 10))
    await sim.control("tokens/expire")
    assert await run == {"default": AccountExit.EMPTY}

    report = await sim.inspect()
    assert len(report["tokens"]) == 2, report["tokens"]
    expired = [r for r in report["requests"] if r["message"] == "Token Expired"]
    assert expired, "the test must have hit the expiry"
    results = [f for _, f in await read_stream(redis, keys.results)]
    assert len(results) == 60 and {f["outcome"] for f in results} == {"deleted"}
    # Refusals for a stale token are not attempts.
    assert {f["attempts"] for f in results} == {"1"}
    assert await redis.xlen(keys.dlq) == 0
    assert report["violations"] == 0


async def test_a_credential_error_halts_the_account_and_keeps_its_backlog(
    redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> None:
    sim: Simulator = await simulator_factory(**sim_config())
    keys = AccountKeys(key_prefix, "default")
    queue = Queue(redis, keys)
    await queue.enqueue_many(make_job(CAMPAIGN, phone) for phone in DELETABLE[:30])

    wrong = make_settings(redis_url, key_prefix, base_url=sim.url, username="nobody")
    assert await drain(wrong, redis) == {"default": AccountExit.HALTED}

    assert "Invalid userName or apiKey" in (await redis.get(keys.halted) or "")
    assert (await queue.counts()).outstanding == 30
    assert await redis.xlen(keys.dlq) == 0 and await redis.xlen(keys.results) == 0
    report = await sim.inspect()
    assert [r["endpoint"] for r in report["requests"]] == ["token"]


async def test_a_wrong_key_in_apikey_mode_halts_after_one_request(
    redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> None:
    from worker.config.settings import Secret
    from worker.simulator import AccountSpec

    sim: Simulator = await simulator_factory(
        **sim_config(accounts={"demo": AccountSpec("demo-key", "apikey")})
    )
    keys = AccountKeys(key_prefix, "default")
    queue = Queue(redis, keys)
    await queue.enqueue_many(make_job(CAMPAIGN, phone) for phone in DELETABLE[:30])
    wrong = make_settings(
        redis_url, key_prefix, {"concurrency": 1}, base_url=sim.url, auth_mode="apikey",
        api_key=Secret("wrong-key"),
    )  # fmt: skip
    assert await drain(wrong, redis) == {"default": AccountExit.HALTED}
    assert (await queue.counts()).outstanding == 30
    assert await redis.xlen(keys.dlq) == 0
    report = await sim.inspect()
    assert [r["message"] for r in report["requests"]] == ["Invalid User Details"]


async def test_a_spent_token_budget_pauses_instead_of_calling_the_endpoint(
    redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> None:
    sim: Simulator = await simulator_factory(**sim_config())
    settings = make_settings(redis_url, key_prefix, base_url=sim.url, token_budget=1,
                             rate_limit=10)  # fmt: skip
    keys = AccountKeys(key_prefix, "default")
    queue = Queue(redis, keys)
    await queue.enqueue_many(make_job(CAMPAIGN, phone) for phone in DELETABLE[:40])

    stopping = asyncio.Event()
    run = asyncio.create_task(run_pool(settings, redis, stopping))
    await eventually(lambda: _at_least(redis, keys.results, 5))
    await sim.control("tokens/expire")
    await eventually(lambda: redis.exists(keys.token_wait))
    # Requests already on their way when the budget was found spent may land.
    await asyncio.sleep(0.5)
    requests_when_paused = len((await sim.inspect())["requests"])
    await asyncio.sleep(1.0)
    stopping.set()
    assert await asyncio.wait_for(run, 10) == {"default": AccountExit.STOPPED}

    report = await sim.inspect()
    assert report["generations"] == 1
    assert [r for r in report["requests"] if r["endpoint"] == "token"] == report["requests"][:1]
    # Paused: not one more request once the budget was found spent.
    assert len(report["requests"]) == requests_when_paused
    assert "budget" in (await redis.get(keys.token_wait) or "")
    done = await redis.xlen(keys.results)
    assert (await queue.counts()).outstanding == 40 - done
    assert await redis.xlen(keys.dlq) == 0


async def test_tokens_are_replaced_before_they_expire_once_per_lifetime(
    redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> None:
    # Tokens live 3 s of real time here; the run lasts about three of them.
    sim: Simulator = await simulator_factory(**sim_config(token_ttl_s=90.0))
    settings = make_settings(redis_url, key_prefix, base_url=sim.url, rate_limit=10)
    keys = AccountKeys(key_prefix, "default")
    await Queue(redis, keys).enqueue_many(make_job(CAMPAIGN, p) for p in DELETABLE[:40])
    assert await drain(settings, redis) == {"default": AccountExit.EMPTY}

    report = await sim.inspect()
    refused = [r for r in report["requests"] if r["message"] in {"Token Expired", "Invalid Token"}]
    tokens = sorted(report["tokens"], key=lambda t: t["iat"])
    assert len(tokens) >= 3
    # A new token invalidates the old at once: a request already on its way
    # with the old one may be refused (and retried, not counted), but at most
    # the requests in flight at each replacement, never a storm.
    assert len(refused) <= (len(tokens) - 1) * settings.concurrency
    # Each was replaced late in its life, never early or twice: the JWT's
    # whole-second exp can hide up to one second of it.
    for older, newer in itertools.pairwise(tokens):
        assert newer["iat"] - older["iat"] >= 0.8 * (older["exp"] - older["iat"]) - 1
    assert {f["outcome"] for _, f in await redis.xrange(keys.results)} == {"deleted"}
