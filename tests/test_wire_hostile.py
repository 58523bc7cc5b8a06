"""Hostile stream entries, written straight onto a lane as any client can:
bytes that are not UTF-8, numbers past every range, fields past every
size, values that fail the producers' validation. Each ends as one record
(sent, or dead-lettered without costing a permit), and no entry stops a
worker. Real Redis, real worker pool, the simulator over real HTTP."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from typing import Any

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from tests.conftest import TIME_SCALE, Simulator, make_settings
from tests.test_pipeline import drain
from worker.pool.workers import AccountExit
from worker.queue.jobs import readable
from worker.results.records import MAX_RAW_CHARS, dead_letter_view, raw_fields, result_view
from worker.simulator import SimulatorConfig
from worker.simulator import start as start_simulator_server
from worker.store.keys import CONSUMER_GROUP, LANES, AccountKeys

CAMPAIGN = "spring_sale"
PHONE = re.compile(r"\+?[0-9]{5,15}")
_prefixes = itertools.count()


async def _raw_client(redis_url: str) -> Redis:
    """A client that writes and reads bytes as they are, as a foreign producer's would."""
    return Redis.from_url(redis_url, decode_responses=False)


async def _all_text_is_utf8(raw: Redis, key: str) -> bool:
    for _, fields in await raw.xrange(key):
        for name, value in fields.items():
            name.decode("utf-8")
            value.decode("utf-8")
    return True


async def test_a_field_that_is_not_utf8_is_dead_lettered_and_the_next_job_is_sent(
    redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> None:
    sim: Simulator = await simulator_factory(
        campaigns={CAMPAIGN: {"9845012345"}}, time_scale=TIME_SCALE
    )
    settings_ = make_settings(redis_url, key_prefix, base_url=sim.url)
    keys = AccountKeys(key_prefix, "default")
    raw = await _raw_client(redis_url)
    try:
        await raw.xadd(keys.bulk, {b"v": b"1", b"id": b"bin-1", b"campaign": b"\xff\xfe\xfd",
                                   b"phone": b"9845012345"})  # fmt: skip
        await raw.xadd(keys.bulk, {b"v": b"1", b"id": b"bin-2", b"campaign": b"x",
                                   b"\xc3\x28": b"y", b"phone": b"9845099999"})  # fmt: skip
        await raw.xadd(keys.bulk, {b"v": b"1", b"id": b"ok-1", b"campaign": CAMPAIGN.encode(),
                                   b"phone": b"9845012345"})  # fmt: skip

        # Twice: a worker that met the entry once must not meet it again.
        assert await drain(settings_, redis) == {"default": AccountExit.EMPTY}
        assert await drain(settings_, redis) == {"default": AccountExit.EMPTY}

        letters = [dead_letter_view(i, f) for i, f in await redis.xrange(keys.dlq)]
        assert sorted(letter["reason"] for letter in letters) == ["malformed", "malformed"]
        raws = [f["raw"] for _, f in await redis.xrange(keys.dlq)]
        kept = [json.loads(r) for r in raws]
        assert {
            "v": "1",
            "id": "bin-1",
            "campaign": "\\xff\\xfe\\xfd",
            "phone": "9845012345",
        } in kept
        results = {f["job_id"]: f for _, f in await redis.xrange(keys.results)}
        assert results["ok-1"]["outcome"] == "deleted"
        # What the product writes back is text, whatever it was given.
        assert await _all_text_is_utf8(raw, keys.results)
        assert await _all_text_is_utf8(raw, keys.dlq)
        deletes = [r for r in (await sim.inspect())["requests"] if r["endpoint"] == "delete"]
        assert [r["phone"] for r in deletes] == ["9845012345"]
    finally:
        await raw.aclose()


async def test_entries_that_fail_validation_are_never_sent(
    redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> None:
    sim: Simulator = await simulator_factory(campaigns={CAMPAIGN: set()}, time_scale=TIME_SCALE)
    settings_ = make_settings(redis_url, key_prefix, base_url=sim.url)
    keys = AccountKeys(key_prefix, "default")
    huge = "c" * (5 * 1024 * 1024)
    await redis.xadd(keys.bulk, {"v": "1", "id": "drop-1", "campaign": CAMPAIGN,
                                 "phone": "not a phone; DROP"})  # fmt: skip
    await redis.xadd(keys.bulk, {"v": "1", "id": "huge-1", "campaign": huge,
                                 "phone": "9845012345"})  # fmt: skip
    await redis.xadd(keys.bulk, {"v": "1", "id": "ctl-1", "campaign": "a\x1b[2Jb",
                                 "phone": "9845012345"})  # fmt: skip

    assert await drain(settings_, redis) == {"default": AccountExit.EMPTY}
    deletes = [r for r in (await sim.inspect())["requests"] if r["endpoint"] == "delete"]
    assert deletes == []
    letters = {f["job_id"]: f for _, f in await redis.xrange(keys.dlq)}
    assert {f["reason"] for f in letters.values()} == {"invalid_job"}
    assert set(letters) == {"drop-1", "huge-1", "ctl-1"}
    assert "phone number" in letters["drop-1"]["message"]
    # Kept bounded: a dead letter never carries megabytes.
    assert len(letters["huge-1"]["campaign"]) < 1024
    # Not one permit was spent on them.
    assert await redis.zcard(keys.limiter) == 0


async def test_numbers_past_every_range_are_malformed_not_a_crash(
    redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> None:
    sim: Simulator = await simulator_factory(campaigns={CAMPAIGN: set()}, time_scale=TIME_SCALE)
    settings_ = make_settings(redis_url, key_prefix, base_url=sim.url)
    keys = AccountKeys(key_prefix, "default")
    bad_numbers = ["99999999999999999999", "-5", "1e999", "٣", " 7", "nan", "0x10"]
    for i, value in enumerate(bad_numbers):
        for field in ("enqueued", "attempts"):
            await redis.xadd(keys.bulk, {"v": "1", "id": f"n{i}{field}", "campaign": CAMPAIGN,
                                         "phone": "9845012345", field: value})  # fmt: skip
    assert await drain(settings_, redis) == {"default": AccountExit.EMPTY}
    reasons = [f["reason"] for _, f in await redis.xrange(keys.results)]
    assert reasons == ["malformed"] * (2 * len(bad_numbers))
    # The views of such records, written by hand, read as "no time", never raise.
    view = result_view("1-0", {"enqueued_at": "99999999999999999999", "attempts": "1e999",
                               "finished_at": "٣٣"})  # fmt: skip
    assert (view["enqueued_at"], view["finished_at"], view["attempts"]) == (None, None, 0)


# Field names a job has, and some it has not; values of any bytes.
_NAMES = st.sampled_from([b"v", b"id", b"campaign", b"phone", b"name", b"enqueued",
                          b"attempts", b"replay_of", b"sent"]) | st.binary(max_size=8)  # fmt: skip
_VALUES = (
    st.binary(max_size=40)
    | st.sampled_from([b"1", b"9845012345", b"+919845012345", CAMPAIGN.encode(), b""])
    | st.integers(-(10**30), 10**30).map(lambda n: str(n).encode())
    | st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass"))
)
_ENTRY = st.dictionaries(_NAMES, _VALUES, min_size=1, max_size=8)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(entries=st.lists(_ENTRY, min_size=1, max_size=6), valid_share=st.booleans())
def test_any_entry_ends_as_one_record_and_never_stops_a_worker(
    redis_url: str, entries: list[dict[bytes, bytes]], valid_share: bool
) -> None:
    asyncio.run(_drain_entries(redis_url, entries, valid_share))


async def _drain_entries(redis_url: str, entries: list[dict[bytes, bytes]], valid: bool) -> None:
    prefix = f"hw{next(_prefixes)}"
    keys = AccountKeys(prefix, "default")
    runner, url = await start_simulator_server(
        SimulatorConfig(campaigns={CAMPAIGN: {"9845012345"}}, time_scale=TIME_SCALE),
        "127.0.0.1",
        0,
    )
    raw = await _raw_client(redis_url)
    redis = Redis.from_url(redis_url, decode_responses=True, encoding_errors="surrogateescape")
    try:
        for index, fields in enumerate(entries):
            if valid:
                # Half the runs start from a job that parses, then spoil it.
                fields = {b"v": b"1", b"campaign": CAMPAIGN.encode(), b"phone": b"9845012345",
                          **fields}  # fmt: skip
            # Distinct ids, or none that parses: one record per entry is then exact.
            if b"id" in fields:
                fields[b"id"] = f"h{index}-".encode() + fields[b"id"]
            await raw.xadd(keys.bulk, fields)
        settings_ = make_settings(redis_url, prefix, base_url=url)
        assert await drain(settings_, redis) == {"default": AccountExit.EMPTY}

        results = await redis.xrange(keys.results)
        assert len(results) == len(entries)
        for lane in LANES:
            assert await redis.xlen(keys.lane(lane)) == 0
            pending = await redis.xpending(keys.lane(lane), CONSUMER_GROUP)
            assert pending["pending"] == 0
        assert await redis.scard(keys.pending) == 0
        assert await _all_text_is_utf8(raw, keys.results)
        assert await _all_text_is_utf8(raw, keys.dlq)
        for _, letter in await redis.xrange(keys.dlq):
            if "raw" in letter:
                # Kept bounded, and still an object a script can read.
                assert isinstance(json.loads(letter["raw"]), dict)
                assert len(letter["raw"]) <= MAX_RAW_CHARS
        for entry_id, fields in results:
            view = result_view(entry_id, fields)
            assert view["outcome"] in ("deleted", "already_deleted", "dead")
        # The vendor saw only what a producer could have sent through the API.
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{url}/_sim/requests") as response,
        ):
            report = await response.json()
        for request in report["requests"]:
            if request["endpoint"] == "delete":
                campaign = request["campaign"]
                assert PHONE.fullmatch(request["phone"])
                assert campaign.isprintable() and 0 < len(campaign) <= 255
    finally:
        await redis.aclose()
        await raw.aclose()
        await runner.cleanup()


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(
    fields=st.dictionaries(
        st.text(max_size=80),
        st.text(max_size=2000)
        | st.binary(max_size=600).map(lambda b: b.decode("utf-8", "surrogateescape")),
        max_size=60,
    )
)
def test_kept_raw_fields_always_parse_and_fit(fields: dict[str, str]) -> None:
    kept = raw_fields(fields)
    assert len(kept) <= MAX_RAW_CHARS
    parsed = json.loads(kept)
    kept.encode("utf-8")  # never a lone surrogate
    shown = {readable(name, 64) for name in fields}
    if "..." in parsed:
        left_out = int(parsed.pop("...").split()[0])
        assert left_out >= 1 and set(parsed) < shown
    else:
        assert set(parsed) == shown
