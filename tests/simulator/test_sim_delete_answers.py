"""Every documented answer of Delete Campaign Data, exact strings and encoding.

The expected bodies are spelled here again, independently of the simulator's
own table, so that a typo on either side fails.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from simclient import CAMPAIGN, Sim, SimFactory

from worker.simulator import AccountSpec

pytestmark = pytest.mark.asyncio


def false(message: str) -> dict[str, Any]:
    return {"status": "false", "message": message, "data": None}


def error(message: str) -> dict[str, Any]:
    return {"status": "Error", "message": message}


SUCCESS = {"status": "Success", "message": "Deleted Successfully"}


async def test_success_deletes_the_number_once(sim: Sim) -> None:
    token = await sim.token()
    answer = await sim.delete(phone="8100000001", token=token)
    assert (answer.status, answer.document, answer.double_encoded) == (200, SUCCESS, False)
    assert "8100000001" not in await sim.remaining()
    again = await sim.delete(phone="8100000001", token=token)
    assert again.document == error("No Record Found")
    assert not again.double_encoded


# (case, request keyword arguments, expected body, double-encoded in the vendor's docs)
ROWS: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    (
        "apiKey header missing",
        {"api_key": None},
        false("Api Key Should Not be Null or Empty."),
        True,
    ),
    ("apiKey value wrong", {"api_key": "not-the-key"}, false("Invalid User Details"), False),
    ("apiKey value empty", {"api_key": ""}, false("Invalid User Details"), False),
    (
        "userName key missing",
        {"body": {"campaignName": CAMPAIGN, "phoneNumber": "8100000001"}},
        false("Username Should Not be Null or Empty."),
        True,
    ),
    ("userName value wrong", {"user": "nobody"}, false("Invalid User Details"), False),
    (
        "campaignName key missing",
        {"body": {"phoneNumber": "8100000001", "userName": "demo"}},
        error("Campaign should not be null are empty"),
        False,
    ),
    (
        "campaignName key misspelled",
        {"body": {"campaign": CAMPAIGN, "phoneNumber": "8100000001", "userName": "demo"}},
        error("Campaign should not be null are empty"),
        False,
    ),
    ("campaignName empty", {"campaign": ""}, error("Campaign should not be null are empty"), False),
    ("campaignName wrong", {"campaign": "no-such"}, error("Passed campaign are invalid"), True),
    (
        "phoneNumber key missing",
        {"body": {"campaignName": CAMPAIGN, "userName": "demo"}},
        error("PhoneNumber should not be null are empty"),
        False,
    ),
    ("phoneNumber empty", {"phone": ""}, error("PhoneNumber should not be null are empty"), False),
    ("phoneNumber not in campaign", {"phone": "8199999999"}, error("No Record Found"), False),
    (
        "several numbers, comma",
        {"phone": "8100000001,8100000002"},
        false("Invalid Json Pass Valid Json"),
        False,
    ),
    (
        "several numbers, list",
        {
            "body": {
                "campaignName": CAMPAIGN,
                "phoneNumber": ["8100000001", "8100000002"],
                "userName": "demo",
            }
        },
        false("Invalid Json Pass Valid Json"),
        False,
    ),
    (
        "several records, array body",
        {
            "body": [
                {"campaignName": CAMPAIGN, "phoneNumber": "8100000001", "userName": "demo"},
                {"campaignName": CAMPAIGN, "phoneNumber": "8100000002", "userName": "demo"},
            ]
        },
        false("Invalid Json Pass Valid Json"),
        False,
    ),
    ("body not JSON", {"raw": b'{"campaignName": '}, false("Invalid Json Pass Valid Json"), False),
]


@pytest.mark.parametrize(
    ("request_args", "expected", "double"),
    [row[1:] for row in ROWS],
    ids=[row[0] for row in ROWS],
)
async def test_documented_answer(
    sim: Sim, request_args: dict[str, Any], expected: dict[str, Any], double: bool
) -> None:
    token = await sim.token()
    answer = await sim.delete(token=token, **request_args)
    assert answer.status == 200  # the vendor documents no codes: clients classify by body
    assert answer.document == expected
    assert answer.double_encoded is double
    assert await sim.remaining() == {"8100000001", "8100000002", "8100000003", "+918100000004"}


async def test_double_encoded_body_is_a_json_string_of_the_document(sim: Sim) -> None:
    answer = await sim.delete(api_key=None)
    assert json.loads(answer.text) == json.dumps(false("Api Key Should Not be Null or Empty."))
    assert answer.content_type == "application/json"


async def test_token_missing(sim: Sim) -> None:
    answer = await sim.delete(token=None)
    assert (answer.document, answer.double_encoded) == (
        false("Token Should Not be Null or Empty."),
        False,
    )
    bare = await sim.delete(headers={"Authorization": "Bearer "})
    assert bare.document == false("Token Should Not be Null or Empty.")


async def test_token_wrong(sim: Sim) -> None:
    await sim.token()
    answer = await sim.delete(token="eyJhbGciOiJIUzUxMiJ9.e30.bm90LWEtc2lnbmF0dXJl")
    assert (answer.document, answer.double_encoded) == (false("Invalid Token"), True)


async def test_token_signed_by_another_simulator_is_invalid(sim: Sim, make_sim: SimFactory) -> None:
    await sim.token()
    foreign = await (await make_sim()).token()
    answer = await sim.delete(token=foreign)
    assert answer.document == false("Invalid Token")


async def test_token_of_another_user_is_invalid(make_sim: SimFactory) -> None:
    accounts = {"demo": AccountSpec("demo-key"), "other": AccountSpec("other-key")}
    sim = await make_sim(accounts=accounts)
    await sim.token()
    others = await sim.token(user="other", api_key="other-key")
    answer = await sim.delete(token=others)
    assert answer.document == false("Invalid Token")


async def test_token_expired(make_sim: SimFactory) -> None:
    sim = await make_sim()
    token = await sim.token()
    status, body = await sim.post("/_sim/tokens/expire")
    assert (status, body) == (200, {"expired": 1})
    answer = await sim.delete(token=token)
    assert (answer.document, answer.double_encoded) == (false("Token Expired"), False)
    assert "8100000001" in await sim.remaining()


async def test_apikey_mode_needs_no_token(make_sim: SimFactory) -> None:
    sim = await make_sim(accounts={"basic": AccountSpec("basic-key", "apikey")})
    answer = await sim.delete(user="basic", api_key="basic-key")
    assert answer.document == SUCCESS
    wrong = await sim.delete(user="basic", api_key="demo-key")
    assert wrong.document == false("Invalid User Details")


async def test_number_sent_as_json_number_matches_its_digits(sim: Sim) -> None:
    token = await sim.token()
    body = {"campaignName": CAMPAIGN, "phoneNumber": 8100000002, "userName": "demo"}
    assert (await sim.delete(body, token=token)).document == SUCCESS
    assert "8100000002" not in await sim.remaining()


async def test_numbers_match_exactly_as_stored(sim: Sim) -> None:
    token = await sim.token()
    assert (await sim.delete(phone="918100000004", token=token)).document == error(
        "No Record Found"
    )
    assert (await sim.delete(phone="+918100000004", token=token)).document == SUCCESS


async def test_check_order_user_before_token_before_campaign(sim: Sim) -> None:
    # Several things wrong at once: the earliest check in the vendor's order answers.
    both = await sim.delete(user="nobody", campaign="no-such", token=None)
    assert both.document == false("Invalid User Details")
    no_token = await sim.delete(campaign="no-such", phone="", token=None)
    assert no_token.document == false("Token Should Not be Null or Empty.")
    token = await sim.token()
    campaign_first = await sim.delete(campaign="no-such", phone="", token=token)
    assert campaign_first.document == error("Passed campaign are invalid")
    json_first = await sim.delete(user="nobody", phone="1,2", token=token)
    assert json_first.document == false("Invalid Json Pass Valid Json")


@pytest.mark.parametrize("mode", ["all", "none"])
async def test_double_encode_modes(make_sim: SimFactory, mode: str) -> None:
    sim = await make_sim(double_encode=mode)
    token = await sim.token()
    success = await sim.delete(token=token)
    missing_key = await sim.delete(api_key=None)
    assert success.document == SUCCESS
    assert missing_key.document == false("Api Key Should Not be Null or Empty.")
    assert success.double_encoded is (mode == "all")
    assert missing_key.double_encoded is (mode == "all")
