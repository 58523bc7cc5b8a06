"""The Python producer API against our own redis-server, and against the real
worker pool and simulator where a job has to end."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.conftest import TIME_SCALE, Simulator, make_settings
from worker.errors import BadInput, ConfigError
from worker.pool.workers import AccountExit, run_pool
from worker.queue.producer import JobStatus, Producer, Receipt
from worker.store.keys import AccountKeys

CAMPAIGN = "spring_sale"
DELETABLE = ["9845000001", "9845000002", "9845000003"]


async def lane_lengths(redis: Redis, keys: AccountKeys) -> tuple[int, int]:
    return int(await redis.xlen(keys.urgent)), int(await redis.xlen(keys.bulk))


async def finish_all(redis: Redis, redis_url: str, key_prefix: str, sim: Simulator) -> None:
    """Run the real pool until every queued job has its terminal record."""
    settings = make_settings(redis_url, key_prefix, base_url=sim.url)
    exits = await asyncio.wait_for(run_pool(settings, redis, asyncio.Event(), until_empty=True), 60)
    assert exits == {"default": AccountExit.EMPTY}


async def start_sim(simulator_factory: Any) -> Simulator:
    sim: Simulator = await simulator_factory(
        campaigns={CAMPAIGN: set(DELETABLE)}, time_scale=TIME_SCALE
    )
    return sim


async def test_enqueue_writes_a_version_1_job_on_the_chosen_lane(
    redis: Redis, key_prefix: str
) -> None:
    producer = Producer(redis, key_prefix=key_prefix)
    keys = AccountKeys(key_prefix, "default")

    bulk = await producer.enqueue(CAMPAIGN, "98450 12345", "Asha", normalize=True)
    urgent = await producer.enqueue(CAMPAIGN, "9845099999", urgent=True, job_id="crm-1")

    assert bulk.duplicate is False and urgent == Receipt("crm-1", duplicate=False)
    assert await lane_lengths(redis, keys) == (1, 1)
    [(_, fields)] = await redis.xrange(keys.bulk)
    assert fields == {"v": "1", "id": bulk.job_id, "campaign": CAMPAIGN, "phone": "9845012345",
                      "name": "Asha"}  # fmt: skip
    [(_, fields)] = await redis.xrange(keys.urgent)
    assert fields["id"] == "crm-1" and fields["phone"] == "9845099999"


async def test_a_number_already_queued_is_a_duplicate_and_costs_nothing(
    redis: Redis, key_prefix: str
) -> None:
    producer = Producer(redis, key_prefix=key_prefix)
    keys = AccountKeys(key_prefix, "default")
    first = await producer.enqueue(CAMPAIGN, "9845012345")
    again = await producer.enqueue(CAMPAIGN, "9845012345", urgent=True)
    batch = await producer.enqueue_many(
        [(CAMPAIGN, "9845012345"), {"campaign": CAMPAIGN, "phone": "9845000007", "id": "b-1"}]
    )
    assert first.duplicate is False and again.duplicate is True
    assert [r.duplicate for r in batch] == [True, False] and batch[1].job_id == "b-1"
    assert await lane_lengths(redis, keys) == (0, 2)


@pytest.mark.parametrize(
    ("items", "bad_index", "why"),
    [
        ([(CAMPAIGN, "9845000001"), (CAMPAIGN, "12")], 1, "phone number must be"),
        ([{"campaign": "", "phone": "9845000001"}], 0, "campaign is empty"),
        ([(CAMPAIGN, "9845000001"), {"campaign": CAMPAIGN, "phone": 9845000002}], 1, "string"),
        ([{"campaign": CAMPAIGN, "phone": "9845000001", "phne": "x"}], 0, "unknown field 'phne'"),
        ([(CAMPAIGN, "9845000001", "", "a"), (CAMPAIGN, "9845000002", "", "a")], 1, "repeats"),
        ([(CAMPAIGN, "9845000001", "", "bad id!")], 0, "job id must be"),
        ([(CAMPAIGN,)], 0, "a tuple item is"),
        ([42], 0, "an item is a mapping"),
    ],
)
async def test_one_bad_item_refuses_the_whole_batch(
    redis: Redis, key_prefix: str, items: list[Any], bad_index: int, why: str
) -> None:
    producer = Producer(redis, key_prefix=key_prefix)
    keys = AccountKeys(key_prefix, "default")
    with pytest.raises(BadInput, match=rf"^item {bad_index}: .*{why}.*nothing was queued"):
        await producer.enqueue_many(items)
    assert await lane_lengths(redis, keys) == (0, 0)
    assert await redis.scard(keys.pending) == 0


async def test_single_enqueue_validates_too(redis: Redis, key_prefix: str) -> None:
    producer = Producer(redis, key_prefix=key_prefix)
    with pytest.raises(BadInput, match="phone number is empty"):
        await producer.enqueue(CAMPAIGN, "  ")
    with pytest.raises(ConfigError):
        Producer(redis, account="a:b", key_prefix=key_prefix)
    assert await lane_lengths(redis, AccountKeys(key_prefix, "default")) == (0, 0)


async def test_status_is_unknown_while_queued_and_refuses_bad_ids(
    redis: Redis, key_prefix: str
) -> None:
    producer = Producer(redis, key_prefix=key_prefix)
    receipt = await producer.enqueue(CAMPAIGN, "9845012345")
    assert await producer.status(receipt.job_id) == JobStatus(receipt.job_id, "default", "unknown")
    assert (await producer.status("never-seen")).state == "unknown"
    with pytest.raises(BadInput):
        await producer.status("no spaces allowed")


async def test_wait_gives_up_after_its_timeout(redis: Redis, key_prefix: str) -> None:
    producer = Producer(redis, key_prefix=key_prefix)
    receipt = await producer.enqueue(CAMPAIGN, "9845012345")
    started = asyncio.get_running_loop().time()
    with pytest.raises(TimeoutError):
        await producer.wait(receipt.job_id, timeout_s=0.3)
    # Not before its timeout; how long after is the machine's business.
    assert asyncio.get_running_loop().time() - started >= 0.3


async def test_wait_returns_each_jobs_own_outcome_from_the_real_pool(
    redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> None:
    sim = await start_sim(simulator_factory)
    producer = Producer(redis, key_prefix=key_prefix)
    deleted = await producer.enqueue(CAMPAIGN, DELETABLE[0], job_id="crm-deleted")
    missing = await producer.enqueue(CAMPAIGN, "7000000001", job_id="crm-missing")
    await producer.enqueue_many([(CAMPAIGN, phone) for phone in DELETABLE[1:]])
    # Both waits are pending before any worker runs, so they must be woken.
    waits = [asyncio.create_task(producer.wait(r.job_id, timeout_s=60)) for r in (missing, deleted)]
    await asyncio.sleep(0.1)
    assert not any(task.done() for task in waits)

    await finish_all(redis, redis_url, key_prefix, sim)
    dead, done = await asyncio.gather(*waits)

    assert (done.state, done.outcome, done.reason, done.attempts) == (
        "finished", "deleted", None, 1,
    )  # fmt: skip
    assert done.message == "Deleted Successfully" and done.finished_at is not None
    assert done.finished_at.endswith("+00:00") and done.job_id == "crm-deleted"
    assert (dead.outcome, dead.reason, dead.job_id) == ("dead", "no_record", "crm-missing")
    # Once finished, wait and status answer at once, from the record.
    assert await producer.wait("crm-deleted", timeout_s=0.01) == done
    assert await producer.status("crm-missing") == dead


async def test_an_id_that_already_ended_is_a_duplicate_and_is_not_queued_again(
    redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> None:
    sim = await start_sim(simulator_factory)
    producer = Producer(redis, key_prefix=key_prefix)
    keys = AccountKeys(key_prefix, "default")
    await producer.enqueue(CAMPAIGN, DELETABLE[0], job_id="crm-7")
    await finish_all(redis, redis_url, key_prefix, sim)
    # The pending mark is gone with the job, so only the id can tell.
    assert await redis.scard(keys.pending) == 0

    again = await producer.enqueue(CAMPAIGN, DELETABLE[0], job_id="crm-7")
    batch = await producer.enqueue_many(
        [(CAMPAIGN, DELETABLE[0], "", "crm-7"), (CAMPAIGN, DELETABLE[1], "", "crm-8")]
    )

    assert again == Receipt("crm-7", duplicate=True)
    assert batch == [Receipt("crm-7", True), Receipt("crm-8", False)]
    assert await lane_lengths(redis, keys) == (0, 1)
    [(_, fields)] = await redis.xrange(keys.bulk)
    assert fields["id"] == "crm-8"


async def test_status_survives_the_results_stream_being_trimmed(
    redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> None:
    sim = await start_sim(simulator_factory)
    producer = Producer(redis, key_prefix=key_prefix)
    await producer.enqueue(CAMPAIGN, DELETABLE[0], job_id="crm-9")
    await finish_all(redis, redis_url, key_prefix, sim)
    await redis.xtrim(AccountKeys(key_prefix, "default").results, maxlen=0)

    status = await producer.status("crm-9")

    assert (status.state, status.outcome, status.message) == ("finished", "deleted", None)
    assert status.finished_at is not None


async def test_from_url_owns_its_client_and_a_lent_client_stays_open(
    redis: Redis, redis_url: str, key_prefix: str
) -> None:
    async def clients() -> int:
        return len(await redis.client_list())

    before = await clients()
    async with Producer.from_url(redis_url, account="other", key_prefix=key_prefix) as producer:
        await producer.enqueue(CAMPAIGN, "9845012345")
        assert await clients() == before + 1
    assert await clients() == before
    assert await redis.xlen(AccountKeys(key_prefix, "other").bulk) == 1

    async with Producer(redis, key_prefix=key_prefix) as lent:
        await lent.enqueue(CAMPAIGN, "9845012345")
    assert await redis.ping()
