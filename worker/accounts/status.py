"""What each account is doing, read from Redis: the ``status`` and ``token status`` views.

Read-only. Times come from the Redis server's clock (``TIME``), the clock
the limiter and the token store run on, so a host whose clock is off still
reports the right ages and rates. The token itself is never read: only its
generation and timestamps (``HMGET``), so it cannot end up in an output.

``status --json`` shape, per account (documented in the README)::

    {"state": "running" | "paused" | "halted" | "waiting_token",
     "queued": {"urgent": n, "bulk": n}, "in_flight": n, "delayed": n,
     "done": n, "dead": n, "paused": null or reason, "halted": null or reason,
     "rate_last_min": n, "eta_s": n or null,
     "token": {"expires_in_s": n or null, "generations_in_window": n,
               "budget": n, "budget_window_s": n, "waiting": null or reason}}

``state`` is the one the exporter's ``ozp_account_state`` reports: halted
wins over paused, paused over waiting for a token.
"""

from __future__ import annotations

import math
from typing import Any

from redis.asyncio import Redis

from worker.config.settings import AccountSettings, Settings
from worker.errors import ConfigError
from worker.limiter.permits import Limiter
from worker.queue.lanes import Queue
from worker.results.records import stored_int
from worker.store.keys import AccountKeys, accounts_key

RATE_PERIOD_S = 60.0


async def server_time_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def known_accounts(redis: Redis, settings: Settings) -> list[str]:
    """Configured accounts first, then any that only Redis knows (queued by another host)."""
    names = list(settings.accounts)
    seen = await redis.smembers(accounts_key(settings.key_prefix))
    names += sorted(str(name) for name in seen if name not in settings.accounts)
    return names


async def select_accounts(redis: Redis, settings: Settings, wanted: list[str] | None) -> list[str]:
    """The accounts asked for (all known ones if none); an unknown name is a ConfigError."""
    known = await known_accounts(redis, settings)
    if not wanted:
        return known
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ConfigError(f"unknown account {unknown[0]!r} (known: {', '.join(known) or 'none'})")
    return list(dict.fromkeys(wanted))


def account_settings(settings: Settings, name: str) -> AccountSettings:
    """An account's settings; one only Redis knows gets the vendor's defaults."""
    return settings.accounts.get(name) or AccountSettings(name=name)


def account_state(halted: object, paused: object, token_wait: object) -> str:
    """The account's one state (see ``worker.metrics.catalog.ACCOUNT_STATES``)."""
    if halted:
        return "halted"
    if paused:
        return "paused"
    return "waiting_token" if token_wait else "running"


def eta_seconds(outstanding: int, account: AccountSettings) -> int | None:
    """Time to send the backlog at the account's tightest cap; None when idle."""
    if outstanding <= 0:
        return None
    # Multiplied before dividing: 5 jobs at 100 per 60 s is exactly 3 s, not 3.0000001.
    return math.ceil(max(outstanding * cap.window_s / cap.limit for cap in account.rate_caps))


async def token_health(redis: Redis, keys: AccountKeys, account: AccountSettings) -> dict[str, Any]:
    """The token's age, expiry, generation and budget; never its value."""
    now_ms = await server_time_ms(redis)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hmget(keys.token, ["gen", "exp_ms", "issued_ms"])
        window_ms = round(account.token_budget_window_s * 1000)
        pipe.zcount(keys.token_generations, now_ms - window_ms, now_ms)
        pipe.get(keys.token_wait)
        pipe.get(keys.halted)
        (gen, exp_ms, issued_ms), generations, waiting, halted = await pipe.execute()
    expires_ms, issued = stored_int(exp_ms), stored_int(issued_ms)
    return {
        "account": account.name,
        "auth_mode": account.auth_mode,
        "present": expires_ms is not None,
        "generation": stored_int(gen) or 0,
        "age_s": _seconds(now_ms - issued) if issued is not None else None,
        # Negative once expired: the sign is the news.
        "expires_in_s": _seconds(expires_ms - now_ms) if expires_ms is not None else None,
        "generations_in_window": int(generations),
        "budget": account.token_budget,
        "budget_window_s": account.token_budget_window_s,
        "waiting": waiting,
        "halted": halted,
    }


def _seconds(ms: int) -> int:
    return math.floor(ms / 1000)


async def account_status(redis: Redis, settings: Settings, name: str) -> dict[str, Any]:
    """One account's entry of ``status --json``."""
    account = account_settings(settings, name)
    keys = AccountKeys(settings.key_prefix, name)
    counts = await Queue(redis, keys).counts()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hmget(keys.stats, ["deleted", "already_deleted", "dead"])
        pipe.get(keys.paused)
        pipe.get(keys.halted)
        (deleted, already, dead), paused, halted = await pipe.execute()
    now_s = await server_time_ms(redis) / 1000
    rate = await Limiter(redis, keys, account).granted_between(now_s - RATE_PERIOD_S, now_s)
    token = await token_health(redis, keys, account)
    return {
        "state": account_state(halted, paused, token["waiting"]),
        "queued": {"urgent": counts.urgent, "bulk": counts.bulk},
        "in_flight": counts.in_flight,
        "delayed": counts.delayed,
        "done": (stored_int(deleted) or 0) + (stored_int(already) or 0),
        "dead": stored_int(dead) or 0,
        "paused": paused or None,
        "halted": halted or None,
        "rate_last_min": rate,
        "eta_s": eta_seconds(counts.outstanding, account),
        "token": {
            "expires_in_s": token["expires_in_s"],
            "generations_in_window": token["generations_in_window"],
            "budget": token["budget"],
            "budget_window_s": token["budget_window_s"],
            "waiting": token["waiting"],
        },
    }


async def status_report(
    redis: Redis, settings: Settings, wanted: list[str] | None = None
) -> dict[str, Any]:
    """The whole ``status --json`` object."""
    names = await select_accounts(redis, settings, wanted)
    return {"accounts": {name: await account_status(redis, settings, name) for name in names}}
