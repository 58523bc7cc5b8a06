"""Operators, their sign-in, their sessions and their CSRF tokens.

Stateless, so that any replica answers any request: the session cookie is
``name.expiry.signature``, signed with HMAC-SHA256 under the operator's own
key, and the CSRF token is a second HMAC of the same session. Changing or
removing an operator's key therefore ends their sessions everywhere at once.
Keys are compared as digests with ``hmac.compare_digest`` against every
configured key, without stopping at a match.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

from worker.config.settings import OPERATOR_NAME, Settings

COOKIE = "ozp_console"
OPERATE = "operate"
READ = "read"


@dataclass(frozen=True)
class Operator:
    name: str
    role: str

    @property
    def may_act(self) -> bool:
        return self.role == OPERATE


@dataclass(frozen=True)
class Session:
    operator: Operator
    expires_s: int
    csrf: str


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


def _sign(key: str, *parts: str) -> str:
    mac = hmac.new(key.encode("utf-8", "surrogateescape"), "|".join(parts).encode(), "sha256")
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def operator_for_key(settings: Settings, presented: str) -> Operator | None:
    """The operator whose key this is, or None; timing says nothing about which."""
    wanted = _digest(presented)
    found: str | None = None
    for name, key in settings.operator_keys.items():
        if hmac.compare_digest(wanted, _digest(key.reveal())) and presented:
            found = name
    if found is None:
        return None
    return Operator(found, settings.operator_roles.get(found, OPERATE))


def new_session(settings: Settings, operator: Operator, now_s: float | None = None) -> str:
    """The cookie value of a session that starts now."""
    expires = int((time.time() if now_s is None else now_s) + settings.console_session_s)
    key = settings.operator_keys[operator.name].reveal()
    return f"{operator.name}.{expires}.{_sign(key, 'session', operator.name, str(expires))}"


def session_from_cookie(
    settings: Settings, cookie: str, now_s: float | None = None
) -> Session | None:
    """The session a cookie proves, or None if it is malformed, forged or expired."""
    # From the right: a name may hold dots, the expiry and signature cannot.
    parts = cookie.rsplit(".", 2)
    if len(parts) != 3:
        return None
    name, expires_text, signature = parts
    if not OPERATOR_NAME.fullmatch(name) or name not in settings.operator_keys:
        return None
    if not expires_text.isascii() or not expires_text.isdigit() or len(expires_text) > 12:
        return None
    key = settings.operator_keys[name].reveal()
    expected = _sign(key, "session", name, expires_text)
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "surrogateescape")):
        return None
    expires = int(expires_text)
    if expires <= (time.time() if now_s is None else now_s):
        return None
    operator = Operator(name, settings.operator_roles.get(name, OPERATE))
    return Session(operator, expires, _sign(key, "csrf", name, expires_text))


def csrf_matches(session: Session, presented: str) -> bool:
    return bool(presented) and hmac.compare_digest(
        session.csrf.encode(), presented.encode("utf-8", "surrogateescape")
    )
