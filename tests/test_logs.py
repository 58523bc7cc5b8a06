"""Secrets never reach a log line; phone numbers are masked in logs only."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from typer.testing import CliRunner

from tests.conftest import TIME_SCALE, Simulator, make_settings
from worker.cli import app
from worker.config.settings import Secret
from worker.config.sources import log_options
from worker.errors import ConfigError
from worker.logs import (
    WarningSampler,
    configure_logging,
    get_logger,
    mask_phone,
    redact,
    register_secret,
)
from worker.pool.workers import run_pool
from worker.queue.jobs import make_job
from worker.queue.lanes import Queue
from worker.store.keys import AccountKeys

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


def test_standard_library_records_go_through_the_same_redaction(log_lines: io.StringIO) -> None:
    register_secret("prod-key-7c1d9e0b44aa")
    try:
        raise ValueError("Got more than 8190 bytes: Authorization: Bearer unregistered-key-42")
    except ValueError:
        logging.getLogger("aiohttp.server").exception("Error handling request from 9845012345")
    logging.getLogger("asyncio").warning("task failed with prod-key-7c1d9e0b44aa inside")
    logging.getLogger("some.library").debug("basic dXNlcjpwYXNz and %s", "9845099999")

    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    assert [line["logger"] for line in lines] == ["aiohttp.server", "asyncio", "some.library"]
    assert [line["level"] for line in lines] == ["error", "warning", "debug"]
    text = log_lines.getvalue()
    for leaked in ("unregistered-key-42", "prod-key-7c1d9e0b44aa", "dXNlcjpwYXNz", "9845012345",
                   "9845099999"):  # fmt: skip
        assert leaked not in text
    assert "Bearer ***" in lines[0]["exception"] and "ValueError" in lines[0]["exception"]


def test_configuring_again_replaces_the_standard_library_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    try:
        configure_logging(level="info", json=True, stream=first)
        configure_logging(level="info", json=True, stream=second)
        logging.getLogger("x").info("once")
    finally:
        configure_logging(level="warning", json=True)
    assert first.getvalue() == "" and len(second.getvalue().splitlines()) == 1


def test_the_sampler_lets_one_warning_through_per_period_and_counts_the_rest() -> None:
    sampler = WarningSampler(10.0)
    assert sampler.admit(0.0) == 0
    assert [sampler.admit(t) for t in (1.0, 2.0, 9.9)] == [None, None, None]
    assert sampler.admit(10.0) == 3
    assert sampler.admit(15.0) is None and sampler.admit(20.5) == 1


def test_log_options_come_from_the_environment_and_refuse_what_they_do_not_know() -> None:
    assert log_options({}) == (None, None)
    assert log_options({"OZP_LOG_LEVEL": "WARNING", "OZP_LOG_FORMAT": "console"}) == (
        "warning",
        False,
    )
    assert log_options({"OZP_LOG_FORMAT": "json"}) == (None, True)
    for bad in ({"OZP_LOG_LEVEL": "loud"}, {"OZP_LOG_FORMAT": "xml"}):
        with pytest.raises(ConfigError, match="OZP_LOG_"):
            log_options(bad)


def test_every_line_names_its_logger(tmp_path: Path) -> None:
    stream = tmp_path / "log"
    with stream.open("w") as out:
        configure_logging(level="info", json=True, stream=out)
        get_logger("worker.pool.workers").info("pool.started")
    (line,) = [json.loads(text) for text in stream.read_text().splitlines()]
    assert (line["logger"], line["event"]) == ("worker.pool.workers", "pool.started")


def test_a_bad_log_format_is_a_usage_error_of_one_line() -> None:
    result = CliRunner().invoke(app, ["status"], env={"OZP_LOG_FORMAT": "xml"})
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: OZP_LOG_FORMAT must be one of json, console"
