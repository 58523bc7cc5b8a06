"""Generate Token: answers, the JWT, invalidation of older tokens, expiry, budget."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
import pytest
from simclient import Sim, SimFactory

pytestmark = pytest.mark.asyncio


def false(message: str) -> dict[str, Any]:
    return {"status": "false", "message": message, "data": None}


def claims(token: str) -> dict[str, Any]:
    # What a client may do: read the payload without the vendor's secret.
    payload: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return payload


async def test_success_is_an_hs512_jwt_of_one_hour(sim: Sim) -> None:
    before = time.time()
    answer = await sim.generate_token()
    assert answer.status == 200
    assert set(answer.document) == {"token", "message"}
    assert answer.document["message"] == ""
    token = answer.document["token"]
    assert jwt.get_unverified_header(token)["alg"] == "HS512"
    payload = claims(token)
    assert payload["sub"] == "demo"
    assert payload["exp"] - payload["iat"] == 3600
    assert before - 1 <= payload["iat"] <= time.time()
    assert isinstance(payload["jti"], str) and payload["jti"]


async def test_each_token_has_its_own_jti(sim: Sim) -> None:
    jtis = {claims(await sim.token())["jti"] for _ in range(3)}
    assert len(jtis) == 3


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"body": {}}, false("UserName is null")),
        ({"body": {"userName": None}}, false("UserName is null")),
        ({"body": {"userName": 42}}, false("UserName is null")),
        ({"body": {"user": "demo"}}, false("UserName is null")),
        ({"raw": b"not json"}, false("UserName is null")),
        ({"user": "nobody"}, false("Invalid userName or apiKey")),
        ({"api_key": "wrong-key"}, false("Invalid userName or apiKey")),
        ({"api_key": None}, false("Invalid userName or apiKey")),
    ],
    ids=[
        "empty body",
        "userName null",
        "userName number",
        "userName key misspelled",
        "body not JSON",
        "userName wrong",
        "apiKey wrong",
        "apiKey header missing",
    ],
)
async def test_documented_answers(sim: Sim, kwargs: dict[str, Any], expected: Any) -> None:
    answer = await sim.generate_token(**kwargs)
    assert (answer.status, answer.document) == (200, expected)
    assert (await sim.log())["generations"] == 0


async def test_expired_token_presented_is_refused(sim: Sim) -> None:
    token = await sim.token()
    await sim.post("/_sim/tokens/expire")
    stale = {"Authorization": f"Bearer {token}"}
    answer = await sim.generate_token(headers=stale)
    assert answer.document == false("Token Expired")
    # Without the stale header the refresh works.
    assert "token" in (await sim.generate_token()).document


async def test_new_token_invalidates_every_older_one(sim: Sim) -> None:
    first, second, third = await sim.token(), await sim.token(), await sim.token()
    for old in (first, second):
        assert (await sim.delete(token=old)).document == false("Invalid Token")
    ok = await sim.delete(token=third)
    assert ok.document == {"status": "Success", "message": "Deleted Successfully"}
    tokens = (await sim.log())["tokens"]
    assert [t["invalidated"] for t in tokens] == [True, True, False]
    assert [t["jti"] for t in tokens] == [claims(t)["jti"] for t in (first, second, third)]


async def test_token_expires_on_the_scaled_clock(make_sim: SimFactory) -> None:
    # 4800 vendor seconds per real second: the 3600 s token lives 0.75 s.
    sim = await make_sim(time_scale=4800)
    token = await sim.token()
    payload = claims(token)
    assert payload["exp"] - payload["iat"] == pytest.approx(0.75)
    assert (await sim.delete(token=token, phone="8100000001")).document["status"] == "Success"
    await asyncio.sleep(max(0.0, payload["exp"] - time.time()) + 0.05)
    answer = await sim.delete(token=token, phone="8100000002")
    assert answer.document == false("Token Expired")
    assert "8100000002" in await sim.remaining()


async def test_generation_budget_is_a_sliding_window(make_sim: SimFactory) -> None:
    # Budget window 3600 vendor s = 0.75 real s; 3 generations per window.
    sim = await make_sim(time_scale=4800, token_budget=3)
    for _ in range(3):
        assert (await sim.generate_token()).status == 200
    refused = await sim.generate_token()
    assert refused.status == 429
    assert refused.document == false("Token generation limit exceeded")
    inspected = await sim.log()
    assert inspected["generations"] == 3
    assert [r["status"] for r in inspected["requests"]] == [200, 200, 200, 429]
    assert inspected["requests"][-1]["message"] == "Token generation limit exceeded"
    # Refused attempts do not count: once the first three leave the window,
    # three more fit, and the fourth is refused again. Waiting for the third
    # (not the first) to leave keeps this true however slowly they came.
    third = inspected["requests"][2]["mono"]
    await asyncio.sleep(max(0.0, third + 0.75 - time.monotonic()) + 0.05)
    statuses = [(await sim.generate_token()).status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


async def test_default_budget_is_ten_per_hour(sim: Sim) -> None:
    statuses = [(await sim.generate_token()).status for _ in range(11)]
    assert statuses == [200] * 10 + [429]


async def test_tokens_issued_to_another_system(sim: Sim) -> None:
    mine = await sim.token()
    status, body = await sim.post("/_sim/tokens/issue", {"userName": "demo"})
    assert status == 200
    assert set(body) == {"jti"}  # never the token itself
    assert (await sim.delete(token=mine)).document == false("Invalid Token")
    inspected = await sim.log()
    assert inspected["generations"] == 2
    assert inspected["tokens"][-1] == {
        "user": "demo",
        "jti": body["jti"],
        "iat": inspected["tokens"][-1]["iat"],
        "exp": inspected["tokens"][-1]["exp"],
        "invalidated": False,
    }
    unknown_status, _ = await sim.post("/_sim/tokens/issue", {"userName": "nobody"})
    assert unknown_status == 404


async def test_issued_tokens_count_against_the_budget(make_sim: SimFactory) -> None:
    sim = await make_sim(token_budget=2)
    assert (await sim.post("/_sim/tokens/issue", {"userName": "demo"}))[0] == 200
    assert (await sim.post("/_sim/tokens/issue", {"userName": "demo"}))[0] == 200
    assert (await sim.generate_token()).status == 429
    assert (await sim.post("/_sim/tokens/issue", {"userName": "demo"}))[0] == 429


async def test_expire_sets_exp_now_and_only_for_current_tokens(sim: Sim) -> None:
    await sim.token()
    current = await sim.token()
    before = time.time()
    status, body = await sim.post("/_sim/tokens/expire")
    assert (status, body) == (200, {"expired": 1})
    tokens = (await sim.log())["tokens"]
    assert tokens[-1]["jti"] == claims(current)["jti"]
    assert before - 0.01 <= tokens[-1]["exp"] <= time.time()
    assert tokens[0]["exp"] - tokens[0]["iat"] == 3600  # the invalidated one is left alone
    assert (await sim.post("/_sim/tokens/expire"))[1] == {"expired": 0}
