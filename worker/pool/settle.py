"""Settling a job after its request: the answer's meaning, turned into one
terminal record, or a retry, or an account halted, or a limiter cooled.

Every write here runs through :meth:`Settler.durably`: the vendor's answer
exists only in this process until it is written, so a Redis outage is
waited out (up to half the visibility timeout) rather than losing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import AuthenticationError as RedisAuthenticationError
from redis.exceptions import AuthorizationError as RedisAuthorizationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker.accounts.control import halt_account
from worker.config.settings import Settings
from worker.errors import AccountHalted, TokenUnavailable
from worker.limiter.permits import Limiter, Permit
from worker.logs import get_logger
from worker.metrics import process as metrics
from worker.queue.jobs import Job, readable
from worker.queue.lanes import Delivery, Queue
from worker.results.records import Record, Recorder
from worker.store.keys import AccountKeys
from worker.tokens.store import Token, TokenManager
from worker.vendor.outcomes import NO_RECORD, RETRIES_EXHAUSTED, Classification, Outcome

log = get_logger(__name__)

T = TypeVar("T")


def backoff_s(attempt: int, base_s: float, max_s: float) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(max, base·2^(n-1))]."""
    return random.uniform(0, min(max_s, base_s * 2 ** max(attempt - 1, 0)))


@dataclass
class Held:
    """A fetched job and what was spent on it."""

    delivery: Delivery
    permit: Permit
    token: Token | None
    fetched_mono: float


class Settler:
    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        keys: AccountKeys,
        queue: Queue,
        limiter: Limiter,
        recorder: Recorder,
        tokens: TokenManager | None,
    ) -> None:
        self._settings = settings
        self._redis = redis
        self._keys = keys
        self._queue = queue
        self._limiter = limiter
        self._recorder = recorder
        self._tokens = tokens
        self._log = log.bind(account=keys.account)

    async def settle(self, held: Held, job: Job, verdict: Classification) -> None:
        """Settle the answer to a request that left: every path below writes
        through record.lua or retry.lua exactly once with ``sent=True``, which
        counts the request in the rate chart in that same step."""
        attempts = job.attempts + 1
        match verdict.outcome:
            case Outcome.DELETED:
                await self.finish(held, Record("deleted", verdict.message, attempts), sent=True)
            case Outcome.NOT_FOUND if held.delivery.maybe_sent:
                # An earlier attempt may have deleted it and lost the answer.
                record = Record("already_deleted", verdict.message, attempts)
                await self.finish(held, record, sent=True)
            case Outcome.NOT_FOUND | Outcome.BAD_JOB:
                reason = verdict.reason or NO_RECORD
                record = Record("dead", verdict.message, attempts, reason)
                await self.finish(held, record, sent=True)
            case Outcome.TOKEN if held.token is not None:
                await self.retry(held, job, delay_s=0.0, counted=False, sent=True)
                if self._tokens is not None:
                    with contextlib.suppress(TokenUnavailable, AccountHalted):
                        await self._tokens.on_rejected(held.token)
            case Outcome.TOKEN | Outcome.ACCOUNT:
                # A token answer in apikey mode means the account wants tokens:
                # a configuration error, like wrong credentials.
                await self.retry(held, job, delay_s=0.0, counted=False, sent=True)
                await halt_account(self._redis, self._keys, verdict.message)
            case Outcome.RATE_LIMITED:
                until = await self._limiter.cool_down()
                self._log.warning("limiter.cool_down", message=verdict.message, until=until)
                await self.retry(held, job, delay_s=0.0, counted=False, sent=True)
            case _:
                if attempts >= self._settings.max_attempts:
                    reason = verdict.reason or RETRIES_EXHAUSTED
                    record = Record("dead", verdict.message, attempts, reason)
                    await self.finish(held, record, sent=True)
                else:
                    delay = backoff_s(
                        attempts, self._settings.retry_base_s, self._settings.retry_max_s
                    )
                    # The request may have arrived and deleted the record.
                    await self.retry(held, job, delay, counted=True, maybe_sent=True, sent=True)
                    self._log.info(
                        "job.retry",
                        job_id=job.id,
                        attempts=attempts,
                        why=verdict.message,
                        delay_s=round(delay, 3),
                    )

    async def retry(
        self,
        held: Held,
        job: Job,
        delay_s: float,
        counted: bool,
        maybe_sent: bool = False,
        *,
        sent: bool = False,
    ) -> None:
        """Schedule the job again; ``sent``: a request left on ``held``'s permit
        (``counted``: and it counts as an attempt)."""
        fields = dict(held.delivery.fields)
        if counted:
            fields["attempts"] = str(job.attempts + 1)
        if maybe_sent or held.delivery.maybe_sent:
            fields["sent"] = "1"
        if job.enqueued_ms is not None:
            fields["enqueued"] = str(job.enqueued_ms)
        slot = held.permit.slot_us if sent else None
        await self.durably(
            lambda: self._queue.schedule_retry(held.delivery, fields, delay_s, sent_slot_us=slot)
        )

    async def finish(self, held: Held, record: Record, *, sent: bool = False) -> None:
        """Write the job's terminal record; ``sent``: a request left on ``held``'s permit."""
        slot = held.permit.slot_us if sent else None
        recorded = await self.durably(
            lambda: self._recorder.record(held.delivery, record, sent_slot_us=slot)
        )
        if recorded:
            # Only the write that made the record counts: summed over every
            # process, each job is counted once however often it was delivered.
            metrics.OUTCOMES.labels(self._keys.account, record.outcome, record.reason or "").inc()
        fields = held.delivery.fields
        # Off the wire, these may be anything: bounded and readable in the log.
        self._log.info(
            "job.finished",
            job_id=readable(fields.get("id", held.delivery.entry_id), 80),
            outcome=record.outcome,
            reason=record.reason,
            attempts=record.attempts,
            latency_ms=round((time.monotonic() - held.fetched_mono) * 1000, 1),
            phone=readable(fields.get("phone", ""), 40),
            duplicate_delivery=not recorded,
        )

    async def durably(self, write: Callable[[], Awaitable[T]]) -> T:
        """Retry a write that settles a job through a Redis outage.

        The vendor's answer is known only here; losing it would cost another
        request later (the job would be reclaimed and sent again). Past half
        the visibility timeout another process may take the job over, so we
        give up then and let that happen.
        """
        deadline = time.monotonic() + self._settings.visibility_timeout_s / 2
        delay = 0.05
        while True:
            try:
                return await write()
            except (RedisAuthenticationError, RedisAuthorizationError):
                raise  # refused credentials do not come back by waiting
            except (RedisConnectionError, RedisTimeoutError) as exc:
                if time.monotonic() + delay > deadline:
                    raise
                self._log.warning("redis.write_retry", error=exc, retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
