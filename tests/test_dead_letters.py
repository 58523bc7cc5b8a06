"""Dead letters against a real Redis: list, replay as new jobs, purge.

Letters are made the way the pool makes them: a job is queued, fetched, and
recorded dead by the real :class:`Recorder`.
"""

from __future__ import annotations

from redis.asyncio import Redis

from tests.conftest import make_settings
from worker.config.settings import Settings
from worker.queue.jobs import Job, dedupe_digest, from_fields, make_job
from worker.queue.lanes import Delivery, Queue
from worker.results.dead_letters import letters, purge, replay
from worker.results.records import Record, Recorder
from worker.store.keys import CONSUMER_GROUP, AccountKeys, Lane
from worker.store.lua import register


async def kill(
    redis: Redis,
    settings: Settings,
    keys: AccountKeys,
    job: Job | dict[str, str],
    lane: Lane = "bulk",
    reason: str = "no_record",
) -> None:
    """Queue ``job`` (or raw fields), take it as a worker would, and dead-letter it."""
    queue = Queue(redis, keys)
    await queue.ensure_groups()
    if isinstance(job, Job):
        await queue.enqueue(job, lane)
    else:
        await redis.xadd(keys.lane(lane), job)
    reply = await redis.xreadgroup(CONSUMER_GROUP, "worker-1", {keys.lane(lane): ">"}, count=1)
    entry_id, fields = reply[0][1][0]
    parsed = from_fields(fields, entry_id) if isinstance(job, Job) else None
    delivery = Delivery(lane, entry_id, fields, parsed, None if parsed else "missing version")
    message = "No Record Found" if reason == "no_record" else reason
    await Recorder(redis, keys, settings).record(delivery, Record("dead", message, 1, reason))


async def lane_jobs(redis: Redis, key: str) -> list[dict[str, str]]:
    return [fields for _, fields in await redis.xrange(key)]


async def test_replay_queues_new_jobs_on_the_retry_lane_and_removes_the_letters(
    redis: Redis, redis_url: str, key_prefix: str
) -> None:
    settings = make_settings(redis_url, key_prefix)
    keys = AccountKeys(key_prefix, "default")
    bulk_job = make_job("spring", "9876500001", name="Asha")
    urgent_job = make_job("spring", "9876500002")
    await kill(redis, settings, keys, bulk_job)
    await kill(redis, settings, keys, urgent_job, lane="urgent")
    assert await redis.xlen(keys.dlq) == 2
    assert not await redis.sismember(keys.pending, bulk_job.dedupe_digest)

    counts = await replay(redis, keys)

    assert (counts.replayed, counts.already_queued, counts.unreplayable) == (2, 0, 0)
    assert await redis.xlen(keys.dlq) == 0
    # Replays share the retry lane's capped share of the allowance.
    assert await redis.xlen(keys.bulk) == 0 and await redis.xlen(keys.urgent) == 0
    bulk, urgent = await lane_jobs(redis, keys.retry)
    assert bulk["replay_of"] == bulk_job.id and bulk["id"] != bulk_job.id
    assert (bulk["v"], bulk["campaign"], bulk["phone"], bulk["name"]) == (
        "1",
        "spring",
        "9876500001",
        "Asha",
    )
    assert urgent["replay_of"] == urgent_job.id and urgent["phone"] == "9876500002"
    # Replayed work is de-duplicated like any queued work.
    assert await redis.sismember(keys.pending, bulk_job.dedupe_digest)
    assert not (await Queue(redis, keys).enqueue(make_job("spring", "9876500001")))


async def test_replay_filters_by_reason_honours_the_limit_and_skips_malformed(
    redis: Redis, redis_url: str, key_prefix: str
) -> None:
    settings = make_settings(redis_url, key_prefix)
    keys = AccountKeys(key_prefix, "default")
    for i in range(3):
        await kill(redis, settings, keys, make_job("c", f"987650000{i}"))
    await kill(redis, settings, keys, make_job("gone", "9876500009"), reason="invalid_campaign")
    await kill(redis, settings, keys, {"phone": "9876500008"}, reason="malformed")

    first = await replay(redis, keys, reason="no_record", limit=2)
    assert first.replayed == 2
    left = [letter.reason async for letter in letters(redis, keys)]
    assert left == ["no_record", "invalid_campaign", "malformed"]

    rest = await replay(redis, keys)
    assert (rest.replayed, rest.unreplayable) == (2, 1)
    assert [letter.reason async for letter in letters(redis, keys)] == ["malformed"]
    assert await redis.xlen(keys.retry) == 4


async def test_a_letter_whose_number_is_queued_again_is_removed_without_a_second_job(
    redis: Redis, redis_url: str, key_prefix: str
) -> None:
    settings = make_settings(redis_url, key_prefix)
    keys = AccountKeys(key_prefix, "default")
    await kill(redis, settings, keys, make_job("c", "9876500001"))
    assert await Queue(redis, keys).enqueue(make_job("c", "9876500001"))

    counts = await replay(redis, keys)

    assert (counts.replayed, counts.already_queued) == (0, 1)
    assert await redis.xlen(keys.dlq) == 0
    assert [f.get("replay_of") for f in await lane_jobs(redis, keys.bulk)] == [None]


async def test_replaying_a_letter_that_is_already_gone_does_nothing(
    redis: Redis, key_prefix: str
) -> None:
    keys = AccountKeys(key_prefix, "default")
    script = register(redis, "results/replay")
    digest = dedupe_digest("c", "9876500001")
    verdict = await script(
        keys=[keys.bulk, keys.dlq, keys.pending], args=["1-1", digest, "v", "1", "id", "x"]
    )
    assert verdict == ["gone"]
    assert await redis.xlen(keys.bulk) == 0
    assert not await redis.sismember(keys.pending, digest)


async def test_purge_deletes_only_the_chosen_reason_then_everything(
    redis: Redis, redis_url: str, key_prefix: str
) -> None:
    settings = make_settings(redis_url, key_prefix)
    keys = AccountKeys(key_prefix, "default")
    for i in range(2):
        await kill(redis, settings, keys, make_job("c", f"987650000{i}"))
    await kill(redis, settings, keys, make_job("x", "9876500005"), reason="invalid_campaign")

    assert await purge(redis, keys, reason="no_record") == 2
    assert [letter.reason async for letter in letters(redis, keys)] == ["invalid_campaign"]
    assert await purge(redis, keys) == 1
    assert await redis.xlen(keys.dlq) == 0
    # The results stream keeps every job's line.
    assert await redis.xlen(keys.results) == 3


async def test_letters_are_read_in_pages_without_skipping_or_repeating(
    redis: Redis, key_prefix: str
) -> None:
    keys = AccountKeys(key_prefix, "default")
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(450):
            reason = "no_record" if i % 3 else "invalid_campaign"
            pipe.xadd(keys.dlq, {"job_id": f"j{i}", "reason": reason, "attempts": "1"})
        await pipe.execute()

    every = [letter.view()["job_id"] async for letter in letters(redis, keys)]
    chosen = [letter.fields["job_id"] async for letter in letters(redis, keys, "invalid_campaign")]

    assert every == [f"j{i}" for i in range(450)]
    assert chosen == [f"j{i}" for i in range(0, 450, 3)]
