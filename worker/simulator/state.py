"""Everything one simulator instance remembers, built from its config.

All of it is touched only from the event loop's thread, and no method of it
awaits: a check and the update that follows it (a number found, then removed)
cannot be interleaved by another request, so no locks are needed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from aiohttp import web

from worker.simulator.config import AccountSpec, SimulatorConfig
from worker.simulator.faults import FaultSettings
from worker.simulator.requestlog import KeyIds, RequestLog
from worker.simulator.tokens import TokenRegistry
from worker.simulator.windows import SlidingWindow


@dataclass
class SimulatorState:
    config: SimulatorConfig
    faults: FaultSettings
    rng: random.Random
    campaigns: dict[str, set[str]]  # what is left: deletes remove numbers
    tokens: TokenRegistry
    rate: SlidingWindow  # arrivals at the delete endpoint, per API key
    log: RequestLog
    key_ids: KeyIds

    @classmethod
    def from_config(cls, config: SimulatorConfig) -> SimulatorState:
        return cls(
            config=config,
            faults=config.initial_faults(),
            rng=random.Random(config.seed),
            campaigns={name: set(numbers) for name, numbers in config.campaigns.items()},
            tokens=TokenRegistry(
                ttl_s=config.real_seconds(config.token_ttl_s),
                budget=config.token_budget,
                budget_window_s=config.real_seconds(config.token_budget_window_s),
            ),
            rate=SlidingWindow(config.real_seconds(config.rate_window_s)),
            log=RequestLog(config.request_log_limit),
            key_ids=KeyIds({spec.api_key: user for user, spec in config.accounts.items()}),
        )

    def account(self, user: str) -> AccountSpec | None:
        return self.config.accounts.get(user)


STATE_KEY = web.AppKey("ozonetel_simulator_state", SimulatorState)
