"""Typed settings, built once from the environment and an optional TOML file.

Every default lives here. Nothing else in the package reads ``os.environ``.
A TOML file named by ``OZP_CONFIG`` may hold the global settings at its top
level and any number of accounts under ``[accounts.NAME]``; environment
variables override the file, and ``OZONETEL_API_KEY``/``OZONETEL_USERNAME``
describe the account named by ``OZP_ACCOUNT`` (default ``default``).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

from worker.errors import ConfigError

AuthMode = Literal["token", "apikey"]

DEFAULT_BASE_URL = "https://in1-ccaas-api.ozonetel.com"
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
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
    def has_credentials(self) -> bool:
        return bool(self.api_key) and bool(self.username)

    def require_credentials(self) -> None:
        if not self.api_key:
            raise ConfigError(f"account {self.name!r}: OZONETEL_API_KEY is not set")
        if not self.username:
            raise ConfigError(f"account {self.name!r}: OZONETEL_USERNAME is not set")


@dataclass(frozen=True)
class Settings:
    redis_url: str | None = None
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
    # Bearer keys of the HTTP ingestion API, by producer name.
    producer_keys: Mapping[str, Secret] = field(default_factory=dict)
    producer_rate_per_s: float = DEFAULT_PRODUCER_RATE_PER_S
    http_max_body_bytes: int = DEFAULT_HTTP_MAX_BODY_BYTES

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

    def with_overrides(self, **changes: Any) -> Settings:
        settings = replace(self, **changes)
        settings.validate()
        return settings

    def validate(self) -> None:
        _positive("OZP_CONCURRENCY", self.concurrency)
        _positive("OZP_MAX_ATTEMPTS", self.max_attempts)
        _positive("OZP_REQUEST_TIMEOUT_S", self.request_timeout_s)
        _positive("OZP_RETRY_BASE_S", self.retry_base_s)
        if self.retry_max_s < self.retry_base_s:
            raise ConfigError("OZP_RETRY_MAX_S must be at least OZP_RETRY_BASE_S")
        # A job is held from fetch until its answer is recorded; a shorter
        # visibility timeout would let another process take over a job whose
        # request is still in flight and send it twice.
        if self.visibility_timeout_s <= self.request_timeout_s:
            raise ConfigError("OZP_VISIBILITY_TIMEOUT_S must exceed OZP_REQUEST_TIMEOUT_S")
        if not self.key_prefix or any(c in self.key_prefix for c in "{}: "):
            raise ConfigError("OZP_KEY_PREFIX must be non-empty without braces, colons or spaces")
        if not self.accounts:
            raise ConfigError("no account configured")
        if not 0 < self.retry_share <= 1:
            raise ConfigError("OZP_RETRY_SHARE must be above 0 and at most 1")
        _positive("OZP_PRODUCER_RATE_PER_S", self.producer_rate_per_s)
        _positive("OZP_HTTP_MAX_BODY_BYTES", self.http_max_body_bytes)
        for name, key in self.producer_keys.items():
            if not name or len(key.reveal()) < 16:
                raise ConfigError(f"producer {name!r}: keys must be at least 16 characters")
        for account in self.accounts.values():
            _validate_account(account)


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")


def _validate_account(account: AccountSettings) -> None:
    where = f"account {account.name!r}"
    if not account.name or any(c in account.name for c in "{}: "):
        raise ConfigError(f"{where}: the name must be non-empty without braces, colons or spaces")
    if not account.base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: OZONETEL_BASE_URL must start with http:// or https://")
    if account.auth_mode not in ("token", "apikey"):
        raise ConfigError(f"{where}: OZONETEL_AUTH_MODE must be 'token' or 'apikey'")
    _positive("OZP_RATE_LIMIT", account.rate_limit)
    _positive("OZP_RATE_WINDOW_S", account.rate_window_s)
    # The margin is the time a permit may take from its slot to the vendor
    # (see limiter.py): without one, no permit could ever be used.
    if not 0 < account.rate_margin_s < account.rate_window_s:
        raise ConfigError("OZP_RATE_MARGIN_S must be above 0 and below OZP_RATE_WINDOW_S")
    for cap in account.rate_caps[1:]:
        _positive("a rate cap", cap.limit)
    _positive("OZP_TOKEN_TTL_S", account.token_ttl_s)
    _positive("OZP_TOKEN_BUDGET", account.token_budget)
    _positive("OZP_TOKEN_BUDGET_WINDOW_S", account.token_budget_window_s)


# Environment variable -> (field, parser) for the global settings ...
_GLOBAL_ENV: dict[str, tuple[str, type]] = {
    "OZP_KEY_PREFIX": ("key_prefix", str),
    "OZP_CONCURRENCY": ("concurrency", int),
    "OZP_MAX_ATTEMPTS": ("max_attempts", int),
    "OZP_REQUEST_TIMEOUT_S": ("request_timeout_s", float),
    "OZP_VISIBILITY_TIMEOUT_S": ("visibility_timeout_s", float),
    "OZP_RETRY_BASE_S": ("retry_base_s", float),
    "OZP_RETRY_MAX_S": ("retry_max_s", float),
    "OZP_RESULT_TTL_S": ("result_ttl_s", int),
    "OZP_STREAM_MAXLEN": ("stream_maxlen", int),
    "OZP_RETRY_SHARE": ("retry_share", float),
    "OZP_PRODUCER_RATE_PER_S": ("producer_rate_per_s", float),
    "OZP_HTTP_MAX_BODY_BYTES": ("http_max_body_bytes", int),
}
# ... and for the account the environment describes.
_ACCOUNT_ENV: dict[str, tuple[str, type]] = {
    "OZONETEL_BASE_URL": ("base_url", str),
    "OZONETEL_API_KEY": ("api_key", Secret),
    "OZONETEL_USERNAME": ("username", str),
    "OZONETEL_AUTH_MODE": ("auth_mode", str),
    "OZP_RATE_LIMIT": ("rate_limit", int),
    "OZP_RATE_WINDOW_S": ("rate_window_s", float),
    "OZP_RATE_MARGIN_S": ("rate_margin_s", float),
    "OZP_RATE_CAP_PER_HOUR": ("rate_cap_per_hour", int),
    "OZP_RATE_CAP_PER_DAY": ("rate_cap_per_day", int),
    "OZP_TOKEN_TTL_S": ("token_ttl_s", float),
    "OZP_TOKEN_BUDGET": ("token_budget", int),
    "OZP_TOKEN_BUDGET_WINDOW_S": ("token_budget_window_s", float),
}
_GLOBAL_FIELDS = {name for name, _ in _GLOBAL_ENV.values()} | {"redis_url"}
_ACCOUNT_FIELDS = {name for name, _ in _ACCOUNT_ENV.values()}


def _parse(name: str, parser: type, raw: Any) -> Any:
    if parser is Secret:
        return raw if isinstance(raw, Secret) else Secret(str(raw))
    try:
        return parser(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected {parser.__name__}, got {raw!r}") from None


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with Path(path).open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"OZP_CONFIG: no such file: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"OZP_CONFIG: {path} is not valid TOML: {exc}") from None


def _account_from_table(name: str, table: Mapping[str, Any]) -> AccountSettings:
    unknown = set(table) - _ACCOUNT_FIELDS
    if unknown:
        raise ConfigError(f"account {name!r}: unknown settings {sorted(unknown)}")
    by_field = {f: p for f, p in _ACCOUNT_ENV.values()}
    values = {
        key: _parse(f"accounts.{name}.{key}", by_field[key], raw) for key, raw in table.items()
    }
    return AccountSettings(name=name, **values)


def _producer_keys(table: Any, from_env: str) -> dict[str, Secret]:
    """``[producers] name = "key"`` in TOML, or ``name:key,name:key`` in the environment."""
    if not isinstance(table, dict):
        raise ConfigError("OZP_CONFIG: [producers] must be a table of name = key")
    keys = {str(name): Secret(str(key)) for name, key in table.items()}
    for pair in filter(None, (p.strip() for p in from_env.split(","))):
        name, sep, key = pair.partition(":")
        if not sep:
            raise ConfigError("OZP_PRODUCER_KEYS: expected name:key pairs separated by commas")
        keys[name.strip()] = Secret(key.strip())
    return keys


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build and validate the settings; raise :class:`ConfigError` with one line."""
    env = os.environ if environ is None else environ
    document = _read_toml(env["OZP_CONFIG"]) if env.get("OZP_CONFIG") else {}

    global_values: dict[str, Any] = {}
    producers = _producer_keys(document.get("producers", {}), env.get("OZP_PRODUCER_KEYS", ""))
    if producers:
        global_values["producer_keys"] = producers
    for key, raw in document.items():
        if key in ("accounts", "producers"):
            continue
        if key not in _GLOBAL_FIELDS:
            raise ConfigError(f"OZP_CONFIG: unknown setting {key!r}")
        parser = next((p for f, p in _GLOBAL_ENV.values() if f == key), str)
        global_values[key] = _parse(key, parser, raw)
    for var, (name, parser) in _GLOBAL_ENV.items():
        if env.get(var):
            global_values[name] = _parse(var, parser, env[var])
    if env.get("REDIS_URL"):
        global_values["redis_url"] = env["REDIS_URL"]

    tables = cast(dict[str, Any], document.get("accounts", {}))
    accounts = {name: _account_from_table(name, table) for name, table in tables.items()}
    env_account = env.get("OZP_ACCOUNT") or DEFAULT_ACCOUNT
    overrides = {
        name: _parse(var, parser, env[var])
        for var, (name, parser) in _ACCOUNT_ENV.items()
        if env.get(var)
    }
    if overrides or not accounts:
        base = accounts.get(env_account, AccountSettings(name=env_account))
        accounts[env_account] = replace(base, **overrides)

    settings = Settings(accounts=accounts, **global_values)
    settings.validate()
    return settings


def token_refresh_ahead_s(lifetime_s: float) -> float:
    """How long before expiry a token is replaced."""
    return lifetime_s * TOKEN_REFRESH_AHEAD_SHARE
