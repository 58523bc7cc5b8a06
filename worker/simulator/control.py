"""The simulator's own API under ``/_sim/``: inspect what arrived, steer faults and tokens.

None of it is the vendor's. Nothing here ever returns an API key or a token:
keys appear as ``api_key_id`` names, tokens as their ``jti``.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

from aiohttp import web

from worker.simulator.faults import FaultSettings, parse_latency
from worker.simulator.state import STATE_KEY

_RATE_FIELDS = ("error_5xx_rate", "drop_rate", "hang_rate")


class _BadControlRequest(Exception):
    """A control request the simulator refuses, with the reason for the caller."""


def _refuse(reason: str, status: int = 400) -> web.Response:
    return web.json_response({"error": reason}, status=status)


async def _json_object(request: web.Request) -> dict[str, Any]:
    body = await request.read()
    if not body.strip():
        return {}
    try:
        document = json.loads(body)
    except ValueError:
        raise _BadControlRequest("the body is not JSON") from None
    if not isinstance(document, dict):
        raise _BadControlRequest("the body must be a JSON object")
    return document


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _BadControlRequest(f"{name} must be a number")
    return float(value)


def updated_faults(current: FaultSettings, changes: dict[str, Any]) -> FaultSettings:
    """The faults with ``changes`` applied, validated; the current ones are untouched."""
    unknown = set(changes) - {"latency", "hang_s", *_RATE_FIELDS}
    if unknown:
        # Refuse rather than ignore: a typo would otherwise leave a fault off silently.
        raise _BadControlRequest(f"unknown fault settings: {', '.join(sorted(unknown))}")
    new = replace(current)
    try:
        if "latency" in changes:
            spec = changes["latency"]
            if not isinstance(spec, str):
                raise _BadControlRequest("latency must be a spec string such as 'uniform:0,300'")
            new.latency = parse_latency(spec)
        for name in (*_RATE_FIELDS, "hang_s"):
            if name in changes:
                setattr(new, name, _number(name, changes[name]))
        new.validate()
    except ValueError as exc:
        raise _BadControlRequest(str(exc)) from None
    return new


async def get_requests(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return web.json_response(
        {
            "requests": [record.as_json() for record in state.log.records],
            "violations": state.log.violations,
            "max_in_window": state.log.max_in_window,
            "limit": state.config.rate_limit,
            "window_s": state.rate.window_s,
            "tokens": [record.as_json() for record in state.tokens.records()],
            "generations": state.log.generations,
        }
    )


async def get_campaigns(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    remaining = {name: sorted(numbers) for name, numbers in state.campaigns.items()}
    return web.json_response({"campaigns": remaining})


async def get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].faults.as_json())


async def post_faults(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        state.faults = updated_faults(state.faults, await _json_object(request))
    except _BadControlRequest as exc:
        return _refuse(str(exc))
    return web.json_response(state.faults.as_json())


async def issue_token(request: web.Request) -> web.Response:
    """A token taken by "another system": the caller's current token stops working."""
    state = request.app[STATE_KEY]
    try:
        user = (await _json_object(request)).get("userName")
    except _BadControlRequest as exc:
        return _refuse(str(exc))
    if not isinstance(user, str) or state.account(user) is None:
        return _refuse(f"unknown userName {user!r}", status=404)
    issued = state.tokens.issue(user, wall=time.time(), mono=time.monotonic())
    if issued is None:
        return _refuse("token generation budget spent", status=429)
    state.log.generations += 1
    return web.json_response({"jti": issued[1].jti})


async def expire_tokens(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return web.json_response({"expired": state.tokens.expire_all(wall=time.time())})


async def reset_log(request: web.Request) -> web.Response:
    """Clear the request log and its counters; campaigns, tokens and windows stay."""
    request.app[STATE_KEY].log.reset()
    return web.json_response({"ok": True})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def add_control_routes(app: web.Application) -> None:
    app.router.add_get("/_sim/health", health)
    app.router.add_get("/_sim/requests", get_requests)
    app.router.add_get("/_sim/campaigns", get_campaigns)
    app.router.add_get("/_sim/faults", get_faults)
    app.router.add_post("/_sim/faults", post_faults)
    app.router.add_post("/_sim/tokens/issue", issue_token)
    app.router.add_post("/_sim/tokens/expire", expire_tokens)
    app.router.add_post("/_sim/reset", reset_log)
