"""The classifier against the vendor's tables in ``docs/vendor-api.md``, row by row.

The expected rows are spelled here again, from the page, not imported
from ``worker.vendor.outcomes``: a typo on either side fails this test.
(``tests/test_vendor_doc.py`` checks the page's tables against the module.)
"""

from __future__ import annotations

import json

import pytest

from worker.vendor import outcomes
from worker.vendor.outcomes import Answer, Outcome, classify_delete, classify_token, parse_body

# (case, status, message, class, dead-letter reason) as on the page.
DELETE_TABLE = [
    ("success", "Success", "Deleted Successfully", Outcome.DELETED, None),
    ("apiKey header key missing", "false", "Api Key Should Not be Null or Empty.",
     Outcome.ACCOUNT, None),
    ("apiKey value wrong/missing", "false", "Invalid User Details", Outcome.ACCOUNT, None),
    ("userName key missing", "false", "Username Should Not be Null or Empty.",
     Outcome.ACCOUNT, None),
    ("userName value wrong", "false", "Invalid User Details", Outcome.ACCOUNT, None),
    ("campaignName key wrong/missing", "Error", "Campaign should not be null are empty",
     Outcome.BAD_JOB, "missing_campaign"),
    ("campaignName value wrong", "Error", "Passed campaign are invalid",
     Outcome.BAD_JOB, "invalid_campaign"),
    ("phoneNumber key wrong/missing, or empty value", "Error",
     "PhoneNumber should not be null are empty", Outcome.BAD_JOB, "missing_phone"),
    ("phoneNumber value not in the campaign", "Error", "No Record Found",
     Outcome.NOT_FOUND, "no_record"),
    ("several numbers in one request", "false", "Invalid Json Pass Valid Json",
     Outcome.BAD_JOB, "invalid_json"),
    ("number already deleted", "Error", "No Record Found", Outcome.NOT_FOUND, "no_record"),
    ("token value wrong", "false", "Invalid Token", Outcome.TOKEN, None),
    ("token missing", "false", "Token Should Not be Null or Empty.", Outcome.TOKEN, None),
    ("token expired", "false", "Token Expired", Outcome.TOKEN, None),
    ("rate limited (other Ozonetel APIs)", "error", "Max limit exceeded",
     Outcome.RATE_LIMITED, None),
]  # fmt: skip

TOKEN_TABLE = [
    ("userName key missing/invalid", "UserName is null", Outcome.ACCOUNT),
    ("userName or apiKey value wrong", "Invalid userName or apiKey", Outcome.ACCOUNT),
    ("expired token used", "Token Expired", Outcome.TRANSIENT),
]


def _bodies(document: dict[str, object]) -> list[str]:
    """The document plain, double-encoded, and padded as a careless server might."""
    plain = json.dumps(document)
    return [plain, json.dumps(plain), f"  {plain}\n"]


def test_the_product_table_has_exactly_the_documents_rows() -> None:
    ours = [(r.case, r.status, r.message, r.outcome, r.reason) for r in outcomes.DELETE_ROWS]
    theirs = [(c, s, m, o, r) for c, s, m, o, r in DELETE_TABLE]
    assert [row[1:] for row in ours] == [row[1:] for row in theirs]
    assert [(r.message, r.outcome) for r in outcomes.TOKEN_ROWS] == [
        (m, o) for _, m, o in TOKEN_TABLE
    ]


@pytest.mark.parametrize(("case", "status", "message", "outcome", "reason"), DELETE_TABLE)
@pytest.mark.parametrize("http_status", [200, 400])
def test_every_delete_answer_is_classified_as_the_document_says(
    case: str, status: str, message: str, outcome: Outcome, reason: str | None, http_status: int
) -> None:
    document: dict[str, object] = {"status": status, "message": message}
    if status == "false":
        document["data"] = None
    for raw in _bodies(document):
        verdict = classify_delete(Answer(http_status, parse_body(raw), raw))
        assert (verdict.outcome, verdict.reason, verdict.message) == (outcome, reason, message), (
            case,
            raw,
        )


@pytest.mark.parametrize(("case", "message", "outcome"), TOKEN_TABLE)
def test_every_token_answer_is_classified_as_the_document_says(
    case: str, message: str, outcome: Outcome
) -> None:
    for raw in _bodies({"status": "false", "message": message, "data": None}):
        assert classify_token(Answer(200, parse_body(raw), raw)).outcome is outcome, case


def test_a_token_in_either_encoding_is_issued() -> None:
    for raw in _bodies({"token": "eyJhbGciOi.x.y", "message": ""}):
        assert classify_token(Answer(200, parse_body(raw), raw)).outcome is Outcome.ISSUED


def test_undocumented_token_answers_back_off_instead_of_halting() -> None:
    raw = json.dumps({"status": "false", "message": "Token generation limit exceeded"})
    assert classify_token(Answer(429, parse_body(raw), raw)).outcome is Outcome.TRANSIENT


@pytest.mark.parametrize(
    ("http_status", "raw", "outcome", "reason"),
    [
        (429, "", Outcome.RATE_LIMITED, None),
        (429, "<html>Too Many Requests</html>", Outcome.RATE_LIMITED, None),
        (502, "<html>Bad Gateway</html>", Outcome.TRANSIENT, "retries_exhausted"),
        (500, json.dumps({"status": "x", "message": "boom"}), Outcome.TRANSIENT,
         "retries_exhausted"),
        (200, "not json at all", Outcome.TRANSIENT, "unclassified"),
        (200, json.dumps({"status": "Error", "message": "Something new"}), Outcome.TRANSIENT,
         "unclassified"),
        (200, json.dumps(["a list"]), Outcome.TRANSIENT, "unclassified"),
        # A known body wins over the status code: classify by the body.
        (500, json.dumps({"status": "Error", "message": "No Record Found"}), Outcome.NOT_FOUND,
         "no_record"),
    ],
)  # fmt: skip
def test_unknown_answers_follow_the_unknowns_table(
    http_status: int, raw: str, outcome: Outcome, reason: str | None
) -> None:
    verdict = classify_delete(Answer(http_status, parse_body(raw), raw))
    assert (verdict.outcome, verdict.reason) == (outcome, reason)


def test_parse_body_tolerates_double_encoding_and_garbage() -> None:
    assert parse_body('"{\\"a\\": 1}"') == {"a": 1}
    assert parse_body('\ufeff{"a": 1}') == {"a": 1}
    assert parse_body("<html>") is None
    assert parse_body('"just a string"') is None
