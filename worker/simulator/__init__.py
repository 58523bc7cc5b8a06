"""A faithful simulator of the Ozonetel CCaaS API, for tests, demos and staging.

It imports nothing from the rest of ``worker``: it plays the vendor, and spells
the vendor's strings itself, so that the product's classifier and the
simulator check each other.
"""

from worker.simulator.app import create_app
from worker.simulator.campaigns import load_campaigns
from worker.simulator.config import AccountSpec, SimulatorConfig
from worker.simulator.faults import LatencySpec, parse_latency
from worker.simulator.server import run, start

__all__ = [
    "AccountSpec",
    "LatencySpec",
    "SimulatorConfig",
    "create_app",
    "load_campaigns",
    "parse_latency",
    "run",
    "start",
]
