"""The vendor's tokens: HS512 JWTs, one current token per user, a budget of generations.

Rules kept (from the vendor's "Generate Token" page): a token lives
``token_ttl_s``; generating a token invalidates every older token of that
user; at most ``token_budget`` generations per sliding ``token_budget_window_s``.
The registry, not the JWT, is the truth about expiry: ``expire_all`` can end a
token early, as the vendor might after an admin change, while its ``exp``
claim still says otherwise.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from worker.simulator.windows import SlidingWindow

TokenCheck = Literal["current", "invalid", "expired"]

ALGORITHM = "HS512"
_REQUIRED_CLAIMS = ["sub", "iat", "exp", "jti"]


@dataclass(slots=True)
class TokenRecord:
    user: str
    jti: str
    iat: float
    exp: float
    invalidated: bool = False  # a newer token of the same user exists

    def as_json(self) -> dict[str, object]:
        # Never the token itself: the jti is enough to tell tokens apart.
        return {
            "user": self.user,
            "jti": self.jti,
            "iat": self.iat,
            "exp": self.exp,
            "invalidated": self.invalidated,
        }


class TokenRegistry:
    def __init__(self, *, ttl_s: float, budget: int, budget_window_s: float) -> None:
        """Durations are real seconds (already divided by the time scale)."""
        # 64 bytes: HS512 wants a key at least as long as its digest.
        self._secret = secrets.token_bytes(64)
        self._ttl_s = ttl_s
        self._budget = budget
        self._generations = SlidingWindow(budget_window_s)
        self._records: dict[str, TokenRecord] = {}  # by jti, oldest first
        self._current: dict[str, str] = {}  # user -> jti of the one valid token

    def issue(self, user: str, *, wall: float, mono: float) -> tuple[str, TokenRecord] | None:
        """A new token for ``user``, or None when the generation budget is spent.

        A refused generation does not count against the budget: the vendor
        limits how often a token "can be generated", and none was.
        """
        if self._generations.count(user, mono) >= self._budget:
            return None
        self._generations.record(user, mono)
        if float(self._ttl_s).is_integer():
            # Whole seconds, as in the vendor's example (exp - iat = 3600).
            iat: float = int(wall)
            exp: float = iat + int(self._ttl_s)
        else:
            # Time-scaled: keep the fraction, or a 1.2 s token could live 0.2 s.
            iat, exp = wall, wall + self._ttl_s
        record = TokenRecord(user=user, jti=uuid.uuid4().hex, iat=iat, exp=exp)
        for older in self._records.values():
            if older.user == user:
                older.invalidated = True
        self._records[record.jti] = record
        self._current[user] = record.jti
        payload = {"sub": user, "iat": iat, "exp": exp, "jti": record.jti}
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM), record

    def _decode(self, token: str) -> dict[str, Any] | None:
        """The payload if the signature is ours, else None; expiry is judged apart."""
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": _REQUIRED_CLAIMS,
                },
            )
        except jwt.InvalidTokenError:
            return None
        return payload

    def check(self, token: str, user: str, *, wall: float) -> TokenCheck:
        """Judge a bearer token presented for ``user`` at the delete endpoint."""
        payload = self._decode(token)
        if payload is None:
            return "invalid"
        record = self._records.get(str(payload["jti"]))
        if record is None or record.user != user or self._current.get(user) != record.jti:
            return "invalid"
        # exp is the first instant the token is no longer good (RFC 7519).
        return "expired" if wall >= record.exp else "current"

    def is_expired(self, token: str, *, wall: float) -> bool:
        """Whether ``token`` is one of ours whose life is over, current or not."""
        payload = self._decode(token)
        if payload is None:
            return False
        record = self._records.get(str(payload["jti"]))
        exp = record.exp if record is not None else float(payload["exp"])
        return wall >= exp

    def expire_all(self, *, wall: float) -> int:
        """End every current token now; returns how many were still alive."""
        ended = 0
        for jti in self._current.values():
            record = self._records[jti]
            if record.exp > wall:
                record.exp = wall
                ended += 1
        return ended

    def records(self) -> list[TokenRecord]:
        return list(self._records.values())
