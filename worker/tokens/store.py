"""The central token store: one token per account, in Redis.

Single flight across every process: a caller generates a token only if the
one it saw fail (or age) is still the current one, and only while holding
the refresh lock; everyone else picks up the new token from Redis. The
vendor's 10-per-hour generation budget is counted in Redis; when it is
spent the account waits with a reason, visible in ``status``, instead of
calling the endpoint. A credential error halts the account.

Tokens are read from Redis, not per job: each process keeps the current one
with a deadline on its own monotonic clock, computed from the JWT's ``exp``
and the Redis server's time.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from redis.asyncio import Redis

from worker.accounts.control import halt_account
from worker.config.settings import AccountSettings, token_refresh_ahead_s
from worker.errors import AccountHalted, TokenBudgetSpent, TokenUnavailable
from worker.events import wait_event
from worker.logs import get_logger, register_secret
from worker.metrics import process as metrics
from worker.metrics.catalog import GENERATION_FAILED, GENERATION_ISSUED, GENERATION_REFUSED
from worker.store.keys import AccountKeys
from worker.store.lua import register
from worker.vendor.client import OzonetelClient, TransportFailure
from worker.vendor.outcomes import Outcome, classify_token

log = get_logger(__name__)

# After a failed generation, wait this long (doubling, capped) before the next.
GENERATION_BACKOFF_S = 5.0
GENERATION_BACKOFF_MAX_S = 300.0
# How often a waiter looks for the token another process is generating.
WAIT_POLL_S = 0.05
# The refresh lock outlives one request to the token endpoint by this much.
LOCK_SLACK_S = 5.0


@dataclass(frozen=True)
class Token:
    value: str
    generation: int
    expires_mono: float
    refresh_at_mono: float

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.expires_mono

    @property
    def due_for_refresh(self) -> bool:
        return time.monotonic() >= self.refresh_at_mono


# How many configured lifetimes away a token's exp may be and still be believed.
MAX_BELIEVED_LIFETIMES = 4


def expiry_ms(token: str, fallback_ttl_s: float, now_ms: int) -> int:
    """The token's ``exp`` in epoch ms; the signature is the vendor's to check.

    An ``exp`` that is missing, not a number, or further away than
    :data:`MAX_BELIEVED_LIFETIMES` lifetimes (1e308 would overflow, a year
    would never be refreshed) gives way to the configured lifetime.
    """
    fallback = now_ms + round(fallback_ttl_s * 1000)
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        exp_ms = float(claims["exp"]) * 1000
    except (jwt.PyJWTError, KeyError, TypeError, ValueError, OverflowError, RecursionError):
        return fallback
    if (
        not math.isfinite(exp_ms)
        or exp_ms - now_ms > MAX_BELIEVED_LIFETIMES * fallback_ttl_s * 1000
    ):
        return fallback
    return round(exp_ms)


class TokenManager:
    def __init__(
        self,
        redis: Redis,
        keys: AccountKeys,
        account: AccountSettings,
        client: OzonetelClient,
        request_timeout_s: float,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._account = account
        self._client = client
        self._lock_ttl_ms = round((request_timeout_s + LOCK_SLACK_S) * 1000)
        self._owner = secrets.token_hex(8)
        self._cached: Token | None = None
        self._failures = 0
        self._begin = register(redis, "tokens/begin_refresh")
        self._commit = register(redis, "tokens/commit")
        self._release = register(redis, "tokens/release")
        self._load_script = register(redis, "tokens/load")

    async def current(self) -> Token:
        """A token to send with; refreshes it (once, centrally) when due."""
        token = self._cached
        if token is None or token.due_for_refresh:
            token = await self._load()
        if token is not None and not token.due_for_refresh:
            return token
        if token is not None and not token.expired:
            # Still valid: try to refresh ahead of time, but never wait for it.
            try:
                return await self._refresh_if_current(token.generation, wait=False) or token
            except TokenUnavailable:
                return token
        return await self._refresh_if_current(token.generation if token else 0, wait=True) or (
            await self._must_load()
        )

    async def keep_fresh(self, over: asyncio.Event) -> None:
        """Replace the token ahead of its expiry, on a timer, until ``over``.

        On a timer rather than on the request path: a request may wait for
        its permit longer than the token has left, and must find a fresh one
        when it wakes (see :meth:`newest`). Every process runs this; single
        flight makes sure only one of them generates.
        """
        while not over.is_set():
            try:
                token = await self.current()
                wait_s = token.refresh_at_mono - time.monotonic()
                if wait_s <= 0:
                    # Someone else holds the lock, or the budget is spent:
                    # look again soon, but without spinning on Redis.
                    wait_s = min(max((token.expires_mono - time.monotonic()) / 4, 0.05), 1.0)
            except TokenUnavailable as exc:
                wait_s = exc.retry_after_s
            except AccountHalted:
                return
            except Exception as exc:  # noqa: BLE001 - keep refreshing through Redis blips
                log.warning("token.keep_fresh_failed", account=self._account.name, error=exc)
                wait_s = 1.0
            await wait_event(over, min(wait_s, 60.0))

    async def newest(self, token: Token, generation: int) -> Token:
        """``token``, or the newer one if the store's ``generation`` is past it.

        Generating a token invalidates the older ones, so a token taken before
        a permit's sleep may be dead by its end: checked at fetch time, at no
        extra cost unless it did change.
        """
        if generation <= token.generation:
            return token
        if self._cached is not None and self._cached.generation >= generation:
            return self._cached
        return await self._load() or token

    async def force_refresh(self) -> Token:
        """Generate a new token now (the operator's ``token refresh``), single flight.

        Charged to the budget like any generation. If another process replaces
        the token while we wait for the lock, that newer token is the answer:
        the vendor keeps one valid token, so a second generation would only
        invalidate the first.
        """
        generation = int(await self._redis.hget(self._keys.token, "gen") or 0)
        self._cached = None
        return await self._refresh_if_current(generation, wait=True) or await self._must_load()

    async def on_rejected(self, token: Token) -> None:
        """The vendor refused ``token``: replace it, unless someone already has."""
        self._cached = None
        await self._refresh_if_current(token.generation, wait=True, rejected=True)

    async def _load(self) -> Token | None:
        seconds_text, micros_text, halted, fields = await self._load_script(
            keys=[self._keys.token, self._keys.halted]
        )
        seconds, micros = int(seconds_text), int(micros_text)
        stored = dict(zip(fields[::2], fields[1::2], strict=True))
        if halted:
            raise AccountHalted(self._account.name, halted)
        if not stored.get("value"):
            self._cached = None
            return None
        now_ms = seconds * 1000 + micros // 1000
        exp_ms = int(stored["exp_ms"])
        lifetime_s = (exp_ms - int(stored.get("issued_ms", now_ms))) / 1000
        # A token the vendor refused is as good as expired, whatever its exp.
        remaining_s = 0.0 if stored.get("rejected") == "1" else (exp_ms - now_ms) / 1000
        mono = time.monotonic()
        register_secret(stored["value"])
        self._cached = Token(
            value=stored["value"],
            generation=int(stored["gen"]),
            expires_mono=mono + remaining_s,
            refresh_at_mono=mono + remaining_s - token_refresh_ahead_s(max(lifetime_s, 0.0)),
        )
        return self._cached

    async def _must_load(self) -> Token:
        token = await self._load()
        if token is None or token.expired:
            raise TokenUnavailable("no valid token stored", retry_after_s=WAIT_POLL_S)
        return token

    async def _refresh_if_current(
        self, generation: int, *, wait: bool, rejected: bool = False
    ) -> Token | None:
        """Generate a new token if ``generation`` is still current; else load the newer one."""
        deadline = time.monotonic() + self._lock_ttl_ms / 1000 + 1
        while True:
            verdict, detail = await self._begin(
                keys=[
                    self._keys.token,
                    self._keys.token_lock,
                    self._keys.token_generations,
                    self._keys.halted,
                    self._keys.token_wait,
                ],
                args=[
                    generation,
                    self._owner,
                    self._lock_ttl_ms,
                    self._account.token_budget,
                    round(self._account.token_budget_window_s * 1000),
                    "1" if rejected else "0",
                ],
            )
            if verdict == "current":
                return await self._load()
            if verdict == "halted":
                raise AccountHalted(self._account.name, str(detail))
            if verdict == "budget":
                log.warning("token.budget_spent", account=self._account.name, wait_ms=detail)
                raise TokenBudgetSpent("token generation budget spent", int(detail) / 1000)
            if verdict == "locked":
                if not wait:
                    return None
                if time.monotonic() > deadline:
                    raise TokenUnavailable(
                        "token refresh in progress elsewhere", int(detail) / 1000
                    )
                await asyncio.sleep(min(WAIT_POLL_S, int(detail) / 1000))
                continue
            return await self._generate()

    async def _generate(self) -> Token:
        log.info("token.generate", account=self._account.name)
        generations = metrics.TOKEN_GENERATIONS
        try:
            answer = await self._client.generate_token()
        except TransportFailure as exc:
            generations.labels(self._account.name, GENERATION_FAILED).inc()
            await self._back_off(f"token endpoint unreachable: {exc}")
        verdict = classify_token(answer)
        result = {Outcome.ISSUED: GENERATION_ISSUED, Outcome.ACCOUNT: GENERATION_REFUSED}
        generations.labels(self._account.name, result.get(verdict.outcome, GENERATION_FAILED)).inc()
        if verdict.outcome is Outcome.ACCOUNT:
            await halt_account(self._redis, self._keys, f"token endpoint: {verdict.message}")
            await self._release(keys=[self._keys.token_lock], args=[self._owner, 0])
            raise AccountHalted(self._account.name, verdict.message)
        if verdict.outcome is not Outcome.ISSUED:
            await self._back_off(f"token endpoint answered: {verdict.message}")
        assert answer.body is not None
        value = str(answer.body["token"])
        register_secret(value)
        seconds, micros = await self._redis.time()
        exp = expiry_ms(value, self._account.token_ttl_s, seconds * 1000 + micros // 1000)
        generation = await self._commit(
            keys=[self._keys.token, self._keys.token_lock], args=[self._owner, value, exp]
        )
        self._failures = 0
        if int(generation) < 0:
            raise TokenUnavailable("token refresh lock expired mid-call", WAIT_POLL_S)
        log.info("token.generated", account=self._account.name, generation=int(generation))
        return await self._must_load()

    async def _back_off(self, why: str) -> Any:
        """Keep the lock through a back-off so no other process tries meanwhile."""
        self._failures += 1
        delay = min(GENERATION_BACKOFF_S * 2 ** (self._failures - 1), GENERATION_BACKOFF_MAX_S)
        await self._release(keys=[self._keys.token_lock], args=[self._owner, round(delay * 1000)])
        log.warning("token.generate_failed", account=self._account.name, why=why, retry_in_s=delay)
        raise TokenUnavailable(why, delay)
