"""The simulator as an aiohttp application: the vendor's two paths and ``/_sim/``."""

from __future__ import annotations

from aiohttp import web

from worker.simulator.config import SimulatorConfig
from worker.simulator.control import add_control_routes
from worker.simulator.endpoints import (
    CATOKEN_PATH,
    DELETE_PATH,
    delete_campaign_data,
    generate_token,
)
from worker.simulator.state import STATE_KEY, SimulatorState


def create_app(config: SimulatorConfig | None = None) -> web.Application:
    """A fresh simulator: its own state, token secret and random generator."""
    app = web.Application()
    app[STATE_KEY] = SimulatorState.from_config(config or SimulatorConfig())
    app.router.add_delete(DELETE_PATH, delete_campaign_data)
    app.router.add_post(CATOKEN_PATH, generate_token)
    add_control_routes(app)
    return app
