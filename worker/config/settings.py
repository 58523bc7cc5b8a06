"""Typed settings: every default, the settings' types, each environment
variable's field and ceiling, and the checks a whole configuration must pass.

Built once from the environment and an optional TOML file by
:func:`worker.config.sources.load_settings`, the only reader of
``os.environ`` in the package.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlsplit

from worker.errors import ConfigError

AuthMode = Literal["token", "apikey"]

DEFAULT_BASE_URL = "https://in1-ccaas-api.ozonetel.com"
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
# What REDIS_URL names, and the schemes that may name it: the client reads
# the kind of Redis from the scheme (worker/store/connection.py), and the
# mode makes the operator say it too, so a URL pasted from elsewhere fails
# at start instead of meaning something else.
REDIS_MODES = {
    "standalone": ("redis://", "rediss://", "unix://"),
    "sentinel": ("redis+sentinel://", "rediss+sentinel://"),
    # Any node of the cluster; the client learns the others from it.
    "cluster": ("redis://", "rediss://"),
}
DEFAULT_REDIS_MODE = "standalone"
DEFAULT_ACCOUNT = "default"
DEFAULT_KEY_PREFIX = "ozp"

# The vendor's published limits.
VENDOR_RATE_LIMIT = 100
VENDOR_RATE_WINDOW_S = 60.0
VENDOR_TOKEN_TTL_S = 3600.0
VENDOR_TOKEN_BUDGET = 10
VENDOR_TOKEN_BUDGET_WINDOW_S = 3600.0

# Half a second of margin on a 60 s window costs 0.8 % of the allowance and
# absorbs the spread between our grant time and the vendor's arrival time.
DEFAULT_RATE_MARGIN_S = 0.5
# Pacing: at most this many requests at once, then the allowance's own steady
# rate (one every window / limit) while the backlog lasts: a token bucket of
# this size. 10 of the vendor's 100 a minute: a burst of 10, then one every 0.6 s.
DEFAULT_RATE_BURST = 10
# Refresh when this share of the token's life is left: 6 minutes of a
# 60-minute token, so at most about one generation per hour in steady state.
TOKEN_REFRESH_AHEAD_SHARE = 0.1
DEFAULT_CONCURRENCY = 4
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_REQUEST_TIMEOUT_S = 30.0
DEFAULT_VISIBILITY_TIMEOUT_S = 120.0
DEFAULT_RETRY_BASE_S = 2.0
DEFAULT_RETRY_MAX_S = 300.0
# A million numbers take about a week at the vendor's limit: their records
# must outlive the drain that reports on them.
DEFAULT_RESULT_TTL_S = 14 * 24 * 3600
DEFAULT_STREAM_MAXLEN = 1_000_000
# Share of the allowance that retries and replays may take while fresh work
# waits, so a flood of failures cannot starve new work.
DEFAULT_RETRY_SHARE = 0.1
# HTTP ingestion: requests per second each producer key may make, and the
# largest request body accepted.
DEFAULT_PRODUCER_RATE_PER_S = 50.0
DEFAULT_HTTP_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_HTTP_BIND = "127.0.0.1:8080"
# Items (jobs) per second each producer key may queue, and per request: a
# request is cheap to make but each item costs a Redis write and, later, a
# vendor request; at 100 deletions a minute per account, a producer queueing
# 1,000 a second is already ten hours ahead of the workers.
DEFAULT_PRODUCER_ITEMS_PER_S = 1000.0
DEFAULT_HTTP_MAX_ITEMS = 1000
# Open connections the HTTP server holds at once. Well below the usual
# 1,024 file descriptors, leaving room for Redis and vendor connections.
DEFAULT_HTTP_MAX_CONNECTIONS = 500
# A client has this long from connecting to sending its request headers
# (slowloris), and this long to send the body once the headers are in.
DEFAULT_HTTP_HEADER_TIMEOUT_S = 10.0
DEFAULT_HTTP_BODY_TIMEOUT_S = 30.0
# An idle keep-alive connection is closed after this long; a client that
# reuses it later reconnects.
HTTP_KEEPALIVE_S = 30.0
# Producer keys and the ops key: long enough not to be guessed.
MIN_KEY_LENGTH = 16
# The producer-accounts entry meaning "every configured account".
ALL_ACCOUNTS = "*"
# The operator console: who may sign in, and what they may do.
OPERATOR_ROLES = ("operate", "read")
OPERATOR_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
DEFAULT_CONSOLE_SESSION_S = 8 * 3600
# Ceilings that catch a typo (an extra zero, inf) before it does harm.
_MAX_SECONDS = 365 * 86400.0
_MAX_COUNT = 1_000_000_000


class Secret:
    """A string that does not print itself: ``repr`` and ``str`` show stars."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class RateCap:
    """At most ``limit`` requests in any sliding window of ``window_s`` seconds."""

    limit: int
    window_s: float


@dataclass(frozen=True)
class AccountSettings:
    name: str = DEFAULT_ACCOUNT
    base_url: str = DEFAULT_BASE_URL
    api_key: Secret = field(default_factory=lambda: Secret(""))
    username: str = ""
    auth_mode: AuthMode = "token"
    rate_limit: int = VENDOR_RATE_LIMIT
    rate_window_s: float = VENDOR_RATE_WINDOW_S
    rate_margin_s: float = DEFAULT_RATE_MARGIN_S
    # Optional customer caps on top of the vendor's limit, to leave room for
    # their other systems on the same account.
    rate_cap_per_hour: int | None = None
    rate_cap_per_day: int | None = None
    rate_burst: int = DEFAULT_RATE_BURST
    token_ttl_s: float = VENDOR_TOKEN_TTL_S
    token_budget: int = VENDOR_TOKEN_BUDGET
    token_budget_window_s: float = VENDOR_TOKEN_BUDGET_WINDOW_S

    @property
    def rate_caps(self) -> tuple[RateCap, ...]:
        """Every limit a grant must satisfy, the vendor's first."""
        caps = [RateCap(self.rate_limit, self.rate_window_s)]
        if self.rate_cap_per_hour is not None:
            caps.append(RateCap(self.rate_cap_per_hour, 3600.0))
        if self.rate_cap_per_day is not None:
            caps.append(RateCap(self.rate_cap_per_day, 86400.0))
        return tuple(caps)

    @property
    def pacing(self) -> tuple[int, float] | None:
        """The smoothing, as (burst, refill interval in s): a token bucket of
        ``rate_burst`` refilled at the allowance's own rate. Never binding in
        steady state (it allows exactly the vendor's rate, and the vendor's
        window carries the safety margin), so it costs no allowance; None
        when the burst is the whole limit."""
        if self.rate_burst >= self.rate_limit:
            return None
        return self.rate_burst, self.rate_window_s / self.rate_limit

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_key) and bool(self.username)

    def require_credentials(self) -> None:
        if not self.api_key:
            raise ConfigError(f"account {self.name!r}: OZONETEL_API_KEY is not set")
        if not self.username:
            raise ConfigError(f"account {self.name!r}: OZONETEL_USERNAME is not set")


@dataclass(frozen=True)
class Settings:
    # Out of repr: the URL may carry the Redis password.
    redis_url: str | None = field(default=None, repr=False)
    redis_mode: str = DEFAULT_REDIS_MODE
    key_prefix: str = DEFAULT_KEY_PREFIX
    concurrency: int = DEFAULT_CONCURRENCY
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    visibility_timeout_s: float = DEFAULT_VISIBILITY_TIMEOUT_S
    retry_base_s: float = DEFAULT_RETRY_BASE_S
    retry_max_s: float = DEFAULT_RETRY_MAX_S
    result_ttl_s: int = DEFAULT_RESULT_TTL_S
    stream_maxlen: int = DEFAULT_STREAM_MAXLEN
    retry_share: float = DEFAULT_RETRY_SHARE
    accounts: Mapping[str, AccountSettings] = field(
        default_factory=lambda: {DEFAULT_ACCOUNT: AccountSettings()}
    )
    # Bearer keys of the HTTP ingestion API, by producer name ...
    producer_keys: Mapping[str, Secret] = field(default_factory=dict)
    # ... and the accounts each may queue for (ALL_ACCOUNTS for every one). A
    # producer not listed here may use every account only while there is one.
    producer_accounts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    producer_rate_per_s: float = DEFAULT_PRODUCER_RATE_PER_S
    producer_items_per_s: float = DEFAULT_PRODUCER_ITEMS_PER_S
    http_max_body_bytes: int = DEFAULT_HTTP_MAX_BODY_BYTES
    http_max_items: int = DEFAULT_HTTP_MAX_ITEMS
    http_max_connections: int = DEFAULT_HTTP_MAX_CONNECTIONS
    http_header_timeout_s: float = DEFAULT_HTTP_HEADER_TIMEOUT_S
    http_body_timeout_s: float = DEFAULT_HTTP_BODY_TIMEOUT_S
    # When set, /metrics and /openapi.json answer only to this bearer key.
    ops_key: Secret = field(default_factory=lambda: Secret(""))
    # Operators of the console, by name: their keys and roles. None: no console.
    operator_keys: Mapping[str, Secret] = field(default_factory=dict)
    operator_roles: Mapping[str, str] = field(default_factory=dict)
    console_session_s: int = DEFAULT_CONSOLE_SESSION_S
    # Allow an http:// vendor URL off loopback (the API key would travel in
    # clear text); for a staging simulator on a private network only.
    allow_insecure_vendor_url: bool = False

    @property
    def redis_url_or_default(self) -> str:
        return self.redis_url or DEFAULT_REDIS_URL

    def account(self, name: str | None = None) -> AccountSettings:
        name = name or next(iter(self.accounts), DEFAULT_ACCOUNT)
        try:
            return self.accounts[name]
        except KeyError:
            known = ", ".join(sorted(self.accounts)) or "none"
            raise ConfigError(f"unknown account {name!r} (configured: {known})") from None

    def producer_may_use(self, producer: str, account: str) -> bool:
        """Whether the producer's key may queue for, and read jobs of, ``account``."""
        if account not in self.accounts:
            return False
        allowed = self.producer_accounts.get(producer)
        if allowed is None:
            # validate() allows an unlisted producer only beside a single account.
            return len(self.accounts) == 1
        return ALL_ACCOUNTS in allowed or account in allowed

    def with_overrides(self, **changes: Any) -> Settings:
        settings = replace(self, **changes)
        settings.validate()
        return settings

    def validate(self) -> None:
        _check_numbers(self, GLOBAL_ENV)
        if self.retry_max_s < self.retry_base_s:
            raise ConfigError("OZP_RETRY_MAX_S must be at least OZP_RETRY_BASE_S")
        # A job is held from fetch until its answer is recorded; a shorter
        # visibility timeout would let another process take over a job whose
        # request is still in flight and send it twice.
        if self.visibility_timeout_s <= self.request_timeout_s:
            raise ConfigError("OZP_VISIBILITY_TIMEOUT_S must exceed OZP_REQUEST_TIMEOUT_S")
        if not self.key_prefix or any(c in self.key_prefix for c in "{}: "):
            raise ConfigError("OZP_KEY_PREFIX must be non-empty without braces, colons or spaces")
        self._validate_redis()
        if not self.accounts:
            raise ConfigError("no account configured")
        if self.retry_share > 1:
            raise ConfigError("OZP_RETRY_SHARE must be above 0 and at most 1")
        if not isinstance(self.allow_insecure_vendor_url, bool):
            raise ConfigError("OZP_ALLOW_INSECURE_VENDOR_URL must be true or false")
        if self.ops_key and len(self.ops_key.reveal()) < MIN_KEY_LENGTH:
            raise ConfigError(f"OZP_OPS_KEY must be at least {MIN_KEY_LENGTH} characters")
        self._validate_producers()
        self._validate_operators()
        for account in self.accounts.values():
            _validate_account(account, self.allow_insecure_vendor_url)

    def _validate_redis(self) -> None:
        mode, url = self.redis_mode, self.redis_url
        if mode not in REDIS_MODES:
            raise ConfigError(
                f"OZP_REDIS_MODE must be standalone, sentinel or cluster, got {shown_value(mode)}"
            )
        schemes = REDIS_MODES[mode]
        if mode == "sentinel" and url is None:
            raise ConfigError(
                "OZP_REDIS_MODE=sentinel needs REDIS_URL=redis+sentinel://HOST:PORT,.../SERVICE/DB"
            )
        if mode == "cluster" and url is None:
            raise ConfigError("OZP_REDIS_MODE=cluster needs REDIS_URL=redis://HOST:PORT of a node")
        if url is None or url.startswith(schemes):
            return
        if mode != "sentinel" and url.startswith(REDIS_MODES["sentinel"]):
            raise ConfigError("REDIS_URL names Sentinels: set OZP_REDIS_MODE=sentinel")
        # Never the URL itself: it may hold the password.
        raise ConfigError(
            f"REDIS_URL must start with {', '.join(schemes[:-1])} or {schemes[-1]}"
            + ("" if mode == DEFAULT_REDIS_MODE else f" when OZP_REDIS_MODE={mode}")
        )

    def _validate_producers(self) -> None:
        for name, key in self.producer_keys.items():
            if not name or len(key.reveal()) < MIN_KEY_LENGTH:
                raise ConfigError(
                    f"producer {name!r}: keys must be at least {MIN_KEY_LENGTH} characters"
                )
            allowed = self.producer_accounts.get(name)
            if allowed is None:
                if len(self.accounts) > 1:
                    # Which of several accounts a key may empty is a decision
                    # to write down, not to inherit by default.
                    raise ConfigError(
                        f"producer {name!r}: several accounts are configured; list the ones "
                        f"this key may use (OZP_PRODUCER_KEYS={name}@account+account:KEY, "
                        f"or {name}@{ALL_ACCOUNTS}:KEY for all)"
                    )
                continue
            if not allowed:
                raise ConfigError(f"producer {name!r}: the list of accounts is empty")
            for account in allowed:
                if account != ALL_ACCOUNTS and account not in self.accounts:
                    raise ConfigError(f"producer {name!r}: unknown account {account!r}")
        for name in self.producer_accounts:
            if name not in self.producer_keys:
                raise ConfigError(f"producer {name!r}: accounts listed but no key")

    def _validate_operators(self) -> None:
        producer_keys = {key.reveal() for key in self.producer_keys.values()}
        for name, key in self.operator_keys.items():
            if not OPERATOR_NAME.fullmatch(name):
                raise ConfigError(
                    f"operator {shown_value(name)}: names are 1-64 letters, digits, '_', '.', '-'"
                )
            if len(key.reveal()) < MIN_KEY_LENGTH:
                raise ConfigError(
                    f"operator {name!r}: keys must be at least {MIN_KEY_LENGTH} characters"
                )
            if key.reveal() in producer_keys or key.reveal() == self.ops_key.reveal():
                raise ConfigError(f"operator {name!r}: the key must differ from every other key")
            if self.operator_roles.get(name, "operate") not in OPERATOR_ROLES:
                raise ConfigError(
                    f"operator {name!r}: the role must be one of {', '.join(OPERATOR_ROLES)}"
                )
        if len({key.reveal() for key in self.operator_keys.values()}) < len(self.operator_keys):
            raise ConfigError("two operators share a key: each operator needs a key of their own")


def _check_numbers(values: object, table: Mapping[str, tuple[str, Parser, float]]) -> None:
    """Every numeric setting of ``table`` is of its type, finite, above 0 and at
    most its ceiling; True is not 1 and 2.9 is not 2."""
    for var, (name, parser, ceiling) in table.items():
        value = getattr(values, name)
        if parser not in (int, float) or value is None:
            continue
        kind = "a whole number" if parser is int else "a number"
        typed = (
            isinstance(value, int) if parser is int else isinstance(value, int | float)
        ) and not isinstance(value, bool)
        if not typed or not math.isfinite(value) or not 0 < value <= ceiling:
            raise ConfigError(
                f"{var} must be {kind} above 0 and at most {ceiling:.15g}, got {shown_value(value)}"
            )


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _validate_account(account: AccountSettings, allow_insecure: bool) -> None:
    where = f"account {account.name!r}"
    if not account.name or any(c in account.name for c in "{}: "):
        raise ConfigError(f"{where}: the name must be non-empty without braces, colons or spaces")
    try:
        url = urlsplit(account.base_url)
        host = url.hostname or ""
    except ValueError:
        url, host = urlsplit(""), ""
    if url.scheme not in ("http", "https") or not host:
        raise ConfigError(f"{where}: OZONETEL_BASE_URL must be an http:// or https:// URL")
    if url.scheme == "http" and not _is_loopback(host) and not allow_insecure:
        # The API key and every token ride in headers: over http:// anyone on
        # the path reads them.
        raise ConfigError(
            f"{where}: OZONETEL_BASE_URL is http:// off loopback, which sends the API key "
            "in clear text; use https://, or set OZP_ALLOW_INSECURE_VENDOR_URL=1 for a "
            "staging simulator"
        )
    if account.auth_mode not in ("token", "apikey"):
        raise ConfigError(f"{where}: OZONETEL_AUTH_MODE must be 'token' or 'apikey'")
    _check_numbers(account, ACCOUNT_ENV)
    # The margin is the time a permit may take from its slot to the vendor
    # (see limiter/permits.py): without one, no permit could ever be used.
    if not 0 < account.rate_margin_s < account.rate_window_s:
        raise ConfigError("OZP_RATE_MARGIN_S must be above 0 and below OZP_RATE_WINDOW_S")


# Environment variable -> (field, parser, ceiling) for the global settings ...
Parser = type
GLOBAL_ENV: dict[str, tuple[str, Parser, float]] = {
    "OZP_REDIS_MODE": ("redis_mode", str, 0),
    "OZP_KEY_PREFIX": ("key_prefix", str, 0),
    "OZP_CONCURRENCY": ("concurrency", int, 10_000),
    "OZP_MAX_ATTEMPTS": ("max_attempts", int, 1000),
    "OZP_REQUEST_TIMEOUT_S": ("request_timeout_s", float, 3600.0),
    "OZP_VISIBILITY_TIMEOUT_S": ("visibility_timeout_s", float, 86400.0),
    "OZP_RETRY_BASE_S": ("retry_base_s", float, 86400.0),
    "OZP_RETRY_MAX_S": ("retry_max_s", float, _MAX_SECONDS),
    "OZP_RESULT_TTL_S": ("result_ttl_s", int, 10 * _MAX_SECONDS),
    "OZP_STREAM_MAXLEN": ("stream_maxlen", int, _MAX_COUNT),
    "OZP_RETRY_SHARE": ("retry_share", float, 1.0),
    "OZP_PRODUCER_RATE_PER_S": ("producer_rate_per_s", float, 1_000_000.0),
    "OZP_PRODUCER_ITEMS_PER_S": ("producer_items_per_s", float, 1_000_000.0),
    "OZP_HTTP_MAX_BODY_BYTES": ("http_max_body_bytes", int, 64 * 1024 * 1024),
    "OZP_HTTP_MAX_ITEMS": ("http_max_items", int, 100_000),
    "OZP_HTTP_MAX_CONNECTIONS": ("http_max_connections", int, 100_000),
    "OZP_HTTP_HEADER_TIMEOUT_S": ("http_header_timeout_s", float, 3600.0),
    "OZP_HTTP_BODY_TIMEOUT_S": ("http_body_timeout_s", float, 3600.0),
    "OZP_OPS_KEY": ("ops_key", Secret, 0),
    "OZP_CONSOLE_SESSION_S": ("console_session_s", int, 30 * 86400.0),
    "OZP_ALLOW_INSECURE_VENDOR_URL": ("allow_insecure_vendor_url", bool, 0),
}
# ... and for the account the environment describes.
ACCOUNT_ENV: dict[str, tuple[str, Parser, float]] = {
    "OZONETEL_BASE_URL": ("base_url", str, 0),
    "OZONETEL_API_KEY": ("api_key", Secret, 0),
    "OZONETEL_USERNAME": ("username", str, 0),
    "OZONETEL_AUTH_MODE": ("auth_mode", str, 0),
    "OZP_RATE_LIMIT": ("rate_limit", int, _MAX_COUNT),
    "OZP_RATE_WINDOW_S": ("rate_window_s", float, 86400.0),
    "OZP_RATE_MARGIN_S": ("rate_margin_s", float, 86400.0),
    "OZP_RATE_CAP_PER_HOUR": ("rate_cap_per_hour", int, _MAX_COUNT),
    "OZP_RATE_CAP_PER_DAY": ("rate_cap_per_day", int, _MAX_COUNT),
    "OZP_RATE_BURST": ("rate_burst", int, _MAX_COUNT),
    "OZP_TOKEN_TTL_S": ("token_ttl_s", float, _MAX_SECONDS),
    "OZP_TOKEN_BUDGET": ("token_budget", int, _MAX_COUNT),
    "OZP_TOKEN_BUDGET_WINDOW_S": ("token_budget_window_s", float, _MAX_SECONDS),
}
GLOBAL_FIELDS = {name for name, _, _ in GLOBAL_ENV.values()} | {"redis_url"}
ACCOUNT_FIELDS = {name for name, _, _ in ACCOUNT_ENV.values()}


def shown_value(raw: Any) -> str:
    """A bad value as a message shows it: quoted, on one line, not too long."""
    text = repr(raw)
    return text if len(text) <= 40 else f"{text[:37]}..."


def token_refresh_ahead_s(lifetime_s: float) -> float:
    """How long before expiry a token is replaced."""
    return lifetime_s * TOKEN_REFRESH_AHEAD_SHARE
