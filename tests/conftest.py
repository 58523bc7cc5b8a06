"""Shared fixtures: our own redis-server on a free loopback port, a unique
key prefix per test, and settings pointing at both."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from worker.config.settings import AccountSettings, Secret, Settings
from worker.logs import configure_logging
from worker.simulator import SimulatorConfig
from worker.simulator import start as start_simulator_server
from worker.store.connection import redis_client
from worker.store.embedded import EmbeddedRedis

_prefixes = itertools.count()


@pytest.fixture(scope="session", autouse=True)
def _structured_logs() -> None:
    """Logs as production writes them, redaction included."""
    configure_logging(level="warning", json=True)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """A CLI command configures logging onto the runner's captured stderr,
    which is closed afterwards; later tests must log where they did before."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


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


# Vendor time compressed 30 times: 100 requests per 2 s, tokens live 2 minutes.
TIME_SCALE = 30.0
FAST_WINDOW_S = 60.0 / TIME_SCALE


def make_settings(
    redis_url: str,
    prefix: str,
    global_changes: dict[str, Any] | None = None,
    **account_changes: Any,
) -> Settings:
    """Settings for one account named ``default``, tuned for fast tests."""
    account_values: dict[str, Any] = {
        "name": "default",
        "base_url": "http://127.0.0.1:9",
        "username": "demo",
        "api_key": Secret("demo-key"),
        "rate_window_s": FAST_WINDOW_S,
        "rate_margin_s": 0.02,
        "token_budget_window_s": 3600.0 / TIME_SCALE,
    }
    account_values.update(account_changes)
    global_values: dict[str, Any] = {
        "request_timeout_s": 5.0,
        "visibility_timeout_s": 15.0,
        "retry_base_s": 0.05,
        "retry_max_s": 0.5,
    }
    global_values.update(global_changes or {})
    settings = Settings(
        redis_url=redis_url,
        key_prefix=prefix,
        accounts={"default": AccountSettings(**account_values)},
        **global_values,
    )
    settings.validate()
    return settings


@pytest.fixture
def tmp_state(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
async def simulator_factory() -> AsyncIterator[Callable[..., Awaitable[Simulator]]]:
    """Start simulators over real HTTP on loopback; each is stopped after the test."""
    runners: list[web.AppRunner] = []

    async def start_simulator(**config: Any) -> Simulator:
        sim_config = SimulatorConfig(**config)
        runner, url = await start_simulator_server(sim_config, "127.0.0.1", 0)
        runners.append(runner)
        return Simulator(url, sim_config)

    yield start_simulator
    for runner in runners:
        await runner.cleanup()


@dataclass(frozen=True)
class Simulator:
    url: str
    config: SimulatorConfig

    async def inspect(self) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.url}/_sim/requests") as response,
        ):
            return dict(await response.json())

    async def campaigns(self) -> dict[str, list[str]]:
        """The numbers still in each campaign."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.url}/_sim/campaigns") as response,
        ):
            return dict((await response.json())["campaigns"])

    async def control(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.url}/_sim/{path}", json=body or {}) as response,
        ):
            assert response.status == 200, await response.text()
            return dict(await response.json())


async def eventually(check: Callable[[], Awaitable[object]], timeout_s: float = 30.0) -> None:
    """Poll ``check`` until it is truthy; fail the test after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s: {check}")
        await asyncio.sleep(0.02)


AppClient = TestClient[web.Request, web.Application]


@pytest.fixture
async def app_client() -> AsyncIterator[Callable[[web.Application], Awaitable[AppClient]]]:
    """Serve an aiohttp app of ours on loopback; each is closed after the test."""
    clients: list[AppClient] = []

    async def start(app: web.Application) -> AppClient:
        client: AppClient = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()
