"""structlog set-up: JSON off a TTY, console on one; secrets and phones never leak.

Redaction is a processor, not a habit: whatever a call site passes, every
string value is scrubbed of registered secrets (API keys, tokens), of any
``Bearer``/``Basic`` credential, and of phone-number-like digit runs before it
is rendered. A careless ``log.info("x", body=raw_request)`` therefore cannot
leak either.

Libraries log through the standard library (aiohttp's parser errors quote
the offending header line; asyncio prints failed tasks): their records go
through the same processors, redaction included, to the same stream.
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
# A credential in an Authorization header or a quoted request line, whether or
# not it is one of ours: a producer's mistyped or truncated key is a secret too.
_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic)(\s+|%20)[^\s,;'\"\\]+")
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
    text = _CREDENTIAL.sub(lambda match: f"{match.group(1)} {REDACTED}", text)
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


# The handler configure_logging() puts on the root logger, replaced on each call.
_stdlib_handler: logging.Handler | None = None


def configure_logging(
    level: str = "info", json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Set up structlog once per process, and route the standard library's
    loggers (aiohttp, asyncio, ...) through the same processors and stream.
    JSON unless ``stream`` is a TTY."""
    global _stdlib_handler
    stream = stream or sys.stderr
    use_json = not stream.isatty() if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    numeric_level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_logger_name,
            *shared,
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=_NamedPrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                # The traceback is rendered to text first, so that redaction
                # sees what the exception's message quotes.
                structlog.processors.format_exc_info,
                redact,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    if _stdlib_handler is not None:
        root.removeHandler(_stdlib_handler)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    _stdlib_handler = handler


class WarningSampler:
    """Let one warning through per ``period_s`` and count the rest, so that a
    flood (a client retrying a wrong key a thousand times a second) costs one
    log line per period, with the number it stands for, not a thousand."""

    def __init__(self, period_s: float) -> None:
        self._period_s = period_s
        self._next_at = float("-inf")
        self._suppressed = 0

    def admit(self, now: float) -> int | None:
        """None: stay silent. A number: log now, saying that many were held back."""
        if now < self._next_at:
            self._suppressed += 1
            return None
        self._next_at = now + self._period_s
        held, self._suppressed = self._suppressed, 0
        return held


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


class _NamedPrintLogger(structlog.PrintLogger):
    """A PrintLogger that knows the name it was asked for, so that
    ``add_logger_name`` puts the module on every line, as the standard
    library's records carry theirs."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


class _NamedPrintLoggerFactory:
    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, *args: Any) -> _NamedPrintLogger:
        return _NamedPrintLogger(self._file, str(args[0]) if args else "")
