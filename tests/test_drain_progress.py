"""A drain's progress in Redis, for the operator console: published while the
drain runs, on a terminal or not, ending with a "done" snapshot that agrees
with the drain's report; listed by ``drains()``; forgotten when it expires."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from rich.console import Console

from tests.conftest import TIME_SCALE, Simulator, make_settings
from worker.accounts.status import server_time_ms
from worker.cli import drain_view
from worker.cli.drain_view import live_view
from worker.config.settings import Settings
from worker.drain.batch import IMPORTED_THROUGH, DrainProgress, DrainResult, DrainSpec, drain
from worker.drain.progress import drains, publish
from worker.drain.rows import duplicate_field, file_tag
from worker.store.keys import AccountKeys, accounts_key

CAMPAIGN = "spring_sale"
HELD = [f"98760{i:05d}" for i in range(20)]
ABSENT = [f"95550{i:05d}" for i in range(5)]
PHASES = ["importing", "taking over", "sending", "reporting", "done"]
COUNTS = ("rows", "queued", "done", "dead", "rejected")


def write_list(path: Path) -> int:
    """20 numbers to delete, 5 the campaign lacks, 3 refused rows, 2 repeats."""
    rows = [[p, CAMPAIGN, f"n{i}"] for i, p in enumerate(HELD)]
    rows += [[p, CAMPAIGN, ""] for p in ABSENT]
    rows += [["", CAMPAIGN, "empty"], ["98abc", CAMPAIGN, "letters"], ["123", CAMPAIGN, "short"]]
    rows += [rows[0], rows[21]]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["phoneNumber", "campaignName", "name"])
        writer.writerows(rows)
    return len(rows)


async def run_drain(
    redis: Redis, settings: Settings, spec: DrainSpec, tmp_path: Path, console: Console
) -> DrainResult:
    """As ``drain_and_show`` runs it, without its signal handlers."""
    progress = DrainProgress()
    async with live_view(console, redis, settings, spec, progress):
        result = await drain(
            redis,
            settings,
            spec,
            asyncio.Event(),
            tmp_path / "report",
            tmp_path / "rejects.csv",
            False,
            progress,
        )
    return result


async def drain_setup(
    redis_url: str, key_prefix: str, simulator_factory: Any, tmp_path: Path
) -> tuple[Settings, DrainSpec, int]:
    sim: Simulator = await simulator_factory(campaigns={CAMPAIGN: set(HELD)}, time_scale=TIME_SCALE)
    settings = make_settings(redis_url, key_prefix, base_url=sim.url)
    path = tmp_path / "suppression.csv"
    rows = write_list(path)
    spec = DrainSpec(path, file_tag(path), AccountKeys(key_prefix, "default"))
    return settings, spec, rows


@pytest.mark.parametrize("terminal", [False, True], ids=["no-terminal", "terminal"])
async def test_a_finished_drain_leaves_a_done_snapshot_that_matches_its_report(
    redis: Redis,
    redis_url: str,
    key_prefix: str,
    simulator_factory: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    terminal: bool,
) -> None:
    settings, spec, rows = await drain_setup(redis_url, key_prefix, simulator_factory, tmp_path)
    published: list[dict[str, int | str]] = []

    async def recording(*args: Any, **kwargs: Any) -> None:
        published.append(dict(args[3]))
        await publish(*args, **kwargs)

    monkeypatch.setattr(drain_view, "publish", recording)
    console = Console(file=io.StringIO(), force_terminal=terminal, width=120)
    started_ms = await server_time_ms(redis)

    result = await run_drain(redis, settings, spec, tmp_path, console)

    summary = result.summary
    assert summary.complete and summary.rows == rows == 30
    assert summary.outcomes["deleted"] == 20 and summary.outcomes["dead"] == 5
    stored = await redis.hgetall(spec.keys.drain(spec.tag))
    assert stored["phase"] == "done"
    assert stored["file"] == "suppression.csv"
    assert {name: int(stored[name]) for name in COUNTS} == {
        "rows": summary.rows,
        "queued": summary.rows - summary.outcomes["rejected"] - summary.outcomes["duplicate"],
        "done": summary.outcomes["deleted"] + summary.outcomes["already_deleted"],
        "dead": summary.outcomes["dead"],
        "rejected": summary.outcomes["rejected"],
    }
    assert started_ms <= int(stored["updated_ms"]) <= await server_time_ms(redis)
    # The import's own fields are still there beside the progress.
    assert int(stored[IMPORTED_THROUGH]) == rows + 1
    assert duplicate_field(31) in stored

    # Published as it went: phases in order, counts never going back, "done" last.
    assert published[-1]["phase"] == "done"
    phases = [PHASES.index(str(p["phase"])) for p in published]
    assert phases == sorted(phases)
    for name in COUNTS:
        seen = [int(p[name]) for p in published if name in p]
        assert seen == sorted(seen), name

    ttl = settings.result_ttl_s
    assert 0 < await redis.ttl(spec.keys.drain(spec.tag)) <= ttl
    assert 0 < await redis.ttl(spec.keys.drains) <= ttl
    assert await drains(redis, settings) == [
        {
            "account": "default",
            "tag": spec.tag,
            "file": "suppression.csv",
            "phase": "done",
            **{name: int(stored[name]) for name in COUNTS},
            "updated_ms": int(stored["updated_ms"]),
        }
    ]


async def test_a_drain_whose_progress_cannot_be_published_finishes_all_the_same(
    redis: Redis,
    redis_url: str,
    key_prefix: str,
    simulator_factory: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings, spec, rows = await drain_setup(redis_url, key_prefix, simulator_factory, tmp_path)
    attempts: list[str] = []

    async def failing(*args: Any, **kwargs: Any) -> None:
        attempts.append(str(args[3]["phase"]))
        raise RedisConnectionError("publishing failed")

    monkeypatch.setattr(drain_view, "publish", failing)
    result = await run_drain(redis, settings, spec, tmp_path, Console(file=io.StringIO()))

    assert result.summary.complete and result.summary.rows == rows
    assert attempts[-1] == "done"
    assert not await redis.exists(spec.keys.drains)
    assert "phase" not in await redis.hgetall(spec.keys.drain(spec.tag))


async def test_drains_lists_every_accounts_drains_and_forgets_expired_ones(
    redis: Redis, redis_url: str, key_prefix: str
) -> None:
    settings = make_settings(redis_url, key_prefix)
    default = AccountKeys(key_prefix, "default")
    other = AccountKeys(key_prefix, "other")
    # "other" is known only to Redis, as an account another host queued work for.
    await redis.sadd(accounts_key(key_prefix), "other")
    snapshot: dict[str, int | str] = {"file": "a.csv", "phase": "sending", "rows": 10}
    await publish(redis, default, "aaaaaaaaaaaa", snapshot)
    await publish(redis, default, "bbbbbbbbbbbb", {**snapshot, "file": "b.csv", "done": 4})
    await publish(redis, other, "cccccccccccc", {**snapshot, "file": "c.csv"})

    listed = await drains(redis, settings)
    # Configured accounts first; within one, the latest update first.
    assert [d["account"] for d in listed] == ["default", "default", "other"]
    assert listed[0]["updated_ms"] >= listed[1]["updated_ms"]
    by_tag = {d["tag"]: d for d in listed}
    assert {tag: d["file"] for tag, d in by_tag.items()} == {
        "aaaaaaaaaaaa": "a.csv",
        "bbbbbbbbbbbb": "b.csv",
        "cccccccccccc": "c.csv",
    }
    assert by_tag["bbbbbbbbbbbb"]["done"] == 4
    assert (by_tag["aaaaaaaaaaaa"]["done"], by_tag["aaaaaaaaaaaa"]["rows"]) == (0, 10)

    # The hash expired (its TTL is the results'): the tag leaves the set too.
    await redis.delete(default.drain("aaaaaaaaaaaa"))
    # Only the import's fields so far: not listed, but kept, since it lives.
    await redis.hset(default.drain("dddddddddddd"), IMPORTED_THROUGH, "5")
    await redis.sadd(default.drains, "dddddddddddd")
    # Someone else's writing: not listed.
    await publish(redis, default, "eeeeeeeeeeee", snapshot)
    await redis.hset(default.drain("eeeeeeeeeeee"), "rows", "many")

    listed = await drains(redis, settings)
    assert [(d["account"], d["tag"]) for d in listed] == [
        ("default", "bbbbbbbbbbbb"),
        ("other", "cccccccccccc"),
    ]
    assert await redis.smembers(default.drains) == {
        "bbbbbbbbbbbb",
        "dddddddddddd",
        "eeeeeeeeeeee",
    }


async def test_publish_keeps_to_its_own_fields_and_sets_a_ttl(
    redis: Redis, key_prefix: str
) -> None:
    keys = AccountKeys(key_prefix, "default")
    with pytest.raises(ValueError, match="imported_through_line"):
        await publish(redis, keys, "t", {IMPORTED_THROUGH: 0})
    with pytest.raises(ValueError, match="updated_ms"):
        await publish(redis, keys, "t", {"updated_ms": 0})
    assert not await redis.exists(keys.drain("t"), keys.drains)

    await publish(redis, keys, "t", {"phase": "importing", "file": "x.csv"}, ttl_s=300)
    assert 0 < await redis.ttl(keys.drain("t")) <= 300
    assert 0 < await redis.ttl(keys.drains) <= 300
