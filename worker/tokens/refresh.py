"""The operator's ``token refresh``: one new token now, through the single flight.

It goes through :class:`~worker.tokens.store.TokenManager` like any worker would,
so the lock, the generation check and the 10-per-hour budget all apply: if
another process replaces the token meanwhile, that newer token is the
answer and no second one is generated.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from worker.accounts.status import token_health
from worker.config.settings import AccountSettings, Settings
from worker.errors import BadInput
from worker.store.keys import AccountKeys
from worker.tokens.store import TokenManager
from worker.vendor.client import OzonetelClient, create_session


async def force_refresh(
    redis: Redis, settings: Settings, account: AccountSettings
) -> dict[str, Any]:
    """Generate a new token unless another process just did; return the token's health."""
    if account.auth_mode != "token":
        raise BadInput(
            f"account {account.name!r} authenticates with its API key "
            "(OZONETEL_AUTH_MODE=apikey): there is no token to refresh"
        )
    keys = AccountKeys(settings.key_prefix, account.name)
    session = create_session(settings.request_timeout_s)
    try:
        client = OzonetelClient(session, account)
        manager = TokenManager(redis, keys, account, client, settings.request_timeout_s)
        # Not on_rejected(): that marks the current token refused, and a spent
        # budget would then leave the account without the valid token it has.
        await manager.force_refresh()
    finally:
        await session.close()
    return await token_health(redis, keys, account)
