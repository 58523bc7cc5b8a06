"""The Python producer API: enqueue deletions, ask how they ended, wait for them.

    async with Producer.from_url("redis://localhost:6379/0") as producer:
        receipt = await producer.enqueue("spring_sale", "9845012345", job_id="crm-42")
        status = await producer.wait(receipt.job_id, timeout_s=600)

Jobs are validated with :func:`worker.queue.jobs.make_job` before anything reaches
Redis, and a batch is all or nothing: one bad item refuses the whole batch.

A caller-supplied job id is an idempotency key, claimed when first queued by
its (campaign, phone) and its producer (``owner``, the HTTP API's producer
name; empty for Python callers who give none). Enqueueing the same id for the
same number again, queued or finished, returns a duplicate and queues
nothing; the same id for another number, or from another producer, is a
*conflict*: nothing is queued and the receipt says so. Both are decided in
the same atomic step as the enqueue. A job whose (campaign, phone) is
already queued or in flight is a duplicate too (the queue's own
de-duplication); that receipt's id never gets a record of its own, the job
already queued will.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any, Literal, Self

from redis.asyncio import Redis

from worker.config.settings import DEFAULT_ACCOUNT, DEFAULT_KEY_PREFIX, DEFAULT_REDIS_MODE
from worker.errors import BadInput, ConfigError
from worker.queue.jobs import WIRE_VERSION, Job, MalformedEntry, from_fields, make_job
from worker.queue.lanes import Queue
from worker.results.records import result_view
from worker.store.connection import redis_client
from worker.store.keys import AccountKeys, Lane

State = Literal["finished", "unknown"]
# An item of enqueue_many: a mapping with enqueue()'s argument names (``id``
# is accepted for ``job_id``, as in the wire format and the HTTP API), or a
# tuple (campaign, phone[, name[, job_id]]).
Item = Mapping[str, Any] | Sequence[Any]

ITEM_FIELDS = frozenset({"campaign", "phone", "name", "job_id", "id"})
# wait() blocks on the results stream in slices this long, so that the
# client's socket timeout never fires on a healthy connection, and a missed
# entry (trimmed away before it was read) is found in the job hash at most
# one slice later.
WAIT_SLICE_S = 5.0


@dataclass(frozen=True)
class Receipt:
    """What enqueueing one job did: ``duplicate`` means nothing new was queued
    because that deletion is queued or done already; ``conflict`` means
    nothing was queued because the id belongs to another number or producer."""

    job_id: str
    duplicate: bool
    conflict: bool = False


@dataclass(frozen=True)
class JobStatus:
    """A job as Redis knows it.

    ``state`` is ``finished`` once the job has its terminal record, with its
    ``outcome`` (``deleted``, ``already_deleted`` or ``dead``); ``reason`` is
    the dead-letter code when dead. ``message``, ``attempts`` and ``reason``
    come from the results stream and are None once its entry has been trimmed
    away. ``unknown`` covers queued, in flight, and never seen: a queued job
    has no key of its own (see :meth:`Producer.status`).
    """

    job_id: str
    account: str
    state: State
    outcome: str | None = None
    reason: str | None = None
    message: str | None = None
    attempts: int | None = None
    finished_at: str | None = None  # ISO 8601, UTC, milliseconds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def job_from_item(item: Item, *, normalize: bool = False) -> Job:
    """One enqueue_many item as a validated job; :class:`BadInput` says why not."""
    if isinstance(item, Mapping):
        unknown = sorted(str(key) for key in item if key not in ITEM_FIELDS)
        if unknown:
            raise BadInput(f"unknown field {unknown[0]!r}")
        if "id" in item and "job_id" in item:
            raise BadInput("give the job id as 'id' or 'job_id', not both")
        values = {
            "campaign": item.get("campaign"),
            "phone": item.get("phone"),
            "name": item.get("name", ""),
            "job_id": item.get("job_id", item.get("id")),
        }
    elif isinstance(item, Sequence) and not isinstance(item, str | bytes):
        if not 2 <= len(item) <= 4:
            raise BadInput("a tuple item is (campaign, phone[, name[, job_id]])")
        padded = [*item, "", None][:4]
        values = dict(zip(("campaign", "phone", "name", "job_id"), padded, strict=True))
    else:
        raise BadInput("an item is a mapping or a (campaign, phone, ...) tuple")
    for name in ("campaign", "phone", "name"):
        if not isinstance(values[name], str):
            # A number would have lost its leading '+' or zeros on the way, and
            # the vendor matches numbers exactly as stored.
            raise BadInput(f"{name} must be a string")
    job_id = values["job_id"]
    if job_id is not None and not isinstance(job_id, str):
        raise BadInput("job id must be a string")
    return make_job(
        values["campaign"], values["phone"], values["name"], job_id, normalize=normalize
    )


def repeated_id_reason(job_id: str, first_index: int) -> str:
    return f"job id {job_id!r} repeats item {first_index}"


def jobs_from_items(items: Iterable[Item], *, normalize: bool = False) -> list[Job]:
    """Validate every item; raise :class:`BadInput` naming the first bad one."""
    jobs: list[Job] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        try:
            job = job_from_item(item, normalize=normalize)
        except BadInput as exc:
            errors.append(f"item {index}: {exc}")
            continue
        if job.id in seen:
            errors.append(f"item {index}: {repeated_id_reason(job.id, seen[job.id])}")
            continue
        seen[job.id] = index
        jobs.append(job)
    if errors:
        more = f" (and {len(errors) - 1} more bad items)" if len(errors) > 1 else ""
        raise BadInput(f"{errors[0]}{more}; nothing was queued")
    return jobs


class Producer:
    """Enqueue deletions for one account and follow them to their outcome.

    Holds no state but the Redis client, which must decode replies as text
    (``decode_responses=True``, as :func:`worker.store.connection.redis_client`
    makes it). Any number of producers, in any number of processes, may
    enqueue at once.
    """

    def __init__(
        self, redis: Redis, *, account: str = DEFAULT_ACCOUNT, key_prefix: str = DEFAULT_KEY_PREFIX
    ) -> None:
        # The names end up inside key names; a brace or colon would break the
        # account's hash tag and scatter its keys over a cluster.
        for what, value in (("account", account), ("key prefix", key_prefix)):
            if not value or any(c in value for c in "{}: "):
                raise ConfigError(f"{what} must be non-empty without braces, colons or spaces")
        self._redis = redis
        self._keys = AccountKeys(key_prefix, account)
        self._queue = Queue(redis, self._keys)
        self._owns_redis = False

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        account: str = DEFAULT_ACCOUNT,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        redis_mode: str = DEFAULT_REDIS_MODE,
    ) -> Producer:
        """A producer with its own client; :meth:`close` closes it.

        ``redis_mode`` is ``cluster`` when ``url`` names a Redis Cluster node.
        """
        producer = cls(redis_client(url, redis_mode), account=account, key_prefix=key_prefix)
        producer._owns_redis = True
        return producer

    @property
    def account(self) -> str:
        return self._keys.account

    async def close(self) -> None:
        """Close the Redis client if this producer made it; a lent one stays open."""
        if self._owns_redis:
            await self._redis.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def enqueue(
        self,
        campaign: str,
        phone: str,
        name: str = "",
        *,
        urgent: bool = False,
        job_id: str | None = None,
        normalize: bool = False,
        owner: str = "",
    ) -> Receipt:
        """Queue one deletion; raise :class:`BadInput` when the job is invalid."""
        job = job_from_item(
            {"campaign": campaign, "phone": phone, "name": name, "job_id": job_id},
            normalize=normalize,
        )
        (receipt,) = await self.enqueue_jobs([job], urgent=urgent, owner=owner)
        return receipt

    async def enqueue_many(
        self,
        items: Iterable[Item],
        *,
        urgent: bool = False,
        normalize: bool = False,
        owner: str = "",
    ) -> list[Receipt]:
        """Queue many deletions, pipelined; one receipt per item, in order.

        Every item is validated first: if any is bad, :class:`BadInput` names
        it by index and nothing is queued.
        """
        jobs = jobs_from_items(items, normalize=normalize)
        return await self.enqueue_jobs(jobs, urgent=urgent, owner=owner)

    async def enqueue_jobs(
        self, jobs: Sequence[Job], *, urgent: bool = False, owner: str = ""
    ) -> list[Receipt]:
        """Queue already validated jobs (see :func:`job_from_item`); ids must be unique.

        ``owner`` names the producer: a caller's id is claimed for it.
        """
        ids = [job.id for job in jobs]
        if len(set(ids)) != len(ids):
            raise BadInput("job ids repeat within one batch; nothing was queued")
        lane: Lane = "urgent" if urgent else "bulk"
        result = await self._queue.enqueue_many(jobs, lane, owner=owner)
        queued, conflicts = set(result.queued), set(result.conflicts)
        return [
            Receipt(
                job_id,
                duplicate=job_id not in queued and job_id not in conflicts,
                conflict=job_id in conflicts,
            )
            for job_id in ids
        ]

    async def status(self, job_id: str, *, owner: str | None = None) -> JobStatus:
        """The job's terminal record if it has one, else state ``unknown``.

        ``unknown`` means queued, in flight, or never seen: to keep the memory
        of a queued job small, the product keeps no per-job key until the job
        ends (but for a caller's id, claimed when queued). The record itself
        expires after ``OZP_RESULT_TTL_S``. With ``owner``, a job that another
        producer queued reads as never seen: one producer cannot read, nor
        probe for, another's ids.
        """
        if not _valid_job_id(job_id):
            raise BadInput("job id must be 1-64 characters of A-Z a-z 0-9 . _ : -")
        record = _texts(await self._redis.hgetall(self._keys.job(job_id)))
        if owner is not None and record.get("owner", "") != owner:
            return JobStatus(job_id, self.account, "unknown")
        if "outcome" not in record:
            return JobStatus(job_id, self.account, "unknown")
        result_id = record.get("result_id", "")
        entries = await self._redis.xrange(self._keys.results, result_id, result_id, count=1)
        if entries:
            return self._from_result(job_id, str(entries[0][0]), _texts(entries[0][1]))
        # The results stream was trimmed past this job: the hash still knows how it ended.
        view = result_view("", record)
        return JobStatus(
            job_id, self.account, "finished", view["outcome"], finished_at=view["finished_at"]
        )

    def _from_result(self, job_id: str, entry_id: str, fields: dict[str, str]) -> JobStatus:
        view = result_view(entry_id, fields)
        return JobStatus(
            job_id,
            self.account,
            "finished",
            outcome=view["outcome"],
            reason=view["reason"],
            message=view["message"],
            attempts=view["attempts"],
            finished_at=view["finished_at"],
        )

    async def wait(self, job_id: str, timeout_s: float | None = None) -> JobStatus:
        """Block until the job has its terminal record and return it.

        Raises :class:`TimeoutError` after ``timeout_s`` (None: wait forever).
        Waits on the results stream (``XREAD BLOCK``), so it wakes the moment
        any job of the account finishes and costs nothing while none does.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while True:
            # Read the stream's end before the hash: the record is written with
            # its stream entry in one step, so a job that is not finished at the
            # HGET has its entry after this id, where XREAD will find it.
            after = await self._last_result_id()
            status = await self.status(job_id)
            if status.state == "finished":
                return status
            while True:
                left = WAIT_SLICE_S if deadline is None else deadline - loop.time()
                if left <= 0:
                    raise TimeoutError(f"job {job_id!r} did not finish within {timeout_s} s")
                block_ms = max(round(min(left, WAIT_SLICE_S) * 1000), 1)
                reply = await self._redis.xread({self._keys.results: after}, block=block_ms)
                entries = _stream_entries(reply)
                for entry_id, fields in entries:
                    if fields.get("job_id") == job_id:
                        return self._from_result(job_id, entry_id, fields)
                if not entries:
                    break  # a quiet slice: look at the hash again, then wait on
                after = entries[-1][0]

    async def _last_result_id(self) -> str:
        newest = await self._redis.xrevrange(self._keys.results, "+", "-", count=1)
        return str(newest[0][0]) if newest else "0-0"


def _valid_job_id(job_id: str) -> bool:
    # jobs.from_fields owns the rule for ids; ask it rather than copy the pattern.
    try:
        from_fields({"v": WIRE_VERSION, "id": job_id}, "0-0")
    except MalformedEntry:
        return False
    return True


def _stream_entries(reply: Any) -> list[tuple[str, dict[str, str]]]:
    """XREAD's reply, flattened: RESP2 answers [[key, entries]], RESP3 {key: entries}."""
    if not reply:
        return []
    streams = reply.values() if isinstance(reply, dict) else (entries for _, entries in reply)
    return [(str(i), _texts(f)) for entries in streams for i, f in entries]


def _texts(mapping: Any) -> dict[str, str]:
    """A reply's mapping as text; the client decodes replies (``decode_responses``)."""
    return {str(key): str(value) for key, value in (mapping or {}).items()}
