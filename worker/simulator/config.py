"""The simulator's settings: one frozen object, validated once at construction.

Vendor durations (token life, token budget window, rate window) are in
*vendor* seconds and run ``time_scale`` times faster in real time, so a test
can live through an hour of the vendor's clock in two minutes. Fault
durations are real time (see ``faults``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Literal

from worker.simulator.faults import NO_LATENCY, FaultSettings, LatencySpec

AuthMode = Literal["token", "apikey"]
DoubleEncode = Literal["doc", "all", "none"]

# The vendor's published numbers.
VENDOR_TOKEN_TTL_S = 3600.0
VENDOR_TOKEN_BUDGET = 10
VENDOR_TOKEN_BUDGET_WINDOW_S = 3600.0
VENDOR_RATE_LIMIT = 100
VENDOR_RATE_WINDOW_S = 60.0

DEMO_USER = "demo"
DEMO_API_KEY = "demo-key"  # a public demo credential, not a secret
# The request log is bounded so that a long demo cannot eat the machine; the
# counters (violations, max in window) are kept apart and stay exact.
DEFAULT_REQUEST_LOG_LIMIT = 200_000


@dataclass(frozen=True)
class AccountSpec:
    """One CloudAgent account: its API key and its "API Authentication" setting."""

    api_key: str
    auth_mode: AuthMode = "token"

    def __post_init__(self) -> None:
        if not isinstance(self.api_key, str) or not self.api_key:
            raise ValueError("an account's api_key must be a non-empty string")
        if self.auth_mode not in ("token", "apikey"):
            raise ValueError(f"auth_mode must be 'token' or 'apikey', got {self.auth_mode!r}")


def _default_accounts() -> dict[str, AccountSpec]:
    return {DEMO_USER: AccountSpec(DEMO_API_KEY, "token")}


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True)
class SimulatorConfig:
    accounts: Mapping[str, AccountSpec] = field(default_factory=_default_accounts)
    # Campaign name -> phone numbers, matched exactly as written (no normalizing:
    # the vendor does not document any, so the simulator assumes none).
    campaigns: Mapping[str, AbstractSet[str]] = field(default_factory=dict)
    time_scale: float = 1.0
    token_ttl_s: float = VENDOR_TOKEN_TTL_S
    token_budget: int = VENDOR_TOKEN_BUDGET
    token_budget_window_s: float = VENDOR_TOKEN_BUDGET_WINDOW_S
    rate_limit: int = VENDOR_RATE_LIMIT
    rate_window_s: float = VENDOR_RATE_WINDOW_S
    latency: LatencySpec = NO_LATENCY
    error_5xx_rate: float = 0.0
    drop_rate: float = 0.0
    hang_rate: float = 0.0
    hang_s: float = 30.0
    faults_on_token_endpoint: bool = False
    seed: int | None = None
    double_encode: DoubleEncode = "doc"
    request_log_limit: int = DEFAULT_REQUEST_LOG_LIMIT

    def __post_init__(self) -> None:
        for user, account in self.accounts.items():
            if not isinstance(user, str) or not user:
                raise ValueError("account user names must be non-empty strings")
            if not isinstance(account, AccountSpec):
                raise ValueError(f"account {user!r} must be an AccountSpec")
        for name, numbers in self.campaigns.items():
            if not isinstance(name, str) or not name:
                raise ValueError("campaign names must be non-empty strings")
            # A bare string is a collection of characters: refuse it rather than
            # silently making a campaign of single digits.
            if isinstance(numbers, str) or not all(isinstance(n, str) for n in numbers):
                raise ValueError(f"campaign {name!r} must map to a set of phone number strings")
        _positive("time_scale", self.time_scale)
        _positive("token_ttl_s", self.token_ttl_s)
        _positive("token_budget_window_s", self.token_budget_window_s)
        _positive("rate_window_s", self.rate_window_s)
        for name, count in (
            ("token_budget", self.token_budget),
            ("rate_limit", self.rate_limit),
            ("request_log_limit", self.request_log_limit),
        ):
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {count!r}")
        if self.double_encode not in ("doc", "all", "none"):
            raise ValueError(f"double_encode must be doc, all or none, got {self.double_encode!r}")
        self.initial_faults().validate()

    def initial_faults(self) -> FaultSettings:
        return FaultSettings(
            latency=self.latency,
            error_5xx_rate=self.error_5xx_rate,
            drop_rate=self.drop_rate,
            hang_rate=self.hang_rate,
            hang_s=self.hang_s,
        )

    def real_seconds(self, vendor_seconds: float) -> float:
        """A vendor duration on the real clock."""
        return vendor_seconds / self.time_scale
