"""What the vendor answers to a request that reached its logic.

Pure decisions over the simulator's state (they update it: a number is
deleted, a token issued), free of HTTP and faults, in the documented order of
checks. Each function returns one of the answers of ``vendor``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from worker.simulator import vendor
from worker.simulator.state import SimulatorState
from worker.simulator.vendor import VendorAnswer


class _Malformed:
    """A field the vendor's JSON binding could not turn into text."""


MALFORMED: Final = _Malformed()
_DELETE_FIELDS = ("campaignName", "phoneNumber", "userName", "name")


@dataclass
class DeleteRequest:
    """The parts of a delete request the vendor looks at."""

    api_key: str
    authorization: str | None
    body: bytes


def _as_text(value: object) -> str | _Malformed | None:
    # The vendor binds the body to text fields; a JSON number becomes its
    # digits (as a Java JSON binder does), a list or object cannot bind.
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return MALFORMED


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization`` header, with or without ``Bearer``."""
    if authorization is None:
        return None
    value = authorization.strip()
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer":
        value = rest.strip()
    elif value.lower() == "bearer":
        value = ""
    return value or None


def peek_record(body: bytes) -> tuple[str | None, str | None]:
    """Campaign and phone of a delete body, for the log; None where not text."""
    try:
        document = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(document, dict):
        return None, None
    campaign, phone = document.get("campaignName"), document.get("phoneNumber")
    return (
        campaign if isinstance(campaign, str) else None,
        phone if isinstance(phone, str) else None,
    )


def judge_delete(state: SimulatorState, request: DeleteRequest, *, wall: float) -> VendorAnswer:
    """Delete Campaign Data, after the apiKey header and rate-limit checks passed."""
    try:
        document = json.loads(request.body)
    except ValueError:
        return vendor.INVALID_JSON
    # An array of records is "several numbers in one request".
    if not isinstance(document, dict):
        return vendor.INVALID_JSON
    fields = {key: _as_text(document.get(key)) for key in _DELETE_FIELDS}
    campaign, phone = fields["campaignName"], fields["phoneNumber"]
    if any(value is MALFORMED for value in fields.values()):
        return vendor.INVALID_JSON
    if isinstance(phone, str) and "," in phone:
        return vendor.INVALID_JSON

    user = fields["userName"]
    if not isinstance(user, str) or not user.strip():
        return vendor.USERNAME_MISSING
    account = state.account(user)
    if account is None or account.api_key != request.api_key:
        return vendor.INVALID_USER_DETAILS
    if account.auth_mode == "token":
        token = bearer_token(request.authorization)
        if token is None:
            return vendor.TOKEN_MISSING
        verdict = state.tokens.check(token, user, wall=wall)
        if verdict == "invalid":
            return vendor.INVALID_TOKEN
        if verdict == "expired":
            return vendor.TOKEN_EXPIRED
    # In apikey (BASIC_AUTH) mode the matching apiKey alone authenticates.

    if not isinstance(campaign, str) or not campaign:
        return vendor.CAMPAIGN_MISSING
    numbers = state.campaigns.get(campaign)
    if numbers is None:
        return vendor.CAMPAIGN_INVALID
    if not isinstance(phone, str) or not phone:
        return vendor.PHONE_MISSING
    if phone not in numbers:
        # Never there and already deleted look the same, as at the vendor.
        return vendor.NO_RECORD
    numbers.remove(phone)
    return vendor.DELETED


def judge_token(
    state: SimulatorState,
    *,
    api_key: str | None,
    authorization: str | None,
    body: bytes,
    wall: float,
    mono: float,
) -> VendorAnswer:
    """Generate Token."""
    try:
        document: object = json.loads(body)
    except ValueError:
        document = None
    user = document.get("userName") if isinstance(document, dict) else None
    if not isinstance(user, str):
        return vendor.USERNAME_NULL
    account = state.account(user)
    if api_key is None or account is None or account.api_key != api_key:
        return vendor.INVALID_CREDENTIALS
    # The doc lists "expired token used" for this endpoint: a client that
    # sends its stale bearer along with the refresh is refused.
    token = bearer_token(authorization)
    if token is not None and state.tokens.is_expired(token, wall=wall):
        return vendor.TOKEN_EXPIRED
    # The vendor requires TOKEN_AUTH for tokens but does not say what an
    # apikey-mode account gets here; the simulator issues one all the same.
    issued = state.tokens.issue(user, wall=wall, mono=mono)
    if issued is None:
        return vendor.TOKEN_BUDGET_SPENT
    state.log.generations += 1
    return vendor.token_issued(issued[0])
