"""The vendor client against the simulator over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Simulator
from worker.config.settings import AccountSettings, Secret
from worker.queue.jobs import make_job
from worker.simulator import AccountSpec
from worker.vendor.client import OzonetelClient, TransportFailure, create_session
from worker.vendor.outcomes import Outcome, classify_delete, classify_token


def _account(sim: Simulator, **changes: Any) -> AccountSettings:
    values: dict[str, Any] = {
        "base_url": sim.url, "username": "demo", "api_key": Secret("demo-key"),
    }  # fmt: skip
    values.update(changes)
    return AccountSettings(**values)


async def test_a_dropped_connection_is_never_resent_without_a_permit(
    simulator_factory: Any,
) -> None:
    sim: Simulator = await simulator_factory(
        campaigns={"c": {"9845000001"}}, drop_rate=1.0, accounts={"demo": AccountSpec("demo-key",
        "apikey")},
    )  # fmt: skip
    session = create_session(5.0)
    try:
        client = OzonetelClient(session, _account(sim, auth_mode="apikey"))
        for _ in range(3):
            with pytest.raises(TransportFailure):
                await client.delete_record(make_job("c", "9845000001"), None)
    finally:
        await session.close()
    # aiohttp alone would have sent each DELETE twice (RFC 9112 retry).
    deletes = [r for r in (await sim.inspect())["requests"] if r["endpoint"] == "delete"]
    assert len(deletes) == 3


async def test_token_mode_sends_the_bearer_and_apikey_mode_does_without(
    simulator_factory: Any,
) -> None:
    sim: Simulator = await simulator_factory(
        campaigns={"c": {"9845000001", "9845000002"}},
        accounts={"demo": AccountSpec("demo-key"), "basic": AccountSpec("basic-key", "apikey")},
        double_encode="all",
    )
    session = create_session(5.0)
    try:
        token_client = OzonetelClient(session, _account(sim))
        issued = await token_client.generate_token()
        assert classify_token(issued).outcome is Outcome.ISSUED
        token = str(issued.body["token"]) if issued.body else ""
        gone = await token_client.delete_record(make_job("c", "9845000001"), token)
        refused = await token_client.delete_record(make_job("c", "9845000002"), None)

        basic = OzonetelClient(
            session,
            _account(sim, username="basic", api_key=Secret("basic-key"), auth_mode="apikey"),
        )
        also_gone = await basic.delete_record(make_job("c", "9845000002"), token)
    finally:
        await session.close()
    assert classify_delete(gone).outcome is Outcome.DELETED
    assert classify_delete(refused).message == "Token Should Not be Null or Empty."
    assert classify_delete(also_gone).outcome is Outcome.DELETED


async def test_a_hang_past_the_timeout_is_a_transport_failure(simulator_factory: Any) -> None:
    sim: Simulator = await simulator_factory(
        campaigns={"c": {"9845000001"}}, hang_rate=1.0, hang_s=5.0,
        accounts={"demo": AccountSpec("demo-key", "apikey")},
    )  # fmt: skip
    session = create_session(0.3)
    try:
        client = OzonetelClient(session, _account(sim, auth_mode="apikey"))
        with pytest.raises(TransportFailure, match="timeout"):
            await client.delete_record(make_job("c", "9845000001"), None)
    finally:
        await session.close()


async def test_an_unreachable_host_is_a_transport_failure_without_secrets() -> None:
    from worker.store.embedded import free_port

    account = AccountSettings(
        base_url=f"http://127.0.0.1:{free_port()}", username="demo", api_key=Secret("k-9f8e7d")
    )
    session = create_session(2.0)
    try:
        with pytest.raises(TransportFailure) as caught:
            await OzonetelClient(session, account).generate_token()
    finally:
        await session.close()
    assert "k-9f8e7d" not in str(caught.value)


async def test_a_request_past_its_send_by_is_never_written(simulator_factory: Any) -> None:
    import time

    from worker.vendor.client import NotSent

    sim: Simulator = await simulator_factory(
        campaigns={"c": {"9845000001"}}, accounts={"demo": AccountSpec("demo-key", "apikey")}
    )
    session = create_session(5.0)
    try:
        client = OzonetelClient(session, _account(sim, auth_mode="apikey"))
        # Once on a fresh connection, once on a reused one.
        for _ in range(2):
            with pytest.raises(NotSent):
                await client.delete_record(
                    make_job("c", "9845000001"), None, send_by=time.monotonic() - 0.001
                )
            on_time = await client.delete_record(
                make_job("c", "9845000002"), None, send_by=time.monotonic() + 5
            )
            assert classify_delete(on_time).message == "No Record Found"
    finally:
        await session.close()
    deletes = [r for r in (await sim.inspect())["requests"] if r["endpoint"] == "delete"]
    assert [r["phone"] for r in deletes] == ["9845000002", "9845000002"]
    assert (await sim.campaigns())["c"] == ["9845000001"]
