"""The queue of one account: two lanes (urgent, bulk) of Redis Streams read
through one consumer group, plus a sorted set of delayed retries.

Enqueue is pipelined and de-duplicated; fetch hands out one job per matured
permit, urgent first (``queue/fetch.lua``); a retry leaves the lane and
enters the delayed set in one step (``queue/retry.lua``); jobs held by a
process that went silent are put back (``queue/reclaim.lua``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from worker.config.settings import DEFAULT_RESULT_TTL_S
from worker.limiter import history
from worker.limiter.permits import Permit, PermitAsk
from worker.limiter.scripts import register_composed
from worker.queue.batching import SETTLE_WITHIN_S, ScriptCalls
from worker.queue.jobs import WIRE_VERSION, Job, MalformedEntry, from_fields
from worker.store.keys import CONSUMER_GROUP, LANES, AccountKeys, Lane, accounts_key
from worker.store.lua import register

# Due retries moved back to their lane per fetch: enough to keep up, small
# enough that one fetch stays short.
PROMOTE_PER_FETCH = 50
RECLAIM_PER_CALL = 100
# Jobs per call of queue/enqueue.lua: big enough that the per-call cost
# vanishes, small enough that one call holds the server only a few ms.
ENQUEUE_BATCH = 1000
# While a batch is read, the event loop gets a turn this often, so that the
# batch before it is written out and its reply read meanwhile.
_YIELD_EVERY = 128
# Separate a job's parts, and end each job, in queue/enqueue.lua's
# argument. Control characters, which make_job refuses in every field: the
# batch is then one string, built and encoded at once. A batch that holds
# them anyway (a Job built by hand) goes with bytes that UTF-8 text never
# holds, which is slower to build.
_TEXT_DELIMITERS = ("\x1f", "\x1e")
_BYTE_DELIMITERS = (b"\xff", b"\xfe")
# The fields that every packed job carries in a fixed place.
_PACKED_FIELDS = frozenset({"v", "id", "campaign", "phone", "name"})


@dataclass(frozen=True)
class Delivery:
    """A lane entry handed to this process: the job, or why it is not one."""

    lane: Lane
    entry_id: str
    fields: dict[str, str]
    job: Job | None
    malformed: str | None = None

    @property
    def maybe_sent(self) -> bool:
        """An earlier attempt may have reached the vendor (see ``sent`` in jobs)."""
        return self.fields.get("sent") == "1"


@dataclass(frozen=True)
class Fetched:
    delivery: Delivery
    # The account's current token generation at the moment of the fetch.
    token_generation: int
    # The caller's next permit, reserved in the same call, if it asked for one.
    next_permit: Permit | None = None


@dataclass(frozen=True)
class Early:
    wait_s: float


@dataclass(frozen=True)
class Late:
    # The permit to use instead, reserved in the same call, if one was asked for.
    next_permit: Permit | None = None


@dataclass(frozen=True)
class Paused:
    reason: str


@dataclass(frozen=True)
class Empty:
    last_ids: tuple[str, str, str]  # of urgent, retry, bulk
    next_due_ms: int | None


FetchResult = Fetched | Early | Late | Paused | Empty


# A job's verdict in queue/enqueue.lua's reply.
QUEUED = "1"
DUPLICATE = "0"
CONFLICT = "2"  # its id belongs to another number or another producer
# The mark of a job that claims its (caller-supplied) id, in the packed batch.
CLAIM = "1"
OnBatch = Callable[[Sequence[Job], str], None]


@dataclass
class EnqueueResult:
    queued: list[str] = field(default_factory=list)  # job ids
    duplicates: list[str] = field(default_factory=list)  # job ids skipped
    conflicts: list[str] = field(default_factory=list)  # ids taken by another number


@dataclass(frozen=True)
class RetryShare:
    """At most ``per_window`` permits per ``window_us`` go to retries while
    fresh work waits."""

    per_window: int
    window_us: int


@dataclass(frozen=True)
class QueueCounts:
    urgent: int
    bulk: int
    in_flight: int
    scheduled: int  # waiting for their retry time, in the delayed set
    retry: int = 0  # due retries and replays on the retry lane, waiting for their share

    @property
    def delayed(self) -> int:
        """Retries not yet sent: scheduled, or on the retry lane."""
        return self.scheduled + self.retry

    @property
    def queued(self) -> int:
        return self.urgent + self.bulk

    @property
    def outstanding(self) -> int:
        """Jobs without a terminal record yet."""
        return self.queued + self.in_flight + self.delayed


def _enqueue_args(batch: Sequence[Job], owner: str, claim_ttl_s: int) -> list[str | bytes | int]:
    """ARGV of queue/enqueue.lua: version, separator, end, the jobs in one
    string, the producer and how long a claim lasts."""
    separator, end = _TEXT_DELIMITERS
    packed: list[str] = []
    extra_parts = 0
    for job in batch:
        claim = CLAIM if _claims(job, owner) else ""
        head = (
            f"{job.dedupe_digest}{separator}{job.id}{separator}{claim}{separator}{job.campaign}"
            f"{separator}{job.phone}{separator}{job.name}"
        )
        if job.enqueued_ms is None and not job.attempts and not job.replay_of:
            packed.append(head + end)
        else:
            extra = _extra_fields(job)
            extra_parts += len(extra)
            packed.append(separator.join([head, *extra]) + end)
    text = "".join(packed)
    tail: list[str | bytes | int] = [owner, claim_ttl_s]
    if text.count(separator) == 5 * len(batch) + extra_parts and text.count(end) == len(batch):
        return [WIRE_VERSION, separator, end, text, *tail]
    # A field holds a delimiter: the slower way, safe for any text.
    separator_byte, end_byte = _BYTE_DELIMITERS
    jobs = b"".join(
        separator_byte.join([part.encode() for part in _parts(job, owner)]) + end_byte
        for job in batch
    )
    return [WIRE_VERSION, separator_byte, end_byte, jobs, *tail]


def _claims(job: Job, owner: str) -> bool:
    """Whether the job claims its id: a caller's id always; with a named
    producer every id, so that it can read its own jobs and only those."""
    return job.caller_id or bool(owner)


def _parts(job: Job, owner: str) -> list[str]:
    return [
        job.dedupe_digest,
        job.id,
        CLAIM if _claims(job, owner) else "",
        job.campaign,
        job.phone,
        job.name,
        *_extra_fields(job),
    ]


def _extra_fields(job: Job) -> list[str]:
    """Names and values of the optional fields but the name, which has its own place."""
    return [
        part
        for name, value in job.to_fields().items()
        if name not in _PACKED_FIELDS
        for part in (name, value)
    ]


def _delivery(lane: Lane, entry_id: str, fields: dict[str, str]) -> Delivery:
    try:
        return Delivery(lane, entry_id, fields, from_fields(fields, entry_id))
    except MalformedEntry as exc:
        return Delivery(lane, entry_id, fields, None, str(exc))


class Queue:
    def __init__(
        self,
        redis: Redis,
        keys: AccountKeys,
        claim_ttl_s: int = DEFAULT_RESULT_TTL_S,
        *,
        calls: ScriptCalls | None = None,
    ) -> None:
        self._redis = redis
        self._keys = keys
        # Retries go through these: a worker's share round trips with its
        # other accounts' settles (queue/batching.py).
        self._calls = calls or ScriptCalls()
        # A claimed id is kept as long as its record will be: the claim is
        # the record's first half.
        self._claim_ttl_s = claim_ttl_s
        self._enqueue = register(redis, "queue/enqueue")
        self._fetch = register_composed(redis, "queue/fetch", ("limiter/acquire", "acquire"))
        # Built once: a fetch runs for every job.
        self._fetch_keys = [
            keys.urgent,
            keys.retry,
            keys.bulk,
            keys.delayed,
            keys.limiter,
            keys.retry_grants,
            keys.paused,
            keys.halted,
            keys.token,
            keys.cooldown,
        ]
        self._retry = register_composed(redis, "queue/retry", history.INCLUDED)
        self._reclaim = register(redis, "queue/reclaim")
        self._forget = register(redis, "queue/forget_consumers")

    async def ensure_groups(self) -> None:
        """Create the consumer group on both lanes (from their start) if missing."""
        for lane in LANES:
            try:
                await self._redis.xgroup_create(
                    self._keys.lane(lane), CONSUMER_GROUP, id="0", mkstream=True
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def enqueue_many(
        self, jobs: Iterable[Job], lane: Lane = "bulk", *, owner: str = ""
    ) -> EnqueueResult:
        """Queue jobs in pipelined batches; duplicates of queued work are skipped."""
        result = EnqueueResult()
        kinds = {QUEUED: result.queued, DUPLICATE: result.duplicates, CONFLICT: result.conflicts}

        def record(batch: Sequence[Job], verdicts: str) -> None:
            for job, verdict in zip(batch, verdicts, strict=True):
                kinds[verdict].append(job.id)

        await self.enqueue_stream(jobs, lane, record, owner=owner)
        return result

    async def enqueue(self, job: Job, lane: Lane = "bulk") -> bool:
        """Queue one job; False if the same (campaign, phone) is already queued."""
        return bool((await self.enqueue_many([job], lane)).queued)

    async def enqueue_stream(
        self, jobs: Iterable[Job], lane: Lane, on_batch: OnBatch, *, owner: str = ""
    ) -> None:
        """Queue jobs as ``jobs`` yields them, in batches of :data:`ENQUEUE_BATCH`.

        ``on_batch(batch, verdicts)`` hears of each batch in order, with one
        character per job: :data:`QUEUED`, :data:`DUPLICATE` or
        :data:`CONFLICT` (only a job with a caller's id, ``caller_id``, can
        conflict: its id is claimed for its number and ``owner``). Nothing is
        kept between batches, so memory stays flat however long ``jobs`` is.

        One batch is at Redis while the next is read and packed: the server
        and this process then work at the same time (on two cores), yet the
        batches still run one after the other, in order, so the first of two
        equal rows is the one queued.
        """
        lane_keys = [self._keys.lane(lane), self._keys.pending]
        in_flight: tuple[list[Job], asyncio.Task[str]] | None = None
        registered = False

        async def settle() -> None:
            nonlocal in_flight
            if in_flight is not None:
                (sent, reply), in_flight = in_flight, None
                verdicts = await reply
                if len(verdicts) != len(sent):
                    # The script took the batch apart otherwise than it was
                    # packed: a bug, which no data can cause; never miscount.
                    raise RuntimeError(f"{len(verdicts)} verdicts for {len(sent)} jobs")
                on_batch(sent, verdicts)

        unread = iter(jobs)
        try:
            while True:
                batch: list[Job] = []
                while chunk := list(islice(unread, min(_YIELD_EVERY, ENQUEUE_BATCH - len(batch)))):
                    batch += chunk
                    # Meanwhile, the batch in flight is written out and its reply read.
                    await asyncio.sleep(0)
                if not batch:
                    break
                args = _enqueue_args(batch, owner, self._claim_ttl_s)
                keys = lane_keys + [self._keys.job(job.id) for job in batch if _claims(job, owner)]
                if not registered:
                    # Only once there is a job: a file refused at its header
                    # leaves no trace of its account.
                    await self._redis.sadd(accounts_key(self._keys.prefix), self._keys.account)
                    registered = True
                # Never two batches at Redis at once: they would race on two
                # connections, and the stream would lose the file's order.
                await settle()
                in_flight = (batch, asyncio.create_task(self._enqueue(keys=keys, args=args)))
                # Let it start at once: the batch goes out a millisecond sooner
                # than at the next turn, which comes after more rows are read.
                await asyncio.sleep(0)
        finally:
            # Also when reading ``jobs`` failed: what was sent is settled first.
            await settle()

    async def fetch(
        self,
        permit: Permit,
        consumer: str,
        lateness_us: int,
        retry_share: RetryShare,
        then: PermitAsk | None = None,
    ) -> FetchResult:
        """Spend ``permit`` on the next job, or refund it and say why not.

        ``then``: the caller's next permit, reserved in the same call when
        the permit came late, and after a job if it says so; it comes back
        on :class:`Fetched` or :class:`Late`.
        """
        # Never batched: a permit's slot has come, and every turn of the loop
        # between it and the server's check comes out of its lateness allowance.
        reply = await self._fetch(
            keys=self._fetch_keys,
            args=[
                CONSUMER_GROUP,
                consumer,
                permit.id,
                permit.slot_us,
                lateness_us,
                PROMOTE_PER_FETCH,
                retry_share.per_window,
                retry_share.window_us,
                *(_NO_ASK if then is None else (then.id, "1" if then.after_job else "0")),
                *(then.args if then is not None else ()),
            ],
        )
        kind = reply[0]
        if kind == "job":
            lane, entry_id, generation, flat = reply[1], reply[2], int(reply[3]), reply[6:]
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            granted = _granted(then, reply[4], reply[5])
            return Fetched(_delivery(lane, entry_id, fields), generation, granted)
        if kind == "early":
            return Early(int(reply[1]) / 1_000_000)
        if kind == "late":
            return Late(_granted(then, reply[1], reply[2]))
        if kind == "paused":
            return Paused(str(reply[1]))
        next_due = int(reply[4])
        last_ids = (str(reply[1]), str(reply[2]), str(reply[3]))
        return Empty(last_ids, next_due if next_due >= 0 else None)

    async def schedule_retry(
        self,
        delivery: Delivery,
        fields: dict[str, str],
        delay_s: float,
        sent_slot_us: int | None = None,
    ) -> None:
        """Move the job off its lane into the delayed set, due after ``delay_s``.

        When due, it joins the retry lane, whatever lane it came from.
        ``sent_slot_us``: the permit's slot of the request that left and is
        to be retried, counted in the rate chart in the same step; None when
        none left (a job put back before sending).
        """
        job_id = fields.get("id", delivery.entry_id)
        member = json.dumps({"job": job_id, "fields": fields}, sort_keys=True)
        await self._calls.call(
            self._retry,
            [self._keys.lane(delivery.lane), self._keys.delayed, self._keys.rate_minutes],
            [
                CONSUMER_GROUP,
                delivery.entry_id,
                max(round(delay_s * 1000), 0),
                member,
                *history.chart_args(sent_slot_us),
            ],
            within_s=SETTLE_WITHIN_S,
        )

    async def reclaim(self, consumer: str, min_idle_s: float) -> int:
        """Put back jobs held longer than ``min_idle_s`` by silent consumers."""
        moved = 0
        for lane in LANES:
            moved += int(
                await self._reclaim(
                    keys=[self._keys.lane(lane)],
                    args=[CONSUMER_GROUP, consumer, round(min_idle_s * 1000), RECLAIM_PER_CALL],
                )
            )
        return moved

    async def forget_idle_consumers(self, idle_s: float) -> int:
        """Remove consumers that hold no job and were silent for ``idle_s``."""
        forgotten = 0
        for lane in LANES:
            forgotten += int(
                await self._forget(
                    keys=[self._keys.lane(lane)], args=[CONSUMER_GROUP, round(idle_s * 1000)]
                )
            )
        return forgotten

    async def counts(self) -> QueueCounts:
        async with self._redis.pipeline(transaction=False) as pipe:
            for lane in LANES:
                pipe.xlen(self._keys.lane(lane))
                pipe.xpending(self._keys.lane(lane), CONSUMER_GROUP)
            pipe.zcard(self._keys.delayed)
            replies = await pipe.execute(raise_on_error=False)
        held = {lane: _pending_count(replies[2 * i + 1]) for i, lane in enumerate(LANES)}
        waiting = {lane: max(int(replies[2 * i]) - held[lane], 0) for i, lane in enumerate(LANES)}
        return QueueCounts(
            urgent=waiting["urgent"],
            bulk=waiting["bulk"],
            in_flight=sum(held.values()),
            scheduled=int(replies[-1]),
            retry=waiting["retry"],
        )


# fetch.lua's next-permit arguments when no permit is asked for.
_NO_ASK = ("", "0")


def _granted(ask: PermitAsk | None, slot_us: int, now_us: int) -> Permit | None:
    """The permit fetch.lua reserved for ``ask``; None if it reserved none (-1)."""
    if ask is None or int(slot_us) < 0:
        return None
    return ask.granted(slot_us, now_us)


def _pending_count(reply: object) -> int:
    # XPENDING fails with NOGROUP before the first worker created the group.
    if isinstance(reply, dict):
        return int(reply.get("pending", 0))
    return 0
