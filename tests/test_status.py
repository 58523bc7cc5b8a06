"""The ``status`` view, computed from a real Redis holding every kind of state."""

from __future__ import annotations

import json

import pytest
from redis.asyncio import Redis

from tests.conftest import make_settings
from worker.accounts.status import eta_seconds, server_time_ms, status_report, token_health
from worker.errors import ConfigError
from worker.limiter.permits import Limiter
from worker.queue.jobs import make_job
from worker.queue.lanes import Queue
from worker.store.keys import CONSUMER_GROUP, AccountKeys, accounts_key

FAKE_TOKEN = "eyJ-fake-token-value-never-printed"


async def test_status_reports_every_documented_field_from_redis(
    redis: Redis, redis_url: str, key_prefix: str
) -> None:
    settings = make_settings(
        redis_url, key_prefix, rate_window_s=60.0, token_budget_window_s=3600.0
    )
    account = settings.account()
    keys = AccountKeys(key_prefix, "default")
    queue = Queue(redis, keys)
    await queue.ensure_groups()
    await queue.enqueue_many([make_job("c", f"98765{i:05d}") for i in range(2)], "urgent")
    await queue.enqueue_many([make_job("c", f"98766{i:05d}") for i in range(3)], "bulk")
    # One bulk job held by a worker, one retry waiting.
    await redis.xreadgroup(CONSUMER_GROUP, "worker-1", {keys.bulk: ">"}, count=1)
    await redis.zadd(keys.delayed, {'{"job": "r1"}': 1})
    await redis.hset(keys.stats, mapping={"deleted": 4, "already_deleted": 1, "dead": 2})
    await redis.set(keys.paused, "maintenance")
    await redis.set(keys.halted, "Invalid User Details")
    limiter = Limiter(redis, keys, account)
    for _ in range(3):
        await limiter.acquire()
    now_ms = await server_time_ms(redis)
    # A slot two minutes old is not in the last minute.
    await redis.zadd(keys.limiter, {"old": (now_ms - 120_000) * 1000})
    await redis.hset(
        keys.token,
        mapping={
            "value": FAKE_TOKEN,
            "gen": 3,
            "exp_ms": now_ms + 600_000,
            "issued_ms": now_ms - 60_000,
        },
    )
    await redis.zadd(
        keys.token_generations,
        {"a": now_ms - 10_000, "b": now_ms - 1_000_000, "old": now_ms - 4_000_000},
    )
    await redis.set(keys.token_wait, "token budget spent: 10 generations in the last 3600 s")

    report = await status_report(redis, settings)

    entry = report["accounts"]["default"]
    expires = entry["token"].pop("expires_in_s")
    assert 595 <= expires <= 600
    assert report == {
        "accounts": {
            "default": {
                "queued": {"urgent": 2, "bulk": 2},
                "in_flight": 1,
                "delayed": 1,
                "done": 5,
                "dead": 2,
                "state": "halted",
                "paused": "maintenance",
                "halted": "Invalid User Details",
                "rate_last_min": 3,
                # 6 outstanding at 100 per 60 s: 3.6 s, rounded up.
                "eta_s": 4,
                "token": {
                    "generations_in_window": 2,
                    "budget": 10,
                    "budget_window_s": 3600.0,
                    "waiting": "token budget spent: 10 generations in the last 3600 s",
                },
            }
        }
    }
    assert FAKE_TOKEN not in json.dumps(report)


async def test_accounts_known_only_to_redis_are_listed_with_defaults(
    redis: Redis, redis_url: str, key_prefix: str
) -> None:
    settings = make_settings(redis_url, key_prefix)
    await redis.sadd(accounts_key(key_prefix), "elsewhere")
    report = await status_report(redis, settings)

    assert list(report["accounts"]) == ["default", "elsewhere"]
    idle = report["accounts"]["elsewhere"]
    assert idle["queued"] == {"urgent": 0, "bulk": 0}
    assert (idle["done"], idle["dead"], idle["paused"], idle["halted"]) == (0, 0, None, None)
    assert idle["state"] == "running"
    assert idle["eta_s"] is None
    assert idle["token"] == {
        "expires_in_s": None,
        "generations_in_window": 0,
        "budget": 10,
        "budget_window_s": 3600.0,
        "waiting": None,
    }
    only = await status_report(redis, settings, ["elsewhere"])
    assert list(only["accounts"]) == ["elsewhere"]
    with pytest.raises(ConfigError, match="unknown account 'nowhere'"):
        await status_report(redis, settings, ["nowhere"])


async def test_token_health_tells_age_and_expiry_but_never_the_token(
    redis: Redis, redis_url: str, key_prefix: str
) -> None:
    settings = make_settings(redis_url, key_prefix)
    keys = AccountKeys(key_prefix, "default")
    now_ms = await server_time_ms(redis)
    await redis.hset(
        keys.token,
        mapping={"value": FAKE_TOKEN, "gen": 7, "exp_ms": now_ms - 5_000, "issued_ms": now_ms},
    )
    health = await token_health(redis, keys, settings.account())

    assert health["generation"] == 7
    assert health["present"] is True
    assert health["expires_in_s"] < 0  # expired five seconds ago
    assert 0 <= health["age_s"] <= 2
    assert FAKE_TOKEN not in json.dumps(health)


def test_eta_uses_the_tightest_cap() -> None:
    settings = make_settings(
        "redis://127.0.0.1:9/0", "p", rate_window_s=60.0, rate_cap_per_hour=600
    )
    account = settings.account()
    assert eta_seconds(0, account) is None
    # 100 per minute would take 6 s for 10; 600 per hour takes 60 s.
    assert eta_seconds(10, account) == 60
