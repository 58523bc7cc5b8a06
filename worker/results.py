"""Terminal records: the results stream, the dead letters, the job status.

A job's terminal record is written, and the job taken off its lane, in one
step (``results_record.lua``), idempotent by job id: however often a job
ran, it has one line in ``results`` and at most one in the dead letters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from redis.asyncio import Redis

from worker.config import Settings
from worker.jobs import dedupe_digest
from worker.keys import CONSUMER_GROUP, AccountKeys
from worker.lua import register
from worker.queue import Delivery

Terminal = Literal["deleted", "already_deleted", "dead"]


@dataclass(frozen=True)
class Record:
    """What is known of a job when it ends."""

    outcome: Terminal
    message: str
    attempts: int
    reason: str | None = None


class Recorder:
    def __init__(self, redis: Redis, keys: AccountKeys, settings: Settings) -> None:
        self._redis = redis
        self._keys = keys
        self._settings = settings
        self._record = register(redis, "results_record")

    async def record(self, delivery: Delivery, record: Record) -> bool:
        """Write the job's terminal record and ack it; False if it already had one."""
        fields = delivery.fields
        job_id = delivery.job.id if delivery.job else fields.get("id") or delivery.entry_id
        campaign = fields.get("campaign", "")
        phone = fields.get("phone", "")
        enqueued = (
            delivery.job.enqueued_ms
            if delivery.job and delivery.job.enqueued_ms is not None
            else int(delivery.entry_id.split("-", 1)[0])
        )
        result = {
            "job_id": job_id,
            "account": self._keys.account,
            "campaign": campaign,
            "phone": phone,
            "name": fields.get("name", ""),
            "outcome": record.outcome,
            "reason": record.reason or "",
            "message": record.message,
            "attempts": str(record.attempts),
            "enqueued_at": str(enqueued),
        }
        extra: dict[str, str] = {}
        if record.outcome == "dead":
            extra["lane"] = delivery.lane
            if delivery.job is None:
                # Keep what the producer sent, so the entry can be mended and replayed.
                extra["raw"] = json.dumps(fields, sort_keys=True)
        # A directly XADDed job may carry no de-duplication mark; SREM of a
        # digest nobody added is harmless.
        digest = dedupe_digest(campaign, phone) if delivery.job else ""
        args: list[str | int] = [
            CONSUMER_GROUP,
            delivery.entry_id,
            record.outcome,
            digest,
            self._settings.result_ttl_s,
            self._settings.stream_maxlen,
            len(result),
        ]
        for name, value in [*result.items(), *extra.items()]:
            args += [name, value]
        recorded = await self._record(
            keys=[
                self._keys.lane(delivery.lane),
                self._keys.results,
                self._keys.dlq,
                self._keys.job(job_id),
                self._keys.stats,
                self._keys.pending,
            ],
            args=args,
        )
        return bool(recorded)


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
        "attempts": int(fields.get("attempts", "0")),
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
        "attempts": int(fields.get("attempts", "0")),
        "failed_at": _ms_or_none(fields.get("failed_at")),
        "entry_id": entry_id,
    }


def _ms_or_none(value: str | None) -> str | None:
    """Epoch milliseconds as ISO 8601 UTC, the form the JSON output promises."""
    if not value or not value.isdigit():
        return None
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC).isoformat(timespec="milliseconds")
