"""The job: its type, validation, and its wire format.

Wire format, version 1: a job is one entry of a lane stream
(``{prefix}:{account}:q:urgent`` or ``...:q:bulk``) with these fields, all
strings, so that a producer in any language can ``XADD`` one directly:

=============  =========  ====================================================
field          required   meaning
=============  =========  ====================================================
``v``          yes        ``1``: the version of this format
``id``         yes        job id, 1-64 characters of ``A-Za-z0-9._:-``;
                          one terminal record per id
``campaign``   yes        the outbound campaign's name, as Ozonetel stores it
``phone``      yes        the number to delete, as Ozonetel stores it
``name``       no         free text passed through to the vendor
``enqueued``   no         epoch milliseconds; defaults to the entry id's time
                          (retries and take-overs write it, so a job keeps
                          its age when it moves to a new entry)
``attempts``   no         attempts already counted (set by retries and
                          take-overs)
``sent``       no         ``1``: an earlier attempt may have reached the
                          vendor, so a later ``No Record Found`` ends
                          ``already_deleted``, not dead; set by retries
                          after an answer that leaves it unknown, and by
                          take-overs; any other value is ignored
``replay_of``  no         the job id (or record id, ``<lane>@<entry id>``)
                          of the dead letter this job replays; at most 128
                          characters
=============  =========  ====================================================

An entry without ``v=1`` or ``id``, with a field that is not UTF-8, with
an ``enqueued`` or ``attempts`` that is not a sane integer, or with a
``replay_of`` that is too long is dead-lettered as ``malformed`` with its
raw fields (in a readable form, see :func:`readable`); one with an empty
``campaign`` or ``phone`` is dead-lettered as ``missing_campaign`` or
``missing_phone``, and one that fails the producers' own validation
(:func:`make_job`'s rules) as ``invalid_job``, all without spending a
permit: a raw ``XADD`` is held to the same rules as the API.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from worker.errors import BadInput
from worker.vendor.outcomes import INVALID_JOB, MISSING_CAMPAIGN, MISSING_PHONE

WIRE_VERSION = "1"
MAX_TEXT = 255
_JOB_ID = re.compile(r"[A-Za-z0-9._:\-]{1,64}")
# E.164 allows 15 digits; below 5 nothing is a dialable number.
_PHONE = re.compile(r"\+?[0-9]{5,15}")
# Bounds of the numeric wire fields. Epoch milliseconds from 2000 to 2200:
# anything outside is a producer's bug, and a value past datetime's range
# would break every view that shows it.
MIN_EPOCH_MS = 946_684_800_000
MAX_EPOCH_MS = 7_258_118_400_000
MAX_WIRE_ATTEMPTS = 1_000
# What a record or a dead letter keeps of a field that came off the wire:
# enough to recognise and mend it, never megabytes.
MAX_KEPT_CHARS = 512
# A replayed job names the record it came from: a job id, or a record's own
# id (lane@entry) for an entry that could not use the id it named.
MAX_REFERENCE_CHARS = 128
# The digits of a bounded integer field; more is refused before int() reads it.
_WIRE_INT = re.compile(r"[0-9]{1,13}")
_PHONE_DECORATION = re.compile(r"[\s\-().]")


@dataclass(frozen=True)
class Job:
    id: str
    campaign: str
    phone: str
    name: str = ""
    enqueued_ms: int | None = None
    attempts: int = 0
    replay_of: str | None = None
    # The id came from the producer (an idempotency key), not from us: it is
    # claimed when queued, so another number cannot reuse it. Not on the wire.
    caller_id: bool = False

    def to_fields(self) -> dict[str, str]:
        """The stream entry's fields; optional ones only when they carry news."""
        fields = {"v": WIRE_VERSION, "id": self.id, "campaign": self.campaign, "phone": self.phone}
        if self.name:
            fields["name"] = self.name
        if self.enqueued_ms is not None:
            fields["enqueued"] = str(self.enqueued_ms)
        if self.attempts:
            fields["attempts"] = str(self.attempts)
        if self.replay_of:
            fields["replay_of"] = self.replay_of
        return fields

    @property
    def dedupe_digest(self) -> str:
        return dedupe_digest(self.campaign, self.phone)


class MalformedEntry(ValueError):
    """A stream entry that is not a version-1 job."""


def from_fields(fields: Mapping[str, str], entry_id: str) -> Job:
    """Read a stream entry; raise :class:`MalformedEntry` when it is not a job.

    The client decodes replies with ``surrogateescape``, so a value that was
    not UTF-8 arrives holding lone surrogates: such an entry is refused here,
    before any of its text reaches the vendor, a log line or a terminal.
    """
    if fields.get("v") != WIRE_VERSION:
        raise MalformedEntry(
            f"unsupported or missing version v={readable(fields.get('v', ''), 32)!r}"
        )
    job_id = fields.get("id", "")
    if not _JOB_ID.fullmatch(job_id):
        raise MalformedEntry("missing or invalid id")
    for name, value in fields.items():
        if not _is_utf8(name) or not _is_utf8(value):
            raise MalformedEntry(f"field {readable(name, 32)!r} is not UTF-8")
    attempts = _wire_int(fields, "attempts", 0, MAX_WIRE_ATTEMPTS)
    enqueued = _wire_int(fields, "enqueued", MIN_EPOCH_MS, MAX_EPOCH_MS)
    replay_of = fields.get("replay_of") or None
    if replay_of is not None and len(replay_of) > MAX_REFERENCE_CHARS:
        raise MalformedEntry(f"replay_of is longer than {MAX_REFERENCE_CHARS} characters")
    return Job(
        id=job_id,
        campaign=fields.get("campaign", "").strip(),
        phone=fields.get("phone", "").strip(),
        name=fields.get("name", ""),
        enqueued_ms=_entry_ms(entry_id) if enqueued is None else enqueued,
        attempts=attempts or 0,
        replay_of=replay_of,
    )


def _wire_int(fields: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    """A bounded integer field, None when absent; :class:`MalformedEntry` when not one."""
    if name not in fields:
        return None
    raw = fields[name]
    value = int(raw) if _WIRE_INT.fullmatch(raw) else -1
    if not low <= value <= high:
        raise MalformedEntry(f"{name} must be an integer from {low} to {high}")
    return value


def _is_utf8(text: str) -> bool:
    # Lone surrogates are what surrogateescape made of bytes that were not UTF-8.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def readable(text: str, limit: int = MAX_KEPT_CHARS) -> str:
    """``text`` as UTF-8 that shows what it held: bytes that were not UTF-8 as
    ``\\xff`` escapes, and at most ``limit`` characters, marked when cut.

    For the fields of a record or a dead letter that came off the wire: they
    must survive a JSON encoder, a terminal and an operator's eyes, and still
    tell which entry it was.
    """
    if not _is_utf8(text):
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if len(text) > limit:
        return f"{text[:limit]}...[{len(text) - limit} more characters]"
    return text


def _entry_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


def unsendable_reason(job: Job) -> str | None:
    """The dead-letter reason of a job that must not cost a permit, if any."""
    if not job.campaign:
        return MISSING_CAMPAIGN
    if not job.phone:
        return MISSING_PHONE
    if invalid_reason(job) is not None:
        return INVALID_JOB
    return None


def invalid_reason(job: Job) -> str | None:
    """Why ``job`` breaks :func:`make_job`'s rules, or None: the producers'
    validation, applied again to what came off the wire."""
    try:
        make_job(job.campaign, job.phone, job.name, job.id)
    except BadInput as exc:
        return str(exc)
    return None


# 64 random bits: a collision is not expected in billions of jobs.
_ID_BYTES = 8


def new_job_id() -> str:
    return secrets.token_hex(_ID_BYTES)


def new_job_ids(count: int) -> list[str]:
    """``count`` ids like :func:`new_job_id`'s, from one draw of randomness.

    An import needs one per row; one system call per id was a tenth of its time.
    """
    block = secrets.token_hex(_ID_BYTES * count)
    width = 2 * _ID_BYTES
    return [block[start : start + width] for start in range(0, len(block), width)]


def dedupe_digest(campaign: str, phone: str) -> str:
    """A short digest of (campaign, phone): the de-duplication set's member."""
    return hashlib.blake2b(f"{campaign}\x00{phone}".encode(), digest_size=8).hexdigest()


def normalize_phone(raw: str) -> str:
    """Drop spaces, dashes, dots and parentheses; keep a leading ``+``."""
    return _PHONE_DECORATION.sub("", raw)


def make_job(
    campaign: str,
    phone: str,
    name: str = "",
    job_id: str | None = None,
    normalize: bool = False,
    *,
    caller_id: bool | None = None,
) -> Job:
    """Validate a producer's job; raise :class:`BadInput` with a one-line reason.

    Numbers are checked but not rewritten unless asked: the vendor matches
    them exactly as stored. A given ``job_id`` is the caller's (claimed when
    queued) unless ``caller_id=False`` says it was drawn by us, as an
    import's ids are: a random id needs no claim, and a million claims would
    cost a million keys.
    """
    campaign = campaign.strip()
    phone = normalize_phone(phone.strip()) if normalize else phone.strip()
    if not campaign:
        raise BadInput("campaign is empty")
    if len(campaign) > MAX_TEXT or not campaign.isprintable():
        raise BadInput("campaign must be printable and at most 255 characters")
    if not phone:
        raise BadInput("phone number is empty")
    if not _PHONE.fullmatch(phone):
        raise BadInput("phone number must be 5-15 digits with an optional leading '+'")
    if len(name) > MAX_TEXT or not name.isprintable():
        raise BadInput("name must be printable and at most 255 characters")
    if job_id is not None and not _JOB_ID.fullmatch(job_id):
        raise BadInput("job id must be 1-64 characters of A-Z a-z 0-9 . _ : -")
    return Job(
        id=job_id or new_job_id(),
        campaign=campaign,
        phone=phone,
        name=name,
        caller_id=job_id is not None if caller_id is None else caller_id,
    )
