"""The environment of the processes under test: workers, importer and simulator.

Built from the benchmark's own environment minus anything that would point
a child elsewhere (another Redis, the real vendor, a config file): every
child talks to this run's loopback Redis and simulator only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from worker.config.settings import ACCOUNT_ENV
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


def account_vars(sim_url: str, rate: RateSettings, username: str, api_key: str) -> dict[str, str]:
    """One account's settings, as the environment variables that describe it."""
    return {
        "OZONETEL_BASE_URL": sim_url,
        "OZONETEL_API_KEY": api_key,
        "OZONETEL_USERNAME": username,
        "OZP_RATE_LIMIT": str(rate.limit),
        "OZP_RATE_WINDOW_S": repr(rate.window_s),
        "OZP_RATE_MARGIN_S": repr(rate.margin_s),
        # The token budget is counted per vendor hour; the simulator's hour
        # is compressed like its minute, so ours must be too.
        "OZP_TOKEN_BUDGET_WINDOW_S": repr(3600.0 / rate.time_scale),
    }


def global_env(redis_url: str, concurrency: int) -> dict[str, str]:
    """What every process sees whatever its accounts: this run's Redis and concurrency."""
    env = base_env()
    env.update({"REDIS_URL": redis_url, "OZP_CONCURRENCY": str(concurrency)})
    return env


def product_env(
    redis_url: str, sim_url: str, rate: RateSettings, concurrency: int
) -> dict[str, str]:
    """What a worker (or the importer) sees: this run's Redis, simulator and limit."""
    env = global_env(redis_url, concurrency)
    env.update(account_vars(sim_url, rate, DEMO_USER, DEMO_API_KEY))
    return env


def write_accounts_config(
    path: Path, sim_url: str, rate: RateSettings, api_keys: Mapping[str, str]
) -> Path:
    """An ``OZP_CONFIG`` file with one ``[accounts.NAME]`` per entry of ``api_keys``.

    The same settings :func:`account_vars` gives one account, under their
    TOML names, and each key in a file of its own beside the TOML file
    (``api_key_file``), as hundreds of accounts would be deployed.
    """
    secrets = path.parent / "keys"
    secrets.mkdir(parents=True, exist_ok=True)
    tables = []
    for name, api_key in api_keys.items():
        (secrets / name).write_text(api_key + "\n", encoding="utf-8")
        values = account_vars(sim_url, rate, name, api_key)
        del values["OZONETEL_API_KEY"]
        # Every value as a TOML string: the settings parse text as strictly
        # as the environment's, so the file says exactly what the variables would.
        lines = [f"{ACCOUNT_ENV[var][0]} = {json.dumps(value)}" for var, value in values.items()]
        lines.append(f"api_key_file = {json.dumps(f'keys/{name}')}")
        tables.append(f"[accounts.{name}]\n" + "\n".join(lines) + "\n")
    path.write_text("\n".join(tables), encoding="utf-8")
    return path
