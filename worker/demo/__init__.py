"""The demo's props: a sample list, the campaigns the simulator holds, and the
settings that point a drain at the simulator with the vendor's clock sped up.

``sample.csv`` holds, shuffled: numbers the campaigns hold (deleted), numbers
they do not (dead letters ``no_record``), rows naming a campaign that does
not exist (``invalid_campaign``), rows that are not jobs (an empty phone,
letters, too short: rejected before they cost a request) and repeats of
earlier rows (duplicates, skipped). ``campaigns.json`` is what the simulator
starts with; it holds more numbers than the list names, as a real campaign
would.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

from worker.config.settings import AccountSettings, Secret, Settings
from worker.simulator import SimulatorConfig, load_campaigns
from worker.simulator.config import DEMO_API_KEY, DEMO_USER

# The vendor's minute lasts 2 s: the limit stays 100 per window, so the
# demo shows the real pacing, 30 times faster.
TIME_SCALE = 30.0
VENDOR_MINUTE_S = 60.0
DEMO_ACCOUNT = "demo"


def sample_list() -> Traversable:
    return files(__name__) / "sample.csv"


def campaigns_file() -> Traversable:
    return files(__name__) / "campaigns.json"


def simulator_config() -> SimulatorConfig:
    """The simulator as the demo runs it: the shipped campaigns, the demo account."""
    from importlib.resources import as_file

    with as_file(campaigns_file()) as path:
        campaigns = load_campaigns(path)
    return SimulatorConfig(campaigns=campaigns, time_scale=TIME_SCALE)


def demo_settings(redis_url: str, simulator_url: str, concurrency: int = 4) -> Settings:
    """Settings built in code, not from the environment: the demo touches nothing of yours."""
    window_s = VENDOR_MINUTE_S / TIME_SCALE
    account = AccountSettings(
        name=DEMO_ACCOUNT,
        base_url=simulator_url,
        username=DEMO_USER,
        api_key=Secret(DEMO_API_KEY),
        rate_window_s=window_s,
        # 1 % of the window, as the default is about 1 % of the vendor's minute.
        rate_margin_s=window_s / 100,
        token_ttl_s=3600.0 / TIME_SCALE,
        token_budget_window_s=3600.0 / TIME_SCALE,
    )
    settings = Settings(
        redis_url=redis_url,
        key_prefix="ozp-demo",
        concurrency=concurrency,
        request_timeout_s=5.0,
        visibility_timeout_s=15.0,
        retry_base_s=0.05,
        retry_max_s=0.5,
        accounts={DEMO_ACCOUNT: account},
    )
    settings.validate()
    return settings
