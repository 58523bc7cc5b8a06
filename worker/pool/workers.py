"""The asyncio worker pool: one dispatcher per account, bounded concurrency.

Per request, in this order; the permit comes last, so that it is spent the
moment it matures and never sits unused while something else is awaited:
1. a free sending slot (``concurrency`` per account per process);
2. the token, from the central store;
3. a permit from the shared limiter, slept on until its slot;
4. the job, handed out by ``queue/fetch.lua`` at that moment, urgent first,
   which is why an urgent job waits for at most the permits already granted;
5. the request, sent at once, and its answer settled in one atomic step.

Two Redis calls per job, besides the request: the fetch, and the settle. A
dispatcher that will have a free slot for its next request has its next
permit reserved by the fetch that hands out this job (and one whose permit
came late, its replacement), rather than asking in a call of its own: the
same order, as the slot is already known to be free and the token is kept
in memory, without the round trip.

Shutdown: a stop event ends fetching; requests in flight finish (bounded by
the request timeout); a job still held after that is left for reclaim.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time

import aiohttp
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError as RedisAuthenticationError
from redis.exceptions import AuthorizationError as RedisAuthorizationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker.accounts.control import AccountExit
from worker.config.settings import AccountSettings, Settings
from worker.errors import AccountHalted, TokenUnavailable
from worker.events import wait_event
from worker.limiter.permits import Limiter, Permit
from worker.logs import get_logger, register_secret
from worker.metrics import process as metrics
from worker.metrics.catalog import (
    ANSWER_DROPPED,
    ANSWER_TIMEOUT,
    ANSWER_TRANSPORT,
    PERMIT_LATE,
    PERMIT_REFUNDED,
    PERMIT_USED,
)
from worker.pool.heartbeat import Heartbeat
from worker.pool.idle import LaneWatcher, watching
from worker.pool.lateness import LatenessWatch
from worker.pool.settle import Held, Settler
from worker.queue.batching import ScriptCalls, script_calls
from worker.queue.jobs import Job, invalid_reason, unsendable_reason
from worker.queue.lanes import Early, Empty, Fetched, Late, Paused, Queue, RetryShare
from worker.results.records import Record, Recorder
from worker.store.keys import AccountKeys
from worker.tokens.store import TokenManager
from worker.vendor.client import (
    NotSent,
    OzonetelClient,
    TransportFailure,
    TransportTimeout,
    create_session,
)
from worker.vendor.outcomes import (
    INVALID_JOB,
    MALFORMED,
    RETRIES_EXHAUSTED,
    classify_delete,
    transport_failure,
)

log = get_logger(__name__)

# How often a paused or halted account looks again.
PAUSED_POLL_S = 1.0
# A consumer that holds nothing and has been silent this long (in visibility
# timeouts, and at least an hour) is removed from the group: a process gone.
CONSUMER_FORGET_VISIBILITIES = 10
CONSUMER_FORGET_MIN_S = 3600.0
# Waits between attempts while Redis cannot be reached.
REDIS_OUTAGE_WAIT_S = 0.1
REDIS_OUTAGE_WAIT_MAX_S = 5.0


class Naps:
    """Timed sleeps that a stop cuts short, for the dispatchers of a process.

    A dispatcher sleeps once per job (until its permit's slot): a future and a
    timer each here, rather than an event waiter, a timeout and the task's
    cancellation when it fires. One task per process wakes every sleeper when
    ``stopping`` is set (:meth:`watch`).
    """

    def __init__(self, stopping: asyncio.Event) -> None:
        self._stopping = stopping
        self._sleeping: set[asyncio.Future[None]] = set()

    async def watch(self) -> None:
        """Wake every sleeper once ``stopping`` is set; run as a task."""
        await self._stopping.wait()
        for nap in self._sleeping:
            if not nap.done():
                nap.set_result(None)

    async def sleep(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless asked to stop; False if stopping."""
        if self._stopping.is_set():
            return False
        if seconds > 0:
            loop = asyncio.get_running_loop()
            nap: asyncio.Future[None] = loop.create_future()
            timer = loop.call_later(seconds, _wake, nap)
            self._sleeping.add(nap)
            try:
                await nap
            finally:
                timer.cancel()
                self._sleeping.discard(nap)
        return not self._stopping.is_set()


def _wake(nap: asyncio.Future[None]) -> None:
    if not nap.done():
        nap.set_result(None)


def consumer_name() -> str:
    """Unique per process, readable in XINFO CONSUMERS."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class AccountWorker:
    def __init__(
        self,
        settings: Settings,
        account: AccountSettings,
        redis: Redis,
        session: aiohttp.ClientSession,
        consumer: str,
        stopping: asyncio.Event,
        watcher: LaneWatcher,
        naps: Naps,
        calls: ScriptCalls | None = None,
    ) -> None:
        self._settings = settings
        self._account = account
        self._redis = redis
        self._consumer = consumer
        self._stopping = stopping
        # Woken by the process's one watch of ``stopping`` (see run_pool).
        self._naps = naps
        self._watcher = watcher
        self.keys = AccountKeys(settings.key_prefix, account.name)
        self.queue = Queue(redis, self.keys, calls=calls)
        self.limiter = Limiter(redis, self.keys, account)
        self.recorder = Recorder(redis, self.keys, settings, calls=calls)
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
        self._settler = Settler(
            settings, redis, self.keys, self.queue, self.limiter, self.recorder, self.tokens
        )
        self._sending: set[asyncio.Task[None]] = set()
        # Reserved by the last fetch, for the next request (see the module's doc).
        self._next_permit: Permit | None = None
        self._log = log.bind(account=account.name)
        register_secret(account.api_key.reveal())
        metrics.prepare_account(account.name)
        self._permits = {
            result: metrics.PERMITS.labels(account.name, result)
            for result in (PERMIT_USED, PERMIT_REFUNDED, PERMIT_LATE)
        }
        self._permit_wait = metrics.PERMIT_WAIT_SECONDS.labels(account.name)
        self._request_seconds = metrics.REQUEST_SECONDS.labels(account.name)
        self._lateness = LatenessWatch(account.name)

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
        exit_ = await self._dispatch_jobs(until_empty)
        unused, self._next_permit = self._next_permit, None
        if unused is not None:
            # Best effort: a permit not given back only leaves its slot unused.
            with contextlib.suppress(RedisError):
                await self._refund(unused)
        return exit_

    async def _dispatch_jobs(self, until_empty: bool) -> AccountExit:
        paused_reason: str | None = None
        outage_wait = REDIS_OUTAGE_WAIT_S
        while not self._stopping.is_set():
            await self._slots.acquire()
            handed_over = False
            try:
                token = await self.tokens.current() if self.tokens else None
                permit, self._next_permit = self._next_permit, None
                if permit is None:
                    permit = await self.limiter.acquire()
                permit, fetched = await self._fetch_on(permit)
                if fetched is None:
                    break
                if isinstance(fetched, Paused | Empty):
                    self._permits[PERMIT_REFUNDED].inc()  # by queue/fetch.lua
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
                    await self._watcher.wait(self.keys, fetched, self._stopping)
                    continue
                if token is not None and self.tokens is not None:
                    token = await self.tokens.newest(token, fetched.token_generation)
                held = Held(fetched.delivery, permit, token, time.monotonic())
                self._start_sending(held)
                handed_over = True
                outage_wait = REDIS_OUTAGE_WAIT_S
                if self._next_permit is None:
                    # Let the request leave now, before this loop asks Redis
                    # for the next permit: the time from the permit check to
                    # the vendor is what the safety margin has to cover. With
                    # the next permit in hand, the next call to Redis is its
                    # fetch, which the request task, started first, precedes
                    # anyway; and a turn of a busy loop here would come out
                    # of that permit's lateness allowance.
                    await asyncio.sleep(0)
            except TokenUnavailable as exc:
                self._log.warning("token.unavailable", why=str(exc), retry_in_s=exc.retry_after_s)
                await self._sleep(exc.retry_after_s)
            except AccountHalted as exc:
                self._log.error("account.halted", reason=exc.reason)
                if until_empty:
                    return AccountExit.HALTED
                await self._sleep(PAUSED_POLL_S)
            except (RedisAuthenticationError, RedisAuthorizationError):
                # Credentials revoked or changed under a running pool: waiting
                # will not bring them back. The operator hears of it (exit 3).
                raise
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

    async def _fetch_on(self, permit: Permit) -> tuple[Permit, Fetched | Paused | Empty | None]:
        """Sleep until the permit's slot, then trade it for a job; None if stopping.

        Returns the permit the job was fetched on: after a late one, that is
        a new permit, and it is the one to refund if the job is not sent.
        The fetch reserves the next request's permit too when this
        dispatcher will have a free slot for it (kept in ``_next_permit``).
        """
        asked_mono = permit.asked_mono
        while True:
            if not await self._sleep(permit.seconds_until_slot()):
                await self._refund(permit)
                return permit, None
            # This request holds one slot; another free one is the next
            # request's, as nothing but this loop takes them.
            then = self.limiter.ask(after_job=not self._slots.locked())
            result = await self.queue.fetch(
                permit, self._consumer, self.limiter.lateness_tolerance_us, self._retry_share, then
            )
            if isinstance(result, Early):
                # Our clock ran ahead of Redis's by a hair: wait out the difference.
                await asyncio.sleep(result.wait_s)
                continue
            if isinstance(result, Late):
                # Too late to use safely (a stalled loop?): refunded, and a new
                # one reserved in the same call.
                self._log.info("permit.late")
                self._permits[PERMIT_LATE].inc()  # refunded by queue/fetch.lua
                self._lateness.saw(True, time.monotonic())
                permit = result.next_permit or await self.limiter.acquire()
                continue
            # From asking to the slot the job was fetched on, late ones included.
            self._permit_wait.observe(time.monotonic() - asked_mono)
            self._lateness.saw(False, time.monotonic())
            if isinstance(result, Fetched):
                self._next_permit = result.next_permit
            return permit, result

    async def _refund(self, permit: Permit) -> None:
        await self.limiter.refund(permit)
        self._permits[PERMIT_REFUNDED].inc()

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless asked to stop; False if stopping."""
        return await self._naps.sleep(seconds)

    def _start_sending(self, held: Held) -> None:
        task = asyncio.create_task(self._send(held))
        self._sending.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._slots.release()
        # Its job ended or was put back: an idle dispatcher has something to
        # look at (the last job done, a retry due) that no lane would show.
        self._watcher.poke(self.keys.account)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("job.send_crashed", error=task.exception())

    async def _finish_in_flight(self) -> None:
        if not self._sending:
            return
        # Requests end by themselves within the request timeout; a job still
        # held after that is cancelled here and reclaimed by another process.
        try:
            _, late = await asyncio.wait(
                set(self._sending), timeout=self._settings.request_timeout_s + 1.0
            )
        except asyncio.CancelledError:
            # A second signal while we wait: abandon the requests now, as
            # run() does when it lands earlier. Left running, they would meet
            # the session closing under them, and settle as transport
            # failures instead of staying held for another worker.
            for task in self._sending:
                task.cancel()
            raise
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)

    async def _send(self, held: Held) -> None:
        delivery = held.delivery
        job = delivery.job
        if job is None:
            await self._refund(held.permit)
            await self._settler.finish(held, Record("dead", delivery.malformed or "", 0, MALFORMED))
            return
        refusal = unsendable_reason(job)
        if refusal is None and job.attempts >= self._settings.max_attempts:
            refusal = RETRIES_EXHAUSTED
        if refusal is not None:
            # Dead before it costs the vendor anything: the permit goes back.
            await self._refund(held.permit)
            why = invalid_reason(job) if refusal == INVALID_JOB else None
            message = "not sent: " + (why or refusal.replace("_", " "))
            await self._settler.finish(held, Record("dead", message, job.attempts, refusal))
            return
        if held.token is not None and held.token.expired:
            # The token ran out while this request waited for its permit, and
            # no newer one exists (the budget may be spent): the vendor could
            # only refuse it. Back it goes; the dispatcher waits for a token.
            await self._put_back(held, job, "token.expired_before_send")
            return
        token = held.token.value if held.token else None
        # The earlier of: the send budget after the trade, and half the margin
        # after the slot on a clock that cannot lag.
        send_by = min(
            held.fetched_mono + self.limiter.send_budget_s,
            held.permit.send_deadline(self.limiter.write_by_after_slot_s),
        )
        started = time.monotonic()
        try:
            if started > send_by:
                # Already too late (a saturated loop started this task late):
                # the client would refuse it at the connection; saying so here
                # saves building the request.
                raise NotSent("the permit expired before the request could be written")
            answer = await self._client.delete_record(job, token, send_by=send_by)
            verdict = classify_delete(answer)
            answered_as = metrics.answer_class(answer, verdict)
        except TransportFailure as exc:
            verdict = transport_failure(str(exc))
            answered_as = ANSWER_TIMEOUT if isinstance(exc, TransportTimeout) else ANSWER_TRANSPORT
        except NotSent:
            metrics.REQUESTS.labels(self.keys.account, ANSWER_DROPPED).inc()
            await self._put_back(held, job, "permit.expired_before_send")
            return
        self._request_seconds.observe(time.monotonic() - started)
        self._permits[PERMIT_USED].inc()
        metrics.REQUESTS.labels(self.keys.account, answered_as).inc()
        await self._settler.settle(held, job, verdict)

    async def _put_back(self, held: Held, job: Job, why: str) -> None:
        """Nothing left this process: the permit goes back, the job waits for
        another, and no attempt is counted."""
        self._log.info(why, job_id=job.id)
        await self._refund(held.permit)
        await self._settler.retry(held, job, delay_s=0.0, counted=False)

    async def _reclaim_until(self, over: asyncio.Event) -> None:
        interval = max(self._settings.visibility_timeout_s / 4, 0.5)
        heartbeat = Heartbeat(self._redis, self.keys, self._consumer, interval)
        while not over.is_set():
            try:
                await heartbeat.beat()
                moved = await self.queue.reclaim(
                    self._consumer, self._settings.visibility_timeout_s
                )
                if moved:
                    self._log.warning("jobs.reclaimed", count=moved)
                    metrics.RECLAIMED.labels(self.keys.account).inc(moved)
                await self.queue.forget_idle_consumers(
                    max(
                        CONSUMER_FORGET_VISIBILITIES * self._settings.visibility_timeout_s,
                        CONSUMER_FORGET_MIN_S,
                    )
                )
            except Exception as exc:  # noqa: BLE001 - a failed sweep is retried next interval
                self._log.warning("jobs.reclaim_failed", error=exc)
            await wait_event(over, interval)
        with contextlib.suppress(Exception):
            # Best effort: a worker that cannot say goodbye expires instead.
            await heartbeat.stop()


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
    # One per process: every account's settles share round trips, and one
    # task wakes every account's sleeping dispatcher on a stop.
    calls = script_calls(redis)
    naps = Naps(stopping)
    waking = asyncio.create_task(naps.watch())
    try:
        async with watching(redis) as watcher:
            workers = [
                AccountWorker(
                    settings, account, redis, session, consumer, stopping, watcher, naps, calls
                )
                for account in chosen
            ]
            log.info("pool.started", consumer=consumer, accounts=names)
            exits = await asyncio.gather(*(worker.run(until_empty) for worker in workers))
    finally:
        waking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waking
        await session.close()
    log.info("pool.stopped", exits=[str(e) for e in exits])
    return dict(zip(names, exits, strict=True))
