"""What a POST /v1/deletions may ask: the body's shape, its items, their accounts.

Every item is validated before anything is queued; a refusal is a
:class:`Refused`, which the server's middleware answers as JSON. Validation
yields to the event loop between slices of items, because the worker pool
shares the loop and a permit must not wait behind a large request.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from worker.config.settings import Settings
from worker.errors import BadInput
from worker.queue.jobs import Job
from worker.queue.producer import job_from_item, repeated_id_reason

# Fields a batch may set for all of its items.
BATCH_DEFAULTS = ("account", "urgent")
# Items validated between two yields to the event loop.
ITEMS_PER_SLICE = 100


class Refused(Exception):
    """A request we answer with a JSON error; raised from anywhere in a handler."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"error": message}
        if errors is not None:
            self.body["errors"] = errors
        self.headers = headers or {}


@dataclass(frozen=True)
class Planned:
    """One validated item: the job and where it goes."""

    account: str
    urgent: bool
    job: Job


def default_account(settings: Settings, producer: str) -> str:
    """Where an item that names no account goes: the first account this key may use."""
    usable = [name for name in settings.accounts if settings.producer_may_use(producer, name)]
    return usable[0] if usable else settings.account().name


def plan_item(item: Any, defaults: dict[str, Any], settings: Settings, producer: str) -> Planned:
    """One item of a request as a job and its destination; BadInput says why not."""
    if not isinstance(item, dict):
        raise BadInput("an item must be a JSON object")
    fields = {**defaults, **item}
    account = fields.pop("account", default_account(settings, producer))
    urgent = fields.pop("urgent", False)
    if "job_id" in fields:
        raise BadInput("unknown field 'job_id' (the job id is 'id')")
    check_destination(account, urgent, settings, producer)
    return Planned(account, urgent, job_from_item(fields))


def check_destination(account: Any, urgent: Any, settings: Settings, producer: str) -> None:
    # An account this key may not use reads as one that does not exist.
    if not isinstance(account, str) or not settings.producer_may_use(producer, account):
        raise BadInput("unknown account")
    if not isinstance(urgent, bool):
        raise BadInput("urgent must be true or false")


def items_of(body: Any, settings: Settings, producer: str) -> tuple[list[Any], dict[str, Any]]:
    """The request's items and the batch's defaults; 422 when the shape is wrong."""
    if not isinstance(body, dict):
        raise Refused(422, "the body must be a JSON object")
    if "items" not in body:
        return [body], {}
    unknown = sorted(set(body) - {"items", *BATCH_DEFAULTS})
    if unknown:
        raise Refused(422, f"unknown field {unknown[0]!r} beside 'items'")
    items = body["items"]
    if not isinstance(items, list) or not items:
        raise Refused(422, "items must be a non-empty list")
    defaults = {key: body[key] for key in BATCH_DEFAULTS if key in body}
    try:
        # Checked even when every item sets its own: a wrong default is a
        # caller's mistake worth hearing about.
        account = defaults.get("account", default_account(settings, producer))
        check_destination(account, defaults.get("urgent", False), settings, producer)
    except BadInput as exc:
        raise Refused(422, f"batch: {exc}") from None
    return items, defaults


async def plan_items(
    items: list[Any], defaults: dict[str, Any], settings: Settings, producer: str
) -> list[Planned]:
    """Validate every item; 422 with each refused item's reason."""
    planned: list[Planned] = []
    errors: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        if index and index % ITEMS_PER_SLICE == 0:
            await asyncio.sleep(0)
        try:
            plan = plan_item(item, defaults, settings, producer)
        except BadInput as exc:
            errors.append({"index": index, "reason": str(exc)})
            continue
        if plan.job.id in seen:
            # Two jobs under one id would share one terminal record.
            errors.append(
                {"index": index, "reason": repeated_id_reason(plan.job.id, seen[plan.job.id])}
            )
            continue
        seen[plan.job.id] = index
        planned.append(plan)
    if errors:
        raise Refused(
            422, f"{len(errors)} of {len(items)} items refused; nothing was queued", errors=errors
        )
    return planned


def refuse_declared_size(request: web.Request, limit: int) -> None:
    """413 on the declared length, before a byte of the body is read."""
    if request.content_length is not None and request.content_length > limit:
        raise Refused(413, f"the body is larger than {limit} bytes")


async def read_json(request: web.Request, settings: Settings) -> Any:
    # A body that declared no length (chunked) is cut off at client_max_size
    # while it is read; a body that trickles in is cut off at the timeout.
    limit = settings.http_max_body_bytes
    try:
        async with asyncio.timeout(settings.http_body_timeout_s):
            raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise Refused(413, f"the body is larger than {limit} bytes") from None
    except TimeoutError:
        raise Refused(408, "the body did not arrive in time") from None
    try:
        return json.loads(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both are
        raise Refused(400, "the body is not JSON") from None
    except RecursionError:
        # 100,000 '[' in a row: the decoder gives up before our stack does.
        raise Refused(400, "the body is nested too deeply") from None
