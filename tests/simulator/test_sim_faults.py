"""Fault injection over real HTTP: gateway errors, dropped connections, hangs, latency."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit

import aiohttp
import pytest
from simclient import DELETE, Sim, SimFactory

from worker.simulator import parse_latency

pytestmark = pytest.mark.asyncio

SUCCESS = {"status": "Success", "message": "Deleted Successfully"}


async def test_5xx_is_html_and_the_vendor_never_sees_it(make_sim: SimFactory) -> None:
    sim = await make_sim()
    token = await sim.token()
    await sim.post("/_sim/faults", {"error_5xx_rate": 1.0})
    answers = [await sim.delete(token=token, phone="8100000001") for _ in range(6)]
    for answer in answers:
        assert answer.status in (500, 502, 503)
        assert answer.document is None  # not JSON
        assert answer.content_type == "text/html"
        assert f"<h1>{answer.status} " in answer.text
    assert "8100000001" in await sim.remaining()
    deletes = [r for r in (await sim.log())["requests"] if r["endpoint"] == "delete"]
    assert [(r["fault"], r["message"]) for r in deletes] == [("5xx", "5xx")] * 6
    assert [r["status"] for r in deletes] == [a.status for a in answers]


async def test_drop_closes_the_connection_after_the_delete(make_sim: SimFactory) -> None:
    sim = await make_sim(drop_rate=1.0)
    token = await sim.token()
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await sim.delete(token=token, phone="8100000001")
    deletes = [r for r in (await sim.log())["requests"] if r["endpoint"] == "delete"]
    # aiohttp's client silently resends a DELETE once on a dropped connection,
    # so the server may see it twice; every arrival is recorded.
    assert 1 <= len(deletes) <= 2
    assert all(r["fault"] == "drop" and r["status"] is None for r in deletes)
    # The vendor acted before the answer was lost.
    assert deletes[0]["message"] == "Deleted Successfully"
    assert "8100000001" not in await sim.remaining()


async def test_drop_sends_no_byte(make_sim: SimFactory) -> None:
    sim = await make_sim(drop_rate=1.0)
    token = await sim.token()
    url = urlsplit(sim.url)
    assert url.hostname is not None and url.port is not None
    body = json.dumps(
        {"campaignName": "spring-sale", "phoneNumber": "8100000002", "userName": "demo"}
    )
    request = (
        f"DELETE {DELETE} HTTP/1.1\r\nHost: {url.netloc}\r\napiKey: demo-key\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    )
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(request.encode())
        await writer.drain()
        received = await asyncio.wait_for(reader.read(), timeout=5)
    finally:
        writer.close()
    assert received == b""
    deletes = [r for r in (await sim.log())["requests"] if r["endpoint"] == "delete"]
    assert len(deletes) == 1
    assert (deletes[0]["fault"], deletes[0]["status"], deletes[0]["phone"]) == (
        "drop",
        None,
        "8100000002",
    )


async def test_hang_records_the_arrival_then_answers_late(make_sim: SimFactory) -> None:
    sim = await make_sim(hang_rate=1.0, hang_s=0.6)
    token = await sim.token()
    short = aiohttp.ClientTimeout(total=0.2)
    headers = {"apiKey": "demo-key", "Authorization": f"Bearer {token}"}
    body = {"campaignName": "spring-sale", "phoneNumber": "8100000001", "userName": "demo"}
    with pytest.raises(asyncio.TimeoutError):
        async with sim.session.delete(sim.url + DELETE, json=body, headers=headers, timeout=short):
            pass
    deletes = [r for r in (await sim.log())["requests"] if r["endpoint"] == "delete"]
    assert len(deletes) == 1 and deletes[0]["fault"] == "hang"
    # Acted on at arrival: the client timed out, yet the number is gone.
    assert "8100000001" not in await sim.remaining()

    started = time.monotonic()
    late = await sim.delete(token=token, phone="8100000002")
    assert time.monotonic() - started >= 0.6
    assert late.document == SUCCESS


async def test_fixed_latency(make_sim: SimFactory) -> None:
    sim = await make_sim(latency=parse_latency("fixed:150"))
    token = await sim.token()
    started = time.monotonic()
    answer = await sim.delete(token=token)
    assert time.monotonic() - started >= 0.15
    assert answer.document == SUCCESS


async def test_faults_change_at_run_time(sim: Sim) -> None:
    token = await sim.token()
    status, faults = await sim.post("/_sim/faults", {"drop_rate": 1.0, "latency": "uniform:0,5"})
    assert status == 200
    assert (faults["drop_rate"], faults["latency"]) == (1.0, "uniform:0,5")
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await sim.delete(token=token, phone="8100000001")
    await sim.post("/_sim/faults", {"drop_rate": 0})
    assert (await sim.delete(token=token, phone="8100000002")).document == SUCCESS
    assert (await sim.get("/_sim/faults"))["drop_rate"] == 0.0


@pytest.mark.parametrize(
    "changes",
    [
        {"drop_rate": 1.5},
        {"drop_rate": 0.6, "hang_rate": 0.6},
        {"latency": "normal:5"},
        {"latency": 5},
        {"hang_s": -1},
        {"hang_s": "long"},
        {"drop": 1.0},
    ],
)
async def test_bad_fault_settings_are_refused(sim: Sim, changes: dict[str, object]) -> None:
    status, body = await sim.post("/_sim/faults", changes)
    assert status == 400 and body["error"]
    assert (await sim.get("/_sim/faults"))["drop_rate"] == 0.0


async def test_token_endpoint_is_spared_unless_asked(make_sim: SimFactory) -> None:
    spared = await make_sim(error_5xx_rate=1.0)
    assert (await spared.generate_token()).status == 200
    assert (await spared.delete()).status in (500, 502, 503)
    hit = await make_sim(error_5xx_rate=1.0, faults_on_token_endpoint=True)
    answer = await hit.generate_token()
    assert answer.status in (500, 502, 503)
    assert (await hit.log())["generations"] == 0


async def test_dropped_token_answer_still_issued_the_token(make_sim: SimFactory) -> None:
    sim = await make_sim(drop_rate=1.0, faults_on_token_endpoint=True)
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await sim.generate_token()
    inspected = await sim.log()
    assert inspected["generations"] >= 1  # the budget was spent all the same
    assert all(r["fault"] == "drop" for r in inspected["requests"])


async def test_seeded_faults_repeat(make_sim: SimFactory) -> None:
    async def faults_seen(seed: int) -> list[object]:
        sim = await make_sim(seed=seed, error_5xx_rate=0.5)
        for _ in range(12):
            await sim.delete(api_key=None)
        return [r["fault"] for r in (await sim.log())["requests"]]

    first, again, other = await faults_seen(3), await faults_seen(3), await faults_seen(4)
    assert first == again
    assert set(first) == {None, "5xx"}
    assert first != other
