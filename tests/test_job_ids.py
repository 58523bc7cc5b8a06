"""Job ids belong to one number and one producer: collisions never lose a
deletion, never show one producer another's outcome, and never leave a
number marked as queued after its job ended. Real Redis, real simulator."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import defaultdict
from typing import Any

from redis.asyncio import Redis

from tests.conftest import TIME_SCALE, Simulator, make_settings
from tests.test_pipeline import drain
from worker.pool.workers import AccountExit
from worker.queue.jobs import Job, dedupe_digest, make_job
from worker.queue.lanes import Queue
from worker.queue.producer import Producer, Receipt
from worker.store.keys import AccountKeys

CAMPAIGN = "opt_out"


async def _sim(simulator_factory: Any, numbers: list[str]) -> Simulator:
    sim: Simulator = await simulator_factory(
        campaigns={CAMPAIGN: set(numbers)}, time_scale=TIME_SCALE
    )
    return sim


async def _sent_numbers(sim: Simulator) -> list[str]:
    report = await sim.inspect()
    return [r["phone"] for r in report["requests"] if r["endpoint"] == "delete"]


async def _results_by_id(redis: Redis, keys: AccountKeys) -> dict[str, list[dict[str, str]]]:
    by_id: dict[str, list[dict[str, str]]] = defaultdict(list)
    for _, fields in await redis.xrange(keys.results):
        by_id[fields["job_id"]].append(fields)
    return by_id


async def test_one_id_for_two_numbers_is_a_conflict_and_the_other_number_is_not_lost(
    redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> None:
    sim = await _sim(simulator_factory, ["9845000001", "9845000002"])
    settings = make_settings(redis_url, key_prefix, base_url=sim.url)
    keys = AccountKeys(key_prefix, "default")
    crm_a = Producer(redis, key_prefix=key_prefix)
    crm_b = Producer(redis, key_prefix=key_prefix)

    first = await crm_a.enqueue(CAMPAIGN, "9845000001", job_id="crm-42", owner="a")
    clash = await crm_b.enqueue(CAMPAIGN, "9845000002", job_id="crm-42", owner="b")
    assert first == Receipt("crm-42", duplicate=False)
    assert clash == Receipt("crm-42", duplicate=False, conflict=True)

    # B's number is not marked as queued: under an id of its own it goes.
    again = await crm_b.enqueue(CAMPAIGN, "9845000002", job_id="crm-b-42", owner="b")
    assert again == Receipt("crm-b-42", duplicate=False)

    assert await drain(settings, redis) == {"default": AccountExit.EMPTY}
    assert sorted(await _sent_numbers(sim)) == ["9845000001", "9845000002"]
    by_id = await _results_by_id(redis, keys)
    assert by_id["crm-42"][0]["phone"] == "9845000001"
    assert by_id["crm-b-42"][0]["phone"] == "9845000002"
    assert await redis.scard(keys.pending) == 0


async def test_another_producers_id_is_neither_a_duplicate_nor_readable(
    redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> None:
    sim = await _sim(simulator_factory, ["9845000077"])
    settings = make_settings(redis_url, key_prefix, base_url=sim.url)
    producer = Producer(redis, key_prefix=key_prefix)

    assert not (await producer.enqueue(CAMPAIGN, "9845000077", job_id="crm-77", owner="b")).conflict
    # Same id, even the same number: A did not queue it, A does not own it.
    mine = await producer.enqueue(CAMPAIGN, "9845000077", job_id="crm-77", owner="a")
    assert mine == Receipt("crm-77", duplicate=False, conflict=True)
    assert await drain(settings, redis) == {"default": AccountExit.EMPTY}

    assert (await producer.status("crm-77", owner="b")).outcome == "deleted"
    hidden = await producer.status("crm-77", owner="a")
    assert hidden.state == "unknown" and hidden.outcome is None
    # The owner's replay of its own finished id is a duplicate, not a new send.
    replay = await producer.enqueue(CAMPAIGN, "9845000077", job_id="crm-77", owner="b")
    assert replay == Receipt("crm-77", duplicate=True)
    assert await _sent_numbers(sim) == ["9845000077"]


async def test_a_malformed_entry_naming_a_queued_id_cannot_speak_for_it(
    redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> None:
    sim = await _sim(simulator_factory, ["9845000055"])
    settings = make_settings(redis_url, key_prefix, base_url=sim.url)
    keys = AccountKeys(key_prefix, "default")
    producer = Producer(redis, key_prefix=key_prefix)
    await producer.enqueue(CAMPAIGN, "9845000055", job_id="crm-55")
    await redis.xadd(keys.urgent, {"v": "2", "id": "crm-55", "campaign": "x", "phone": "1"})

    assert await drain(settings, redis) == {"default": AccountExit.EMPTY}
    status = await producer.status("crm-55")
    assert (status.outcome, status.reason) == ("deleted", None)
    by_id = await _results_by_id(redis, keys)
    (malformed,) = [r for r in itertools.chain(*by_id.values()) if r["reason"] == "malformed"]
    assert malformed["job_id"].startswith("urgent@") and malformed["job_id"] != "crm-55"


async def test_raw_entries_sharing_an_id_each_get_a_record_and_release_their_numbers(
    redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> None:
    numbers = ["9845000101", "9845000102"]
    sim = await _sim(simulator_factory, numbers)
    settings = make_settings(redis_url, key_prefix, base_url=sim.url)
    keys = AccountKeys(key_prefix, "default")
    queue = Queue(redis, keys)
    # Built by hand, as a producer in another language would write them:
    # the same id for two numbers, neither claimed when queued.
    result = await queue.enqueue_many([Job("raw-1", CAMPAIGN, n) for n in numbers])
    assert result.queued == ["raw-1", "raw-1"]

    assert await drain(settings, redis) == {"default": AccountExit.EMPTY}
    assert sorted(await _sent_numbers(sim)) == numbers
    records = list(itertools.chain(*(await _results_by_id(redis, keys)).values()))
    assert sorted(r["phone"] for r in records) == numbers
    assert {r["outcome"] for r in records} == {"deleted"}
    ids = sorted(r["job_id"] for r in records)
    assert ids[0].startswith("bulk@") and ids[1] == "raw-1"
    assert await redis.scard(keys.pending) == 0


async def test_a_job_whose_record_already_existed_still_releases_its_number(
    redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> None:
    sim = await _sim(simulator_factory, ["9845000200"])
    settings = make_settings(redis_url, key_prefix, base_url=sim.url)
    keys = AccountKeys(key_prefix, "default")
    queue = Queue(redis, keys)
    job = Job("again-1", CAMPAIGN, "9845000200")
    assert await queue.enqueue(job)
    assert await drain(settings, redis) == {"default": AccountExit.EMPTY}
    # The same entry written again by a raw producer: its record exists.
    assert await queue.enqueue(job)
    assert await drain(settings, redis) == {"default": AccountExit.EMPTY}
    assert len(await redis.xrange(keys.results)) == 1
    assert not await redis.sismember(keys.pending, job.dedupe_digest)


async def test_many_producers_racing_on_colliding_ids_lose_no_deletion(
    redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> None:
    """Every accepted deletion is sent, or is a duplicate of one sent for the
    same campaign and number; every conflict queued nothing; no digest and no
    claim outlives its job."""
    rng = random.Random(7)
    numbers = [f"98460{i:05d}" for i in range(60)]
    sim = await _sim(simulator_factory, numbers)
    settings = make_settings(redis_url, key_prefix, base_url=sim.url)
    keys = AccountKeys(key_prefix, "default")
    producers = [f"p{i}" for i in range(6)]
    ids = [f"crm-{i}" for i in range(25)]  # fewer ids than numbers: they collide
    plans = [(rng.choice(producers), rng.choice(ids), rng.choice(numbers[:40])) for _ in range(200)]
    clients = [Redis.from_url(redis_url, decode_responses=True) for _ in range(4)]
    try:

        async def send(index: int, owner: str, job_id: str, phone: str) -> Receipt:
            producer = Producer(clients[index % len(clients)], key_prefix=key_prefix)
            return await producer.enqueue(CAMPAIGN, phone, job_id=job_id, owner=owner)

        receipts = await asyncio.gather(
            *(send(i, *plan) for i, plan in enumerate(plans)), return_exceptions=False
        )
    finally:
        for client in clients:
            await client.aclose()

    assert await drain(settings, redis, timeout_s=120) == {"default": AccountExit.EMPTY}
    sent = await _sent_numbers(sim)
    by_id = await _results_by_id(redis, keys)
    producer = Producer(redis, key_prefix=key_prefix)
    for (owner, job_id, phone), receipt in zip(plans, receipts, strict=True):
        if receipt.conflict:
            status = await producer.status(job_id, owner=owner)
            mine = status.state == "finished"
            # Conflicted: the id's one record is another owner's, or another number's.
            assert not mine or by_id[job_id][0]["phone"] != phone
        else:
            assert phone in sent, (owner, job_id, phone, receipt)
        if not receipt.duplicate and not receipt.conflict:
            (record,) = by_id[job_id]
            assert record["phone"] == phone and record["outcome"] == "deleted"
    assert set(sent) <= set(numbers[:40])
    assert all(len(records) == 1 for records in by_id.values())
    assert await redis.scard(keys.pending) == 0
    # Every claim has its record: nothing is left half-done.
    for job_id in ids:
        claim = await redis.hgetall(keys.job(job_id))
        assert not claim or "outcome" in claim
        if claim:
            assert claim["digest"] == dedupe_digest(CAMPAIGN, by_id[job_id][0]["phone"])


async def test_an_id_claimed_for_a_number_is_decided_atomically_with_the_enqueue(
    redis: Redis, key_prefix: str
) -> None:
    """Two producers enqueue the same id at the same instant: exactly one wins."""
    producer = Producer(redis, key_prefix=key_prefix)
    jobs = [make_job(CAMPAIGN, f"98470{i:05d}", job_id="crm-race") for i in range(20)]
    receipts = await asyncio.gather(
        *(producer.enqueue_jobs([job], owner=f"p{i}") for i, job in enumerate(jobs))
    )
    flat = [r for (r,) in receipts]
    assert sum(not r.conflict and not r.duplicate for r in flat) == 1
    assert sum(r.conflict for r in flat) == 19
    keys = AccountKeys(key_prefix, "default")
    assert await redis.xlen(keys.bulk) == 1 and await redis.scard(keys.pending) == 1
