"""Secrets never reach a log line; phone numbers are masked in logs only."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.conftest import TIME_SCALE, Simulator, make_settings
from worker.config import Secret
from worker.jobs import make_job
from worker.keys import AccountKeys
from worker.logs import configure_logging, get_logger, mask_phone, redact, register_secret
from worker.pool import run_pool
from worker.queue import Queue

PHONES = [f"9845{i:06d}" for i in range(12)]
API_KEY = "sk-live-7f3a9c1e55d04b2b"


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure_logging(level="debug", json=True, stream=buffer)
    yield buffer
    configure_logging(level="warning", json=True)


def test_redaction_scrubs_secrets_and_masks_phones_but_keeps_ids() -> None:
    register_secret("tok-abcdef-123456")
    event: dict[str, Any] = {
        "event": "x",
        "phone": "+919845012345",
        "token": "anything at all",
        "detail": "sent Bearer tok-abcdef-123456 for 9845012345",
        "job_id": "1234567890abcdef",
        "nested": {"apiKey": "k", "note": "call 08041234567"},
        "count": 1234567,
    }
    out = redact(None, "info", event)
    assert out["phone"] == "**********345"
    assert out["token"] == "***"
    assert out["detail"] == "sent Bearer *** for *******345"
    assert out["job_id"] == "1234567890abcdef"
    assert out["nested"] == {"apiKey": "***", "note": "call ********567"}
    assert out["count"] == 1234567
    assert mask_phone("12") == "**"


async def test_a_whole_run_logs_no_key_no_token_and_no_whole_number(
    redis: Redis,
    redis_url: str,
    key_prefix: str,
    simulator_factory: Any,
    log_lines: io.StringIO,
) -> None:
    from worker.simulator import AccountSpec

    sim: Simulator = await simulator_factory(
        campaigns={"c": set(PHONES[:6])},
        time_scale=TIME_SCALE,
        accounts={"demo": AccountSpec(API_KEY)},
        error_5xx_rate=0.3,
        seed=7,
    )
    settings = make_settings(redis_url, key_prefix, base_url=sim.url, api_key=Secret(API_KEY))
    keys = AccountKeys(key_prefix, "default")
    await Queue(redis, keys).enqueue_many(make_job("c", p) for p in PHONES)
    await sim.control("tokens/expire")  # forces token logging paths too
    stopping = asyncio.Event()
    await asyncio.wait_for(run_pool(settings, redis, stopping, until_empty=True), 60)
    # A careless call site cannot leak either, whatever it passes.
    token = await redis.hget(keys.token, "value")
    assert token
    get_logger("test").error("oops", body={"apiKey": API_KEY}, text=f"Bearer {token}")

    text = log_lines.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    finished = [line for line in lines if line["event"] == "job.finished"]
    assert len(finished) == len(PHONES)
    assert API_KEY not in text and token not in text
    for phone in PHONES:
        assert phone not in text
    assert {line["phone"] for line in finished} == {mask_phone(p) for p in PHONES}
    # The results stream keeps the numbers whole: producers need them.
    results = await redis.xrange(keys.results)
    assert {fields["phone"] for _, fields in results} == set(PHONES)
