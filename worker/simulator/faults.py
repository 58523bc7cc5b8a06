"""Fault injection: latency, gateway errors, dropped connections, hangs.

Faults stand in front of the vendor's logic, the way a load balancer or a
flaky network would. Their durations are real seconds (latency in ms), never
scaled by ``time_scale``: they exist to exercise the client's own timeouts,
which run on the real clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

LatencyKind = Literal["none", "fixed", "uniform", "exp"]
FaultName = Literal["5xx", "drop", "hang"]

# What a gateway in front of the vendor answers: HTML, not JSON, so that a
# client which parses every body as JSON is caught out.
GATEWAY_ERRORS: tuple[tuple[int, str], ...] = (
    (500, "Internal Server Error"),
    (502, "Bad Gateway"),
    (503, "Service Temporarily Unavailable"),
)


def gateway_error_page(status: int, reason: str) -> str:
    return (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n"
        "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )


@dataclass(frozen=True)
class LatencySpec:
    """A latency distribution; parameters are milliseconds."""

    kind: LatencyKind = "none"
    a_ms: float = 0.0  # fixed value, uniform low bound, or exponential mean
    b_ms: float = 0.0  # uniform high bound

    def sample_s(self, rng: random.Random) -> float:
        """One delay, in seconds."""
        if self.kind == "fixed":
            return self.a_ms / 1000.0
        if self.kind == "uniform":
            return rng.uniform(self.a_ms, self.b_ms) / 1000.0
        if self.kind == "exp":
            return rng.expovariate(1.0 / self.a_ms) / 1000.0 if self.a_ms > 0 else 0.0
        return 0.0

    def spec(self) -> str:
        """The spec string that parses back to this value."""
        if self.kind == "fixed":
            return f"fixed:{self.a_ms:g}"
        if self.kind == "uniform":
            return f"uniform:{self.a_ms:g},{self.b_ms:g}"
        if self.kind == "exp":
            return f"exp:{self.a_ms:g}"
        return "0"


NO_LATENCY = LatencySpec()


def _milliseconds(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"latency {spec!r}: {text!r} is not a number of ms") from None
    if not value >= 0 or value == float("inf"):  # also rejects NaN
        raise ValueError(f"latency {spec!r}: {text!r} must be a finite number >= 0")
    return value


def parse_latency(spec: str) -> LatencySpec:
    """Parse ``"0"``, ``"fixed:50"``, ``"uniform:0,300"`` or ``"exp:100"`` (ms).

    A bare number is a fixed latency, so ``"0"`` means none.
    """
    text = spec.strip()
    kind, sep, params = text.partition(":")
    kind = kind.strip().lower()
    if not sep:
        value = _milliseconds(kind, spec)
        return NO_LATENCY if value == 0 else LatencySpec("fixed", value)
    if kind == "fixed":
        value = _milliseconds(params, spec)
        return NO_LATENCY if value == 0 else LatencySpec("fixed", value)
    if kind == "uniform":
        low_text, comma, high_text = params.partition(",")
        if not comma:
            raise ValueError(f"latency {spec!r}: uniform needs two bounds, as uniform:0,300")
        low, high = _milliseconds(low_text, spec), _milliseconds(high_text, spec)
        if low > high:
            raise ValueError(f"latency {spec!r}: the low bound is above the high bound")
        return LatencySpec("uniform", low, high)
    if kind == "exp":
        return LatencySpec("exp", _milliseconds(params, spec))
    raise ValueError(
        f"latency {spec!r}: expected 0, fixed:MS, uniform:LOW,HIGH or exp:MEAN (milliseconds)"
    )


def check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be within [0, 1], got {value!r}")


@dataclass
class FaultSettings:
    """The faults in force; mutable, because the control API changes them at run time."""

    latency: LatencySpec = NO_LATENCY
    error_5xx_rate: float = 0.0
    drop_rate: float = 0.0
    hang_rate: float = 0.0
    hang_s: float = 30.0

    def validate(self) -> None:
        check_rate("error_5xx_rate", self.error_5xx_rate)
        check_rate("drop_rate", self.drop_rate)
        check_rate("hang_rate", self.hang_rate)
        # One roll picks at most one fault, so the rates share the unit interval.
        if self.error_5xx_rate + self.drop_rate + self.hang_rate > 1.0 + 1e-9:
            raise ValueError("error_5xx_rate + drop_rate + hang_rate must not exceed 1")
        if not 0.0 <= self.hang_s < float("inf"):
            raise ValueError(f"hang_s must be a finite number >= 0, got {self.hang_s!r}")

    def roll(self, rng: random.Random) -> FaultName | None:
        """Pick the fault for one request, or None; one draw keeps seeded runs stable."""
        draw = rng.random()
        if draw < self.drop_rate:
            return "drop"
        draw -= self.drop_rate
        if draw < self.error_5xx_rate:
            return "5xx"
        draw -= self.error_5xx_rate
        if draw < self.hang_rate:
            return "hang"
        return None

    def as_json(self) -> dict[str, object]:
        return {
            "latency": self.latency.spec(),
            "error_5xx_rate": self.error_5xx_rate,
            "drop_rate": self.drop_rate,
            "hang_rate": self.hang_rate,
            "hang_s": self.hang_s,
        }
