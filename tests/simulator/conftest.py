"""Fixtures for the simulator's tests: real simulators on 127.0.0.1, real HTTP clients.

Nothing global is configured here; each test module marks its coroutines
``asyncio`` itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio
from aiohttp import web
from simclient import Sim, SimFactory, make_config

from worker.simulator import SimulatorConfig, start


@pytest_asyncio.fixture
async def make_sim() -> AsyncIterator[SimFactory]:
    """Start simulators on free ports; all are stopped when the test ends."""
    started: list[tuple[web.AppRunner, aiohttp.ClientSession]] = []

    async def _make(sim_config: SimulatorConfig | None = None, **overrides: Any) -> Sim:
        chosen = sim_config or make_config(**overrides)
        runner, url = await start(chosen, "127.0.0.1", 0)
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        started.append((runner, session))
        return Sim(url, session, chosen)

    yield _make
    for runner, session in started:
        await session.close()
        await runner.cleanup()


@pytest_asyncio.fixture
async def sim(make_sim: SimFactory) -> Sim:
    """A simulator with default settings and the test campaign."""
    return await make_sim()
