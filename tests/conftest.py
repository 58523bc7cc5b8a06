"""Shared fixtures: our own redis-server on a free loopback port, a unique
key prefix per test, and settings pointing at both."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from worker.config import AccountSettings, Settings
from worker.connection import redis_client
from worker.embedded import EmbeddedRedis

_prefixes = itertools.count()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A redis-server of the test session's own; never the machine's."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), persist=False)
    with server:
        yield server


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = redis_client(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def key_prefix() -> str:
    """A prefix no other test uses, so tests never see each other's keys."""
    return f"t{next(_prefixes)}"


def make_settings(redis_url: str, prefix: str, **account_changes: object) -> Settings:
    account = AccountSettings(
        name="default",
        base_url="http://127.0.0.1:9",
        username="demo",
        **account_changes,  # type: ignore[arg-type]
    )
    return Settings(redis_url=redis_url, key_prefix=prefix, accounts={"default": account})


@pytest.fixture
def tmp_state(tmp_path: Path) -> Path:
    return tmp_path
