"""The ``/_sim/`` API: inspection without secrets, reset, campaigns, health; the server."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
from simclient import CAMPAIGN, NUMBERS, SimFactory

from worker.simulator import AccountSpec

pytestmark = pytest.mark.asyncio

REPO = Path(__file__).resolve().parents[2]


async def test_inspection_never_shows_a_key_or_a_token(make_sim: SimFactory) -> None:
    key = "sk-live-Zq8v3XtY7pL2"
    basic_key = "basic-Hh4kQ9wE"
    accounts = {"acme": AccountSpec(key), "legacy": AccountSpec(basic_key, "apikey")}
    sim = await make_sim(accounts=accounts)
    token = await sim.token(user="acme", api_key=key)
    old_token = token
    token = await sim.token(user="acme", api_key=key)
    await sim.delete(user="acme", api_key=key, token=token)
    await sim.delete(user="acme", api_key=key, token=old_token)
    await sim.delete(user="legacy", api_key=basic_key)
    await sim.delete(user="acme", api_key=key + "-typo", token=token)
    third = await sim.generate_token(user="acme", api_key=key, headers={"Authorization": token})
    newest = third.document["token"]
    await sim.post("/_sim/tokens/expire")
    for path in ("/_sim/requests", "/_sim/campaigns", "/_sim/faults", "/_sim/health"):
        async with sim.session.get(sim.url + path) as response:
            text = await response.text()
        for secret in (key, basic_key):
            assert secret not in text, (path, secret)
        for jwt_text in (old_token, token, newest):
            # Payload and signature; the header part is the same in every token.
            for part in jwt_text.split(".")[1:]:
                assert part not in text, (path, part)
    inspected = await sim.log()
    assert {r["api_key_id"] for r in inspected["requests"]} == {
        "acct:acme",
        "acct:legacy",
        "unknown-1",
    }
    assert len(inspected["requests"]) == 7
    assert len(inspected["tokens"]) == 3


async def test_request_record_fields(make_sim: SimFactory) -> None:
    sim = await make_sim()
    token = await sim.token()
    await sim.delete(token=token, phone="8100000003")
    record = (await sim.log())["requests"][-1]
    assert set(record) == {
        "t",
        "mono",
        "endpoint",
        "api_key_id",
        "status",
        "message",
        "campaign",
        "phone",
        "fault",
    }
    assert (record["endpoint"], record["status"], record["message"]) == (
        "delete",
        200,
        "Deleted Successfully",
    )
    assert (record["campaign"], record["phone"], record["fault"]) == (CAMPAIGN, "8100000003", None)
    assert record["t"] > 1.6e9 and isinstance(record["mono"], float)


async def test_reset_clears_the_log_but_not_the_campaigns(make_sim: SimFactory) -> None:
    sim = await make_sim(rate_limit=1)
    token = await sim.token()
    await sim.delete(token=token, phone="8100000001")
    await sim.delete(token=token, phone="8100000002")
    before = await sim.log()
    assert (before["violations"], before["generations"], len(before["requests"])) == (1, 1, 3)
    assert await sim.post("/_sim/reset") == (200, {"ok": True})
    after = await sim.log()
    assert (after["requests"], after["violations"], after["max_in_window"]) == ([], 0, 0)
    assert after["generations"] == 0
    assert len(after["tokens"]) == 1  # the vendor's tokens are not the log
    assert await sim.remaining() == NUMBERS - {"8100000001"}


async def test_campaigns_show_what_is_left(make_sim: SimFactory) -> None:
    sim = await make_sim(campaigns={"a": {"1", "2"}, "b": set()})
    assert await sim.get("/_sim/campaigns") == {"campaigns": {"a": ["1", "2"], "b": []}}
    token = await sim.token()
    assert (await sim.delete(token=token, campaign="b", phone="1")).document["message"] == (
        "No Record Found"
    )
    await sim.delete(token=token, campaign="a", phone="2")
    assert await sim.get("/_sim/campaigns") == {"campaigns": {"a": ["1"], "b": []}}


async def test_health(make_sim: SimFactory) -> None:
    sim = await make_sim()
    assert await sim.get("/_sim/health") == {"ok": True}


async def test_run_prints_its_url_and_stops_on_sigterm() -> None:
    code = (
        "from worker.simulator import SimulatorConfig, run; "
        "run(SimulatorConfig(campaigns={'c': {'1'}}), '127.0.0.1', 0)"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, cwd=REPO, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=15)).decode()
        assert line.startswith("ozonetel simulator listening on http://127.0.0.1:")
        url = line.split()[-1]
        async with (
            aiohttp.ClientSession() as session,
            session.get(url + "/_sim/campaigns") as response,
        ):
            assert await response.json() == {"campaigns": {"c": ["1"]}}
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0
        assert await process.stdout.read() == b""  # one line, nothing more
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
