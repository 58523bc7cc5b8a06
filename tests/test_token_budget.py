"""The token budget counts every generation, however many come from one process."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from tests.conftest import Simulator, make_settings
from worker.errors import TokenBudgetSpent
from worker.store.keys import AccountKeys
from worker.tokens.store import TokenManager
from worker.vendor.client import OzonetelClient, create_session


async def test_one_process_generating_again_and_again_is_stopped_at_the_budget(
    redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> None:
    # A budget of 3 the simulator does not enforce (it allows 10): only our
    # own count can stop the fourth generation.
    sim: Simulator = await simulator_factory(time_scale=30)
    settings = make_settings(redis_url, key_prefix, base_url=sim.url, token_budget=3)
    account = settings.account()
    keys = AccountKeys(key_prefix, "default")
    session = create_session(settings.request_timeout_s)
    try:
        manager = TokenManager(
            redis, keys, account, OzonetelClient(session, account), settings.request_timeout_s
        )
        generations = [(await manager.force_refresh()).generation for _ in range(3)]
        with pytest.raises(TokenBudgetSpent):
            await manager.force_refresh()
    finally:
        await session.close()

    assert generations == [1, 2, 3]
    asked = [r for r in (await sim.inspect())["requests"] if r["endpoint"] == "token"]
    assert len(asked) == 3
    assert await redis.zcard(keys.token_generations) == 3
    assert await redis.exists(keys.token_wait) == 1
