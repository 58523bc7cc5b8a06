"""What the vendor's answers mean: the tables of ``docs/vendor-api.md``, as data.

Every vendor response string the product knows lives here, once. The rows
are that page's response tables row for row, in order
(``tests/test_vendor_doc.py`` reads the page and compares every cell;
``tests/test_outcomes.py`` runs each row through the classifier); the
classifier looks answers up in them instead of chaining ``if``s, so a new
row is one line here and one on the page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    DELETED = "deleted"  # the record is gone
    NOT_FOUND = "not_found"  # no such record: dead letter, or already deleted
    BAD_JOB = "bad_job"  # the job's own fields are wrong: dead letter
    TOKEN = "token"  # noqa: S105 - a class name: the token is wrong or stale, refresh, retry
    ACCOUNT = "account"  # credentials wrong: halt the account, keep the backlog
    RATE_LIMITED = "rate_limited"  # cool the limiter down, retry, not an attempt
    TRANSIENT = "transient"  # retry with backoff, bounded, then dead letter
    ISSUED = "issued"  # the token endpoint gave a token


# Stable dead-letter reason codes.
NO_RECORD = "no_record"
INVALID_CAMPAIGN = "invalid_campaign"
MISSING_CAMPAIGN = "missing_campaign"
MISSING_PHONE = "missing_phone"
INVALID_JSON = "invalid_json"
MALFORMED = "malformed"
# A job that fails the producers' own validation (a raw XADD): never sent.
INVALID_JOB = "invalid_job"
RETRIES_EXHAUSTED = "retries_exhausted"
UNCLASSIFIED = "unclassified"
DEAD_REASONS = (
    NO_RECORD,
    INVALID_CAMPAIGN,
    MISSING_CAMPAIGN,
    MISSING_PHONE,
    INVALID_JSON,
    MALFORMED,
    INVALID_JOB,
    RETRIES_EXHAUSTED,
    UNCLASSIFIED,
)


@dataclass(frozen=True)
class Row:
    """One row of a response table of ``docs/vendor-api.md``."""

    case: str
    status: str
    message: str
    double_encoded: bool
    outcome: Outcome
    reason: str | None = None


# "Delete campaign data": the page's table, in its order.
DELETE_ROWS: tuple[Row, ...] = (
    Row("success", "Success", "Deleted Successfully", False, Outcome.DELETED),
    Row(
        "apiKey header key missing",
        "false",
        "Api Key Should Not be Null or Empty.",
        True,
        Outcome.ACCOUNT,
    ),
    Row("apiKey value wrong/missing", "false", "Invalid User Details", False, Outcome.ACCOUNT),
    Row(
        "userName key missing",
        "false",
        "Username Should Not be Null or Empty.",
        True,
        Outcome.ACCOUNT,
    ),
    Row("userName value wrong", "false", "Invalid User Details", False, Outcome.ACCOUNT),
    Row(
        "campaignName key wrong/missing",
        "Error",
        "Campaign should not be null are empty",
        False,
        Outcome.BAD_JOB,
        MISSING_CAMPAIGN,
    ),
    Row(
        "campaignName value wrong",
        "Error",
        "Passed campaign are invalid",
        True,
        Outcome.BAD_JOB,
        INVALID_CAMPAIGN,
    ),
    Row(
        "phoneNumber key wrong/missing, or empty value",
        "Error",
        "PhoneNumber should not be null are empty",
        False,
        Outcome.BAD_JOB,
        MISSING_PHONE,
    ),
    Row(
        "phoneNumber value not in the campaign",
        "Error",
        "No Record Found",
        False,
        Outcome.NOT_FOUND,
        NO_RECORD,
    ),
    Row(
        "several numbers in one request",
        "false",
        "Invalid Json Pass Valid Json",
        False,
        Outcome.BAD_JOB,
        INVALID_JSON,
    ),
    Row("number already deleted", "Error", "No Record Found", False, Outcome.NOT_FOUND, NO_RECORD),
    Row("token value wrong", "false", "Invalid Token", True, Outcome.TOKEN),
    Row("token missing", "false", "Token Should Not be Null or Empty.", False, Outcome.TOKEN),
    Row("token expired", "false", "Token Expired", False, Outcome.TOKEN),
    # From "Unknowns": other Ozonetel APIs answer this when rate limited.
    Row("rate limit exceeded", "error", "Max limit exceeded", False, Outcome.RATE_LIMITED),
)

# "Generate token": the page's table. Success carries a token instead.
TOKEN_ROWS: tuple[Row, ...] = (
    Row("userName key missing/invalid", "false", "UserName is null", False, Outcome.ACCOUNT),
    Row(
        "userName or apiKey value wrong",
        "false",
        "Invalid userName or apiKey",
        False,
        Outcome.ACCOUNT,
    ),
    # We never present a token to this endpoint; should it say so anyway, back off.
    Row("expired token used", "false", "Token Expired", False, Outcome.TRANSIENT),
)


def _index(rows: tuple[Row, ...]) -> dict[str, Row]:
    index: dict[str, Row] = {}
    for row in rows:
        known = index.setdefault(row.message, row)
        # Two cases may share a message (as "Invalid User Details" does) only
        # if they mean the same to us; otherwise the table is ambiguous.
        assert (known.outcome, known.reason) == (row.outcome, row.reason), row.message
    return index


_DELETE_BY_MESSAGE = _index(DELETE_ROWS)
_TOKEN_BY_MESSAGE = _index(TOKEN_ROWS)


@dataclass(frozen=True)
class Answer:
    """What the vendor said: the HTTP status and the parsed body, if any."""

    http_status: int
    body: dict[str, Any] | None
    raw: str

    @property
    def message(self) -> str:
        if self.body is None:
            return ""
        return str(self.body.get("message") or "").strip()

    @property
    def status(self) -> str:
        if self.body is None:
            return ""
        return str(self.body.get("status") or "").strip()


@dataclass(frozen=True)
class Classification:
    outcome: Outcome
    message: str
    # The dead-letter reason if this answer dead-letters the job now (bad job,
    # not found) or once retries run out (transient).
    reason: str | None = None


def parse_body(raw: str) -> dict[str, Any] | None:
    """The JSON object in a body, tolerating the vendor's double encoding."""
    value: Any = raw.strip().lstrip("\ufeff")
    for _ in range(2):
        if not isinstance(value, str):
            break
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def answer_row(answer: Answer) -> Row | None:
    """The row of the delete table that ``answer`` matches, if any."""
    return _DELETE_BY_MESSAGE.get(answer.message)


def classify_delete(answer: Answer) -> Classification:
    """The meaning of an answer of ``DELETE /ca_apis/deleteCampaignData``."""
    row = answer_row(answer)
    if row is not None:
        return Classification(row.outcome, row.message, row.reason)
    if answer.http_status == 429:
        return Classification(Outcome.RATE_LIMITED, answer.message or "HTTP 429")
    if answer.http_status >= 500:
        return Classification(Outcome.TRANSIENT, f"HTTP {answer.http_status}", RETRIES_EXHAUSTED)
    # A body we cannot read, or a message the tables do not hold: retried a
    # bounded number of times, then dead-lettered with the raw body kept.
    return Classification(Outcome.TRANSIENT, answer.message or answer.raw[:200], UNCLASSIFIED)


def classify_token(answer: Answer) -> Classification:
    """The meaning of an answer of ``POST /ca_apis/CAToken/generateToken``."""
    if (
        answer.body is not None
        and isinstance(answer.body.get("token"), str)
        and answer.body["token"]
    ):
        return Classification(Outcome.ISSUED, answer.message)
    row = _TOKEN_BY_MESSAGE.get(answer.message)
    if row is not None:
        return Classification(row.outcome, row.message, row.reason)
    # Undocumented, such as a spent generation budget: back off, never hammer.
    return Classification(Outcome.TRANSIENT, answer.message or f"HTTP {answer.http_status}")


def transport_failure(description: str) -> Classification:
    """A timeout or connection error: the request may or may not have arrived."""
    return Classification(Outcome.TRANSIENT, description, RETRIES_EXHAUSTED)
