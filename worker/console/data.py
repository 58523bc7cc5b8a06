"""What the console shows, read from Redis: the overview, the rate, dead
letters a page at a time, a job looked up by id or by number.

Numbers are masked here, before anything leaves the server; only
:func:`reveal` returns one whole, and its caller logs who asked.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from worker.accounts.control import recent_actions
from worker.accounts.status import account_settings, server_time_ms, status_report
from worker.config.settings import Settings
from worker.errors import BadInput
from worker.limiter.history import minutes
from worker.limiter.permits import Limiter
from worker.logs import mask_phone
from worker.pool.heartbeat import live_workers
from worker.results.dead_letters import Letter
from worker.results.records import stored_int
from worker.store.keys import AccountKeys
from worker.store.stream_reads import PAGE as STREAM_PAGE
from worker.store.stream_reads import as_entries

ACTIONS_SHOWN = 20
LETTERS_PAGE_MAX = 200
# A page of dead letters filtered by reason reads at most this many entries,
# so a rare reason in a million letters costs a bounded call, and says where
# it stopped (``next``).
LETTERS_SCAN_MAX = 5000
# Looking a number up reads the newest records only: there is no index from
# numbers to jobs (a number is not a key, on purpose).
LOOKUP_SCAN_MAX = 100_000
LOOKUP_PAGE = 2000


async def overview(redis: Redis, settings: Settings) -> dict[str, Any]:
    """``status --json``, and per account the allowance, workers and actions."""
    report = await status_report(redis, settings)
    now_ms = await server_time_ms(redis)
    for name, entry in report["accounts"].items():
        account = account_settings(settings, name)
        keys = AccountKeys(settings.key_prefix, name)
        now_s = now_ms / 1000
        entry["limit"] = account.rate_limit
        entry["window_s"] = account.rate_window_s
        entry["permits_window"] = await Limiter(redis, keys, account).granted_between(
            now_s - account.rate_window_s, now_s
        )
        entry["workers"] = await live_workers(redis, keys, now_ms)
        entry["actions"] = await recent_actions(redis, keys, ACTIONS_SHOWN)
    return {"server_time_ms": now_ms, **report}


async def rate(redis: Redis, settings: Settings, name: str) -> dict[str, Any]:
    account = account_settings(settings, name)
    keys = AccountKeys(settings.key_prefix, name)
    series = await minutes(redis, keys)
    return {
        "account": name,
        "limit": account.rate_limit,
        "window_s": account.rate_window_s,
        "minutes": [{"minute_ms": start, "requests": count} for start, count in series],
    }


def letter_row(letter: Letter) -> dict[str, Any]:
    fields = letter.fields
    return {
        "id": letter.entry_id,
        "job_id": fields.get("job_id", ""),
        "reason": letter.reason,
        "campaign": fields.get("campaign", ""),
        "phone": mask_phone(fields.get("phone", "")),
        "message": fields.get("message", ""),
        "attempts": stored_int(fields.get("attempts")) or 0,
        "failed_at_ms": stored_int(fields.get("failed_at")),
        "replayable": letter.replayable,
    }


async def letters_page(
    redis: Redis, keys: AccountKeys, reason: str | None, after: str | None, limit: int
) -> dict[str, Any]:
    """Up to ``limit`` letters after ``after`` (oldest first), with ``next``:
    where the next page starts, or None once the stream is read to its end."""
    start = f"({after}" if after else "-"
    rows: list[dict[str, Any]] = []
    scanned = 0
    last: str | None = None
    at_end = False
    while len(rows) < limit and scanned < LETTERS_SCAN_MAX:
        page = as_entries(await redis.xrange(keys.dlq, min=start, max="+", count=STREAM_PAGE))
        for entry_id, fields in page:
            scanned += 1
            last = entry_id
            letter = Letter(last, fields)
            if reason is None or letter.reason == reason:
                rows.append(letter_row(letter))
                if len(rows) >= limit:
                    break
        if len(page) < STREAM_PAGE and len(rows) < limit:
            at_end = True
            break
        start = f"({last}"
    by_reason = {
        str(k): count
        for k, v in (await redis.hgetall(keys.dlq_reasons)).items()
        if (count := stored_int(v) or 0) > 0
    }
    return {"letters": rows, "next": None if at_end else last, "by_reason": by_reason}


def _result_row(job_id: str, state: str, fields: dict[str, str]) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "state": state,
        "outcome": fields.get("outcome") or None,
        "reason": fields.get("reason") or None,
        "message": fields.get("message", ""),
        "attempts": stored_int(fields.get("attempts")),
        "campaign": fields.get("campaign", ""),
        "phone": mask_phone(fields.get("phone", "")),
        "finished_at_ms": stored_int(fields.get("finished_at")),
    }


async def _record_of(redis: Redis, keys: AccountKeys, job_id: str) -> dict[str, str] | None:
    """The job's result fields, {} if it ended but its entry was trimmed, None if unknown."""
    status = await redis.hgetall(keys.job(job_id))
    if "outcome" not in status:
        return None
    result_id = str(status.get("result_id", ""))
    found = as_entries(await redis.xrange(keys.results, result_id, result_id, count=1))
    if result_id and found:
        return found[0][1]
    return {"outcome": str(status["outcome"]), "finished_at": str(status.get("finished_at", ""))}


async def lookup(
    redis: Redis, keys: AccountKeys, job_id: str | None, campaign: str | None, phone: str | None
) -> dict[str, Any]:
    """A job by id, or the newest records of a (campaign, number)."""
    if job_id:
        fields = await _record_of(redis, keys, job_id)
        if fields is None:
            return {"found": False, "results": [], "searched": 1}
        return {"found": True, "results": [_result_row(job_id, "finished", fields)], "searched": 1}
    if not campaign or not phone:
        raise BadInput("give a job id, or a campaign and a number")
    results: list[dict[str, Any]] = []
    searched = 0
    end = "+"
    while searched < LOOKUP_SCAN_MAX:
        page = as_entries(await redis.xrevrange(keys.results, max=end, min="-", count=LOOKUP_PAGE))
        for entry_id, fields in page:
            searched += 1
            if fields.get("phone") == phone and fields.get("campaign") == campaign:
                results.append(_result_row(fields.get("job_id", ""), "finished", fields))
            end = f"({entry_id}"
        if len(page) < LOOKUP_PAGE:
            break
    return {"found": bool(results), "results": results, "searched": searched}


async def reveal(
    redis: Redis, keys: AccountKeys, job_id: str | None, letter_id: str | None
) -> str | None:
    """The whole number of a finished job or a dead letter; None if not found."""
    if letter_id:
        found = as_entries(await redis.xrange(keys.dlq, letter_id, letter_id, count=1))
        return found[0][1].get("phone", "") if found else None
    if job_id:
        fields = await _record_of(redis, keys, job_id)
        return fields.get("phone") if fields else None
    raise BadInput("give a job id or a dead letter's id")
