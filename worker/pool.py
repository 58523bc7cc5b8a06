"""The asyncio worker pool: one dispatcher per account, bounded concurrency.

Per request, in this order (see DESIGN.md, "Take the permit last"):
1. a free sending slot (``concurrency`` per account per process);
2. the token, from the central store;
3. a permit from the shared limiter, slept on until its slot;
4. the job, handed out by ``queue_fetch.lua`` at that moment, urgent first,
   which is why an urgent job waits for at most the permits already granted;
5. the request, sent at once, and its answer settled in one atomic step.

Shutdown: a stop event ends fetching; requests in flight finish (bounded by
the request timeout); a job still held after that is left for reclaim.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

import aiohttp
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker.config import AccountSettings, Settings
from worker.control import halt_account
from worker.errors import AccountHalted, TokenUnavailable
from worker.events import wait_event
from worker.jobs import Job, unsendable_reason
from worker.keys import AccountKeys
from worker.limiter import Limiter, Permit
from worker.logs import get_logger, register_secret
from worker.outcomes import (
    MALFORMED,
    NO_RECORD,
    RETRIES_EXHAUSTED,
    Classification,
    Outcome,
    classify_delete,
    transport_failure,
)
from worker.ozonetel import OzonetelClient, TransportFailure, create_session
from worker.queue import Delivery, Early, Empty, Fetched, Late, Paused, Queue, RetryShare
from worker.results import Record, Recorder
from worker.tokens import Token, TokenManager

log = get_logger(__name__)

# How often a paused or halted account looks again.
PAUSED_POLL_S = 1.0
# Waits between attempts while Redis cannot be reached.
REDIS_OUTAGE_WAIT_S = 0.1
REDIS_OUTAGE_WAIT_MAX_S = 5.0

T = TypeVar("T")


class AccountExit(StrEnum):
    STOPPED = "stopped"  # asked to stop
    EMPTY = "empty"  # --until-empty and nothing is left
    HALTED = "halted"  # a credential error halted the account


def consumer_name() -> str:
    """Unique per process, readable in XINFO CONSUMERS."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def backoff_s(attempt: int, base_s: float, max_s: float) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(max, base·2^(n-1))]."""
    return random.uniform(0, min(max_s, base_s * 2 ** max(attempt - 1, 0)))


@dataclass
class _Held:
    """A fetched job and what was spent on it."""

    delivery: Delivery
    permit: Permit
    token: Token | None
    fetched_mono: float


class AccountWorker:
    def __init__(
        self,
        settings: Settings,
        account: AccountSettings,
        redis: Redis,
        session: aiohttp.ClientSession,
        consumer: str,
        stopping: asyncio.Event,
    ) -> None:
        self._settings = settings
        self._account = account
        self._redis = redis
        self._consumer = consumer
        self._stopping = stopping
        self.keys = AccountKeys(settings.key_prefix, account.name)
        self.queue = Queue(redis, self.keys)
        self.limiter = Limiter(redis, self.keys, account)
        self.recorder = Recorder(redis, self.keys, settings)
        client = OzonetelClient(session, account)
        self._client = client
        self.tokens = (
            TokenManager(redis, self.keys, account, client, settings.request_timeout_s)
            if account.auth_mode == "token"
            else None
        )
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._retry_share = RetryShare(
            per_window=max(1, int(settings.retry_share * account.rate_limit)),
            window_us=round((account.rate_window_s + account.rate_margin_s) * 1_000_000),
        )
        self._sending: set[asyncio.Task[None]] = set()
        self._log = log.bind(account=account.name)
        register_secret(account.api_key.reveal())

    async def run(self, until_empty: bool = False) -> AccountExit:
        await self.queue.ensure_groups()
        dispatch_over = asyncio.Event()
        helpers = [asyncio.create_task(self._reclaim_until(dispatch_over))]
        if self.tokens is not None:
            helpers.append(asyncio.create_task(self.tokens.keep_fresh(dispatch_over)))
        try:
            return await self._dispatch(until_empty)
        except asyncio.CancelledError:
            # Told to stop at once (a second signal): abandon the requests in
            # flight too. Their jobs stay held, and are taken over by another
            # worker after the visibility timeout, marked "possibly sent".
            for task in self._sending:
                task.cancel()
            raise
        finally:
            # Ended by an event, not by cancellation: a cancel that lands as a
            # Redis reply arrives can be swallowed, and the loop would go on.
            dispatch_over.set()
            await asyncio.gather(*helpers)
            await self._finish_in_flight()

    async def _dispatch(self, until_empty: bool) -> AccountExit:
        paused_reason: str | None = None
        outage_wait = REDIS_OUTAGE_WAIT_S
        while not self._stopping.is_set():
            await self._slots.acquire()
            handed_over = False
            try:
                token = await self.tokens.current() if self.tokens else None
                permit = await self.limiter.acquire()
                fetched = await self._fetch_on(permit)
                if fetched is None:
                    break
                if isinstance(fetched, Paused):
                    if fetched.reason != paused_reason:
                        self._log.warning("account.paused", reason=fetched.reason)
                        paused_reason = fetched.reason
                    if fetched.reason.startswith("halted") and until_empty:
                        return AccountExit.HALTED
                    await self._sleep(PAUSED_POLL_S)
                    continue
                paused_reason = None
                if isinstance(fetched, Empty):
                    if until_empty and not self._sending and await self._drained():
                        return AccountExit.EMPTY
                    await self.queue.wait_for_work(fetched)
                    continue
                if token is not None and self.tokens is not None:
                    token = await self.tokens.newest(token, fetched.token_generation)
                held = _Held(fetched.delivery, permit, token, time.monotonic())
                self._start_sending(held)
                handed_over = True
                outage_wait = REDIS_OUTAGE_WAIT_S
                # Let the request leave now, before this loop asks Redis for
                # the next permit: the time from the permit check to the
                # vendor is what the safety margin has to cover.
                await asyncio.sleep(0)
            except TokenUnavailable as exc:
                self._log.warning("token.unavailable", why=str(exc), retry_in_s=exc.retry_after_s)
                await self._sleep(exc.retry_after_s)
            except AccountHalted as exc:
                self._log.error("account.halted", reason=exc.reason)
                if until_empty:
                    return AccountExit.HALTED
                await self._sleep(PAUSED_POLL_S)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                # Redis is restarting or unreachable: wait, then carry on.
                # Nothing is lost: a held job stays in its lane's pending list.
                self._log.warning("redis.unavailable", error=exc, retry_in_s=outage_wait)
                await self._sleep(outage_wait)
                outage_wait = min(outage_wait * 2, REDIS_OUTAGE_WAIT_MAX_S)
            finally:
                if not handed_over:
                    self._slots.release()
        return AccountExit.STOPPED

    async def _drained(self) -> bool:
        return (await self.queue.counts()).outstanding == 0

    async def _fetch_on(self, permit: Permit) -> Fetched | Paused | Empty | None:
        """Sleep until the permit's slot, then trade it for a job; None if stopping."""
        while True:
            if not await self._sleep(permit.seconds_until_slot()):
                await self.limiter.refund(permit)
                return None
            result = await self.queue.fetch(
                permit, self._consumer, self.limiter.lateness_tolerance_us, self._retry_share
            )
            if isinstance(result, Early):
                # Our clock ran ahead of Redis's by a hair: wait out the difference.
                await asyncio.sleep(result.wait_s)
                continue
            if isinstance(result, Late):
                # Too late to use safely (a stalled loop?): refunded, take a new one.
                self._log.info("permit.late")
                permit = await self.limiter.acquire()
                continue
            return result

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless asked to stop; False if stopping."""
        return not await wait_event(self._stopping, seconds)

    def _start_sending(self, held: _Held) -> None:
        task = asyncio.create_task(self._send(held))
        self._sending.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            self._log.error("job.send_crashed", error=task.exception())

    async def _finish_in_flight(self) -> None:
        if not self._sending:
            return
        # Requests end by themselves within the request timeout; a job still
        # held after that is cancelled here and reclaimed by another process.
        _, late = await asyncio.wait(
            set(self._sending), timeout=self._settings.request_timeout_s + 1.0
        )
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)

    async def _send(self, held: _Held) -> None:
        delivery = held.delivery
        job = delivery.job
        if job is None:
            await self.limiter.refund(held.permit)
            await self._finish(held, Record("dead", delivery.malformed or "", 0, MALFORMED))
            return
        refusal = unsendable_reason(job)
        if refusal is None and job.attempts >= self._settings.max_attempts:
            refusal = RETRIES_EXHAUSTED
        if refusal is not None:
            # Dead before it costs the vendor anything: the permit goes back.
            await self.limiter.refund(held.permit)
            message = "not sent: " + refusal.replace("_", " ")
            await self._finish(held, Record("dead", message, job.attempts, refusal))
            return
        try:
            answer = await self._client.delete_record(job, held.token.value if held.token else None)
            verdict = classify_delete(answer)
        except TransportFailure as exc:
            verdict = transport_failure(str(exc))
        await self._settle(held, job, verdict)

    async def _settle(self, held: _Held, job: Job, verdict: Classification) -> None:
        attempts = job.attempts + 1
        match verdict.outcome:
            case Outcome.DELETED:
                await self._finish(held, Record("deleted", verdict.message, attempts))
            case Outcome.NOT_FOUND if held.delivery.maybe_sent:
                # An earlier attempt may have deleted it and lost the answer.
                await self._finish(held, Record("already_deleted", verdict.message, attempts))
            case Outcome.NOT_FOUND | Outcome.BAD_JOB:
                reason = verdict.reason or NO_RECORD
                await self._finish(held, Record("dead", verdict.message, attempts, reason))
            case Outcome.TOKEN if held.token is not None:
                await self._retry(held, job, delay_s=0.0, counted=False)
                if self.tokens is not None:
                    with contextlib.suppress(TokenUnavailable, AccountHalted):
                        await self.tokens.on_rejected(held.token)
            case Outcome.TOKEN | Outcome.ACCOUNT:
                # A token answer in apikey mode means the account wants tokens:
                # a configuration error, like wrong credentials.
                await self._retry(held, job, delay_s=0.0, counted=False)
                await halt_account(self._redis, self.keys, verdict.message)
            case Outcome.RATE_LIMITED:
                until = await self.limiter.cool_down()
                self._log.warning("limiter.cool_down", message=verdict.message, until=until)
                await self._retry(held, job, delay_s=0.0, counted=False)
            case _:
                if attempts >= self._settings.max_attempts:
                    reason = verdict.reason or RETRIES_EXHAUSTED
                    await self._finish(held, Record("dead", verdict.message, attempts, reason))
                else:
                    delay = backoff_s(
                        attempts, self._settings.retry_base_s, self._settings.retry_max_s
                    )
                    # The request may have arrived and deleted the record.
                    await self._retry(held, job, delay, counted=True, maybe_sent=True)
                    self._log.info(
                        "job.retry",
                        job_id=job.id,
                        attempts=attempts,
                        why=verdict.message,
                        delay_s=round(delay, 3),
                    )

    async def _retry(
        self, held: _Held, job: Job, delay_s: float, counted: bool, maybe_sent: bool = False
    ) -> None:
        fields = dict(held.delivery.fields)
        if counted:
            fields["attempts"] = str(job.attempts + 1)
        if maybe_sent or held.delivery.maybe_sent:
            fields["sent"] = "1"
        if job.enqueued_ms is not None:
            fields["enqueued"] = str(job.enqueued_ms)
        await self._durably(lambda: self.queue.schedule_retry(held.delivery, fields, delay_s))

    async def _finish(self, held: _Held, record: Record) -> None:
        recorded = await self._durably(lambda: self.recorder.record(held.delivery, record))
        fields = held.delivery.fields
        self._log.info(
            "job.finished",
            job_id=fields.get("id", held.delivery.entry_id),
            outcome=record.outcome,
            reason=record.reason,
            attempts=record.attempts,
            latency_ms=round((time.monotonic() - held.fetched_mono) * 1000, 1),
            phone=fields.get("phone", ""),
            duplicate_delivery=not recorded,
        )

    async def _durably(self, write: Callable[[], Awaitable[T]]) -> T:
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
            except (RedisConnectionError, RedisTimeoutError) as exc:
                if time.monotonic() + delay > deadline:
                    raise
                self._log.warning("redis.write_retry", error=exc, retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _reclaim_until(self, over: asyncio.Event) -> None:
        interval = max(self._settings.visibility_timeout_s / 4, 0.5)
        while not over.is_set():
            try:
                moved = await self.queue.reclaim(
                    self._consumer, self._settings.visibility_timeout_s
                )
                if moved:
                    self._log.warning("jobs.reclaimed", count=moved)
            except Exception as exc:  # noqa: BLE001 - a failed sweep is retried next interval
                self._log.warning("jobs.reclaim_failed", error=exc)
            await wait_event(over, interval)


async def run_pool(
    settings: Settings,
    redis: Redis,
    stopping: asyncio.Event,
    *,
    until_empty: bool = False,
    accounts: list[str] | None = None,
) -> dict[str, AccountExit]:
    """Run a dispatcher for each account until stopped (or, with
    ``until_empty``, until each account has nothing left or is halted)."""
    names = accounts or list(settings.accounts)
    chosen = [settings.account(name) for name in names]
    for account in chosen:
        account.require_credentials()
    session = create_session(settings.request_timeout_s)
    consumer = consumer_name()
    try:
        workers = [
            AccountWorker(settings, account, redis, session, consumer, stopping)
            for account in chosen
        ]
        log.info("pool.started", consumer=consumer, accounts=names)
        exits = await asyncio.gather(*(worker.run(until_empty) for worker in workers))
    finally:
        await session.close()
    log.info("pool.stopped", exits=[str(e) for e in exits])
    return dict(zip(names, exits, strict=True))
