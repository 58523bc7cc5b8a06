"""The vendor's answers, spelled exactly as Ozonetel's reference pages show them.

The product holds these strings once, in its classifier; the simulator spells
them again here on purpose and imports nothing from the product, so a typo on
either side fails a test instead of agreeing with itself.

``doc_double_encoded`` marks the answers the vendor's documentation shows as a
JSON document inside a JSON string; ``encode_body`` honours it (or overrides
it, for robustness tests).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from worker.simulator.config import DoubleEncode


@dataclass(frozen=True)
class VendorAnswer:
    http_status: int
    body: dict[str, object]
    doc_double_encoded: bool = False

    @property
    def message(self) -> str:
        return str(self.body.get("message", ""))


def _false(message: str, *, double: bool = False) -> VendorAnswer:
    # "Failure responses also carry "data": null where the status is false."
    return VendorAnswer(200, {"status": "false", "message": message, "data": None}, double)


def _error(message: str, *, double: bool = False) -> VendorAnswer:
    return VendorAnswer(200, {"status": "Error", "message": message}, double)


# The vendor does not document HTTP status codes for its error bodies; the
# simulator answers them with 200 so that a client classifying by status code
# alone is caught out. Only the rate limit answers 429.

# --- Delete Campaign Data -------------------------------------------------
DELETED = VendorAnswer(200, {"status": "Success", "message": "Deleted Successfully"})
API_KEY_MISSING = _false("Api Key Should Not be Null or Empty.", double=True)
INVALID_USER_DETAILS = _false("Invalid User Details")
USERNAME_MISSING = _false("Username Should Not be Null or Empty.", double=True)
CAMPAIGN_MISSING = _error("Campaign should not be null are empty")
CAMPAIGN_INVALID = _error("Passed campaign are invalid", double=True)
PHONE_MISSING = _error("PhoneNumber should not be null are empty")
NO_RECORD = _error("No Record Found")
INVALID_JSON = _false("Invalid Json Pass Valid Json")
INVALID_TOKEN = _false("Invalid Token", double=True)
TOKEN_MISSING = _false("Token Should Not be Null or Empty.")
TOKEN_EXPIRED = _false("Token Expired")
# Not documented for this endpoint: other Ozonetel APIs answer this body when
# their limit is exceeded, so the simulator uses it, with HTTP 429.
RATE_LIMITED = VendorAnswer(429, {"status": "error", "message": "Max limit exceeded"})

# --- Generate Token -------------------------------------------------------
USERNAME_NULL = _false("UserName is null")
INVALID_CREDENTIALS = _false("Invalid userName or apiKey")
# TOKEN_EXPIRED above is also this endpoint's "expired token used" answer.
# Not documented at all: the vendor only says "at most 10 times per hour". The
# simulator invents this body and a 429 so that a client which hammers the
# endpoint gets caught; a client must treat any unknown non-token answer here
# as "back off".
TOKEN_BUDGET_SPENT = VendorAnswer(
    429, {"status": "false", "message": "Token generation limit exceeded", "data": None}
)


def token_issued(token: str) -> VendorAnswer:
    return VendorAnswer(200, {"token": token, "message": ""})


def encode_body(answer: VendorAnswer, mode: DoubleEncode) -> str:
    """The body text: the JSON document, or that text again as a JSON string."""
    document = json.dumps(answer.body)
    if mode == "all" or (mode == "doc" and answer.doc_double_encoded):
        return json.dumps(document)
    return document
