"""The environment of the processes under test: workers, importer and simulator.

Built from the benchmark's own environment minus anything that would point
a child elsewhere (another Redis, the real vendor, a config file): every
child talks to this run's loopback Redis and simulator only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from worker.simulator.config import DEMO_API_KEY, DEMO_USER

_INHERITED_EXCLUDED = ("OZP_", "OZONETEL_", "REDIS_URL")


@dataclass(frozen=True)
class RateSettings:
    limit: int
    window_s: float
    margin_s: float

    @property
    def time_scale(self) -> float:
        return 60.0 / self.window_s


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_EXCLUDED)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def product_env(
    redis_url: str, sim_url: str, rate: RateSettings, concurrency: int
) -> dict[str, str]:
    """What a worker (or the importer) sees: this run's Redis, simulator and limit."""
    env = base_env()
    env.update(
        {
            "REDIS_URL": redis_url,
            "OZONETEL_BASE_URL": sim_url,
            "OZONETEL_API_KEY": DEMO_API_KEY,
            "OZONETEL_USERNAME": DEMO_USER,
            "OZP_RATE_LIMIT": str(rate.limit),
            "OZP_RATE_WINDOW_S": repr(rate.window_s),
            "OZP_RATE_MARGIN_S": repr(rate.margin_s),
            "OZP_CONCURRENCY": str(concurrency),
            # The token budget is counted per vendor hour; the simulator's hour
            # is compressed like its minute, so ours must be too.
            "OZP_TOKEN_BUDGET_WINDOW_S": repr(3600.0 / rate.time_scale),
        }
    )
    return env
