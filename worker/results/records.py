"""Terminal records: the results stream, the dead letters, the job status.

A job's terminal record is written, and the job taken off its lane, in one
step (``results/record.lua``), idempotent by job id: however often a job
ran, it has one line in ``results`` and at most one in the dead letters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from redis.asyncio import Redis

from worker.config.settings import Settings
from worker.limiter import history
from worker.limiter.scripts import register_composed
from worker.queue.batching import SETTLE_WITHIN_S, ScriptCalls
from worker.queue.jobs import readable
from worker.queue.lanes import Delivery
from worker.store.keys import CONSUMER_GROUP, AccountKeys

Terminal = Literal["deleted", "already_deleted", "dead"]
# A malformed entry's raw fields, as kept in its dead letter.
MAX_RAW_CHARS = 4096
# Counters and epoch milliseconds fit in 19 digits; more was not written by us.
MAX_STORED_DIGITS = 19


@dataclass(frozen=True)
class Record:
    """What is known of a job when it ends."""

    outcome: Terminal
    message: str
    attempts: int
    reason: str | None = None


class Recorder:
    def __init__(
        self,
        redis: Redis,
        keys: AccountKeys,
        settings: Settings,
        *,
        calls: ScriptCalls | None = None,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._settings = settings
        # A worker's records share round trips with its other accounts'.
        self._calls = calls or ScriptCalls()
        self._record = register_composed(redis, "results/record", history.INCLUDED)

    async def record(
        self, delivery: Delivery, record: Record, sent_slot_us: int | None = None
    ) -> bool:
        """Write the job's terminal record and ack it; False if it already had one.

        ``sent_slot_us``: the permit's slot of the request whose answer this
        settles, counted in the rate chart in the same step; None when no
        request left (a job refused before sending).

        Only a job that parsed names the id it is recorded under, and only if
        that id is its own (``results/record.lua`` checks the claim); a
        malformed entry is recorded under its own id, so whatever id it
        carries, it can never speak for another job.
        """
        fields = delivery.fields
        job = delivery.job
        own_id = entry_record_id(delivery)
        enqueued = (
            job.enqueued_ms
            if job and job.enqueued_ms is not None
            else int(delivery.entry_id.split("-", 1)[0])
        )
        result = {
            "job_id": job.id if job else own_id,
            "account": self._keys.account,
            "campaign": readable(fields.get("campaign", "")),
            "phone": readable(fields.get("phone", "")),
            "name": readable(fields.get("name", "")),
            "outcome": record.outcome,
            "reason": record.reason or "",
            "message": readable(record.message),
            "attempts": str(record.attempts),
            "enqueued_at": str(enqueued),
        }
        extra: dict[str, str] = {}
        if record.outcome == "dead":
            extra["lane"] = delivery.lane
            if job is None:
                # Keep what the producer sent, readable and bounded, so the
                # entry can be recognised, mended and replayed.
                extra["raw"] = raw_fields(fields)
        # A directly XADDed job may carry no de-duplication mark; SREM of a
        # digest nobody added is harmless.
        digest = job.dedupe_digest if job else ""
        args: list[str | int] = [
            CONSUMER_GROUP,
            delivery.entry_id,
            record.outcome,
            digest,
            self._settings.result_ttl_s,
            self._settings.stream_maxlen,
            own_id,
            len(result),
            *history.chart_args(sent_slot_us),
        ]
        for name, value in [*result.items(), *extra.items()]:
            args += [name, value]
        recorded = await self._calls.call(
            self._record,
            [
                self._keys.lane(delivery.lane),
                self._keys.results,
                self._keys.dlq,
                self._keys.job(job.id if job else own_id),
                self._keys.stats,
                self._keys.pending,
                self._keys.job(own_id),
                self._keys.dlq_reasons,
                self._keys.rate_minutes,
            ],
            args,
            within_s=SETTLE_WITHIN_S,
        )
        return bool(recorded)


def raw_fields(fields: dict[str, str]) -> str:
    """An entry's fields as a JSON object of at most :data:`MAX_RAW_CHARS`:
    each readable and bounded, and whole fields left out past the budget (and
    counted), so that what is kept still parses."""
    kept: dict[str, str] = {}
    size = 2  # the braces
    for name, value in sorted(fields.items()):
        key, text = readable(name, 64), readable(value)
        size += len(json.dumps(key)) + len(json.dumps(text)) + 4  # ": " and ", "
        if size > MAX_RAW_CHARS - 40:  # room for the count of what was left out
            kept["..."] = f"{len(fields) - len(kept)} more fields"
            break
        kept[key] = text
    return json.dumps(kept, sort_keys=True)


def entry_record_id(delivery: Delivery) -> str:
    """The id an entry is recorded under when it cannot use the one it names.

    Unique per stream entry, stable across deliveries of that entry, and
    never a producer's id: ``@`` is outside the ids producers may send.
    """
    return f"{delivery.lane}@{delivery.entry_id}"


def result_view(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """A results-stream entry as the documented ``results --json`` object."""
    return {
        "job_id": fields.get("job_id"),
        "account": fields.get("account"),
        "campaign": fields.get("campaign"),
        "phone": fields.get("phone"),
        "name": fields.get("name") or "",
        "outcome": fields.get("outcome"),
        "reason": fields.get("reason") or None,
        "message": fields.get("message", ""),
        "attempts": _count(fields.get("attempts")),
        "enqueued_at": _ms_or_none(fields.get("enqueued_at")),
        "finished_at": _ms_or_none(fields.get("finished_at")),
        "entry_id": entry_id,
    }


def dead_letter_view(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """A dead-letter entry as the documented ``dlq list --json`` object."""
    return {
        "job_id": fields.get("job_id"),
        "account": fields.get("account"),
        "campaign": fields.get("campaign"),
        "phone": fields.get("phone"),
        "name": fields.get("name") or "",
        "reason": fields.get("reason"),
        "message": fields.get("message", ""),
        "attempts": _count(fields.get("attempts")),
        "failed_at": _ms_or_none(fields.get("failed_at")),
        "entry_id": entry_id,
    }


def _ms_or_none(value: str | None) -> str | None:
    """Epoch milliseconds as ISO 8601 UTC, the form the JSON output promises;
    None for anything else, however it got into the stream."""
    ms = stored_int(value)
    if ms is None or ms < 0:
        return None
    try:
        moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return moment.isoformat(timespec="milliseconds")


def _count(value: str | None) -> int:
    """A non-negative count from a stream field; 0 when it is not one."""
    return max(stored_int(value) or 0, 0)


def stored_int(value: object) -> int | None:
    """An integer as the product stores it (decimal ASCII digits, an optional
    minus), or None when the field holds anything else: written by hand,
    half-restored, or crafted. A view shows a placeholder, never fails."""
    text = str(value) if value is not None else ""
    digits = text.removeprefix("-")
    if not digits.isascii() or not digits.isdigit() or len(digits) > MAX_STORED_DIGITS:
        return None
    return int(text)
