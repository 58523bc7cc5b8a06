"""structlog set-up: JSON off a TTY, console on one; secrets and phones never leak.

Redaction is a processor, not a habit: whatever a call site passes, every
string value is scrubbed of registered secrets (API keys, tokens) and of
phone-number-like digit runs before it is rendered. A careless
``log.info("x", body=raw_request)`` therefore cannot leak either.
"""

from __future__ import annotations

import logging
import re
import sys
from collections import deque
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

REDACTED = "***"
# Keys whose values are secret whatever they hold.
_SECRET_KEYS = frozenset({"api_key", "apikey", "token", "authorization", "password", "secret"})
# Keys whose values are identifiers that merely contain digits.
_UNMASKED_KEYS = frozenset({"job_id", "entry_id", "timestamp", "level", "logger", "account"})
# Seven or more digits, optionally behind a '+': a phone number, not a count.
_PHONE_RUN = re.compile(r"\+?\d{7,}")
# Tokens rotate about hourly; remembering the last few is enough to redact
# any that is still in use.
_secrets: deque[str] = deque(maxlen=64)


def register_secret(value: str) -> None:
    """Make sure ``value`` never appears in a log line."""
    if value and len(value) >= 4 and value not in _secrets:
        _secrets.append(value)


def mask_phone(phone: str) -> str:
    """Keep the last 3 digits, enough to tell numbers apart in a log."""
    if len(phone) <= 3:
        return "*" * len(phone)
    return "*" * (len(phone) - 3) + phone[-3:]


def _scrub(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return _PHONE_RUN.sub(lambda match: mask_phone(match.group(0)), text)


def _scrub_value(key: str, value: Any) -> Any:
    if key.lower() in _SECRET_KEYS:
        return REDACTED
    if isinstance(value, str):
        if key == "phone":
            return mask_phone(value)
        if key in _UNMASKED_KEYS:
            return value
        return _scrub(value)
    if isinstance(value, dict):
        return {k: _scrub_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(key, v) for v in value]
    if isinstance(value, BaseException):
        return _scrub(f"{type(value).__name__}: {value}")
    return value


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: scrub secrets and phone numbers from every value."""
    for key in list(event_dict):
        event_dict[key] = _scrub_value(key, event_dict[key])
    return event_dict


def configure_logging(
    level: str = "info", json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Set up structlog once per process. JSON unless ``stream`` is a TTY."""
    stream = stream or sys.stderr
    use_json = not stream.isatty() if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
