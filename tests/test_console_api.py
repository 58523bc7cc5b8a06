"""The console's server side over real HTTP: sign-in, sessions, CSRF, roles,
the security headers, and each API call against a real Redis.

The pages themselves are driven in a real browser in tests/browser.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from structlog.testing import capture_logs

from tests.conftest import Simulator, make_settings
from worker.accounts.status import status_report
from worker.config.settings import Secret, Settings
from worker.console.app import SECURITY_HEADERS, create_console_app
from worker.console.sessions import COOKIE, new_session, operator_for_key, session_from_cookie
from worker.logs import configure_logging
from worker.pool.workers import run_pool
from worker.queue.producer import Producer
from worker.store.keys import AccountKeys

ALICE = "alice-key-0123456789"
READER = "reader-key-0123456789"
CAMPAIGN = "spring_sale"
Client = TestClient[web.Request, web.Application]


def console_settings(redis_url: str, prefix: str, **account: Any) -> Settings:
    return make_settings(
        redis_url,
        prefix,
        {
            "operator_keys": {"alice": Secret(ALICE), "rita": Secret(READER)},
            "operator_roles": {"alice": "operate", "rita": "read"},
        },
        **account,
    )


@pytest.fixture
def start(app_client: Any) -> Callable[[Settings, Redis], Awaitable[Client]]:
    async def make(settings: Settings, redis: Redis) -> Client:
        return cast(Client, await app_client(create_console_app(settings, redis)))

    return make


async def sign_in(client: Client, key: str) -> str:
    """Sign in; return the CSRF token of the session."""
    response = await client.post("/console/login", data={"key": key}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/console"
    session = await (await client.get("/console/api/session")).json()
    return str(session["csrf"])


async def test_signing_in_sets_a_strict_httponly_cookie_and_a_wrong_key_sets_none(
    redis: Redis, redis_url: str, key_prefix: str, start: Any
) -> None:
    client = await start(console_settings(redis_url, key_prefix), redis)
    page = await client.get("/console", allow_redirects=False)
    assert (page.status, page.headers["Location"]) == (303, "/console/login")

    configure_logging(level="info", json=True)
    with capture_logs() as logs:
        wrong = await client.post(
            "/console/login", data={"key": ALICE + "x"}, allow_redirects=False
        )
    assert (wrong.status, wrong.headers["Location"]) == (303, "/console/login?failed=1")
    assert "Set-Cookie" not in wrong.headers
    assert (await client.get("/console/api/session")).status == 401

    right = await client.post("/console/login", data={"key": ALICE}, allow_redirects=False)
    cookie = SimpleCookie(right.headers["Set-Cookie"])[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/console"
    session = await (await client.get("/console/api/session")).json()
    assert (session["operator"], session["role"]) == ("alice", "operate")
    overview = await client.get("/console")
    assert overview.status == 200 and "text/html" in overview.headers["Content-Type"]
    for name, value in SECURITY_HEADERS.items():
        assert overview.headers[name] == value
    assert [entry["event"] for entry in logs] == ["console.login_refused"]
    assert ALICE not in repr(logs)


async def test_a_cookie_is_bound_to_its_operator_key_and_its_expiry(
    redis_url: str, key_prefix: str
) -> None:
    settings = console_settings(redis_url, key_prefix)
    operator = operator_for_key(settings, ALICE)
    assert operator is not None and operator.name == "alice"
    cookie = new_session(settings, operator, now_s=1000.0)
    assert session_from_cookie(settings, cookie, now_s=1001.0) is not None
    assert session_from_cookie(settings, cookie, now_s=1000.0 + 8 * 3600) is None  # expired
    # Another name, a later expiry, or a rotated key: all refused.
    name, expires, signature = cookie.rsplit(".", 2)
    assert session_from_cookie(settings, f"rita.{expires}.{signature}", 1001.0) is None
    assert session_from_cookie(settings, f"{name}.{int(expires) + 1}.{signature}", 1001.0) is None
    rotated = settings.with_overrides(operator_keys={"alice": Secret("a-brand-new-key-000")})
    assert session_from_cookie(rotated, cookie, now_s=1001.0) is None
    assert operator_for_key(settings, "") is None
    assert operator_for_key(settings, READER + " ") is None


@settings(max_examples=60, deadline=None)
@given(cookie=st.text(max_size=300))
def test_any_cookie_text_is_refused_or_accepted_never_a_crash(cookie: str) -> None:
    base = make_settings("redis://127.0.0.1:9/0", "hostile")
    settings_ = base.with_overrides(operator_keys={"alice": Secret(ALICE)})
    assert session_from_cookie(settings_, cookie) is None


async def test_posts_need_the_sessions_csrf_token_and_actions_need_the_operate_role(
    redis: Redis, redis_url: str, key_prefix: str, start: Any
) -> None:
    settings_ = console_settings(redis_url, key_prefix)
    alice = await start(settings_, redis)
    csrf = await sign_in(alice, ALICE)
    body = {"account": "default", "reason": "maintenance"}
    keys = AccountKeys(key_prefix, "default")

    for headers in ({}, {"X-CSRF-Token": "forged"}, {"X-CSRF-Token": csrf + "x"}):
        refused = await alice.post("/console/api/pause", json=body, headers=headers)
        assert refused.status == 403
        assert (await refused.json())["error"] == "missing or wrong CSRF token"
    assert await redis.exists(keys.paused) == 0

    rita = await start(settings_, redis)
    rita_csrf = await sign_in(rita, READER)
    for action, payload in (
        ("pause", body),
        ("resume", body),
        ("replay", {"account": "default", "all": True}),
        ("purge", {"account": "default", "all": True, "confirm": "purge"}),
    ):
        refused = await rita.post(
            f"/console/api/{action}", json=payload, headers={"X-CSRF-Token": rita_csrf}
        )
        assert refused.status == 403 and (await refused.json())["error"] == "read-only operator"
    assert await redis.exists(keys.paused) == 0
    # A token is bound to its session: alice's does not work on rita's.
    crossed = await rita.post(
        "/console/api/lookup",
        json={"account": "default", "job_id": "x"},
        headers={"X-CSRF-Token": csrf},
    )
    assert crossed.status == 403

    paused = await alice.post("/console/api/pause", json=body, headers={"X-CSRF-Token": csrf})
    assert paused.status == 200 and await redis.get(keys.paused) == "maintenance"
    overview = await (await rita.get("/console/api/overview")).json()
    [action] = overview["accounts"]["default"]["actions"][:1]
    assert (action["operator"], action["action"]) == ("alice", "pause")
    resumed = await alice.post(
        "/console/api/resume", json={"account": "default"}, headers={"X-CSRF-Token": csrf}
    )
    assert await resumed.json() == {"ok": True, "was_paused": True}
    unknown = await alice.post(
        "/console/api/pause", json={"account": "nobody"}, headers={"X-CSRF-Token": csrf}
    )
    assert unknown.status == 400 and "unknown account" in (await unknown.json())["error"]


async def test_the_overview_is_status_json_plus_the_allowance_and_workers(
    redis: Redis, redis_url: str, key_prefix: str, start: Any
) -> None:
    settings_ = console_settings(redis_url, key_prefix)
    producer = Producer(redis, key_prefix=key_prefix)
    await producer.enqueue_many([(CAMPAIGN, "9845000011"), (CAMPAIGN, "9845000012")])
    await producer.enqueue(CAMPAIGN, "9845000013", urgent=True)
    client = await start(settings_, redis)
    await sign_in(client, READER)

    overview = await (await client.get("/console/api/overview")).json()
    status = await status_report(redis, settings_)

    entry = overview["accounts"]["default"]
    expected = status["accounts"]["default"]
    for field in expected:
        if field != "token":
            assert entry[field] == expected[field], field
    assert entry["queued"] == {"urgent": 1, "bulk": 2}
    assert (entry["limit"], entry["window_s"]) == (100, settings_.account().rate_window_s)
    assert (entry["permits_window"], entry["workers"], entry["actions"]) == (0, 0, [])


async def test_dead_letters_page_replay_one_and_purge_with_confirmation(
    redis: Redis, redis_url: str, key_prefix: str, start: Any, simulator_factory: Any
) -> None:
    sim: Simulator = await simulator_factory(campaigns={CAMPAIGN: set()}, time_scale=30)
    settings_ = console_settings(redis_url, key_prefix, base_url=sim.url)
    keys = AccountKeys(key_prefix, "default")
    phones = [f"70000000{n:02d}" for n in range(5)]
    await Producer(redis, key_prefix=key_prefix).enqueue_many([(CAMPAIGN, p) for p in phones])
    await asyncio.wait_for(run_pool(settings_, redis, asyncio.Event(), until_empty=True), 60)
    client = await start(settings_, redis)
    csrf = await sign_in(client, ALICE)
    headers = {"X-CSRF-Token": csrf}

    first = await (await client.get("/console/api/dead-letters?account=default&limit=2")).json()
    assert len(first["letters"]) == 2 and first["next"] == first["letters"][-1]["id"]
    assert first["by_reason"] == {"no_record": 5}
    rest = await (
        await client.get(
            f"/console/api/dead-letters?account=default&limit=50&after={first['next']}"
        )
    ).json()
    assert len(rest["letters"]) == 3 and rest["next"] is None
    letters = first["letters"] + rest["letters"]
    # Masked: the last three digits only, never the number.
    assert sorted(row["phone"] for row in letters) == sorted("*******" + p[-3:] for p in phones)
    assert all(p not in str(letters) for p in phones)

    target = letters[0]
    replayed = await client.post(
        "/console/api/replay", headers=headers, json={"account": "default", "id": target["id"]}
    )
    assert (await replayed.json())["replayed"] == 1
    assert await redis.xlen(keys.retry) == 1 and await redis.xlen(keys.dlq) == 4
    again = await client.post(
        "/console/api/replay", headers=headers, json={"account": "default", "id": target["id"]}
    )
    assert (await again.json())["gone"] == 1

    unconfirmed = await client.post(
        "/console/api/purge", headers=headers, json={"account": "default", "all": True}
    )
    assert unconfirmed.status == 400 and await redis.xlen(keys.dlq) == 4
    purged = await client.post(
        "/console/api/purge",
        headers=headers,
        json={"account": "default", "reason": "no_record", "confirm": "purge"},
    )
    assert await purged.json() == {"purged": 4} and await redis.xlen(keys.dlq) == 0
    overview = await (await client.get("/console/api/overview")).json()
    actions = [a["action"] for a in overview["accounts"]["default"]["actions"]]
    assert actions[:2] == ["purge", "replay"]


async def test_lookup_by_id_or_number_masks_and_reveal_is_logged_without_the_number(
    redis: Redis, redis_url: str, key_prefix: str, start: Any, simulator_factory: Any
) -> None:
    sim: Simulator = await simulator_factory(campaigns={CAMPAIGN: {"9845000001"}}, time_scale=30)
    settings_ = console_settings(redis_url, key_prefix, base_url=sim.url)
    await Producer(redis, key_prefix=key_prefix).enqueue(CAMPAIGN, "9845000001", job_id="crm-1")
    await asyncio.wait_for(run_pool(settings_, redis, asyncio.Event(), until_empty=True), 60)
    client = await start(settings_, redis)
    csrf = await sign_in(client, READER)
    headers = {"X-CSRF-Token": csrf}

    by_id = await (
        await client.post(
            "/console/api/lookup", headers=headers, json={"account": "default", "job_id": "crm-1"}
        )
    ).json()
    [row] = by_id["results"]
    assert (row["outcome"], row["phone"]) == ("deleted", "*******001")
    by_number = await (
        await client.post(
            "/console/api/lookup",
            headers=headers,
            json={"account": "default", "campaign": CAMPAIGN, "phone": "9845000001"},
        )
    ).json()
    assert [r["job_id"] for r in by_number["results"]] == ["crm-1"] and by_number["searched"] >= 1
    missing = await (
        await client.post(
            "/console/api/lookup", headers=headers, json={"account": "default", "job_id": "nope"}
        )
    ).json()
    assert missing == {"found": False, "results": [], "searched": 1}

    configure_logging(level="info", json=True)  # the reveal line is at info
    with capture_logs() as logs:
        revealed = await client.post(
            "/console/api/reveal", headers=headers, json={"account": "default", "job_id": "crm-1"}
        )
    assert await revealed.json() == {"phone": "9845000001"}
    [line] = [entry for entry in logs if entry["event"] == "console.reveal"]
    assert line["operator"] == "rita" and "9845000001" not in repr(logs)
    overview = await (await client.get("/console/api/overview")).json()
    [latest, *_] = overview["accounts"]["default"]["actions"]
    assert (latest["operator"], latest["action"]) == ("rita", "reveal")


async def test_without_operator_keys_the_console_is_off_and_says_how_to_turn_it_on(
    redis: Redis, redis_url: str, key_prefix: str, start: Any
) -> None:
    client = await start(make_settings(redis_url, key_prefix), redis)
    for path in ("/console", "/console/login"):
        response = await client.get(path, allow_redirects=False)
        assert response.status == 404
        assert "OZP_OPERATOR_KEYS=name:key" in await response.text()
    api = await client.get("/console/api/overview")
    assert api.status == 404


async def test_static_files_are_only_the_packages_own(
    redis: Redis, redis_url: str, key_prefix: str, start: Any
) -> None:
    client = await start(console_settings(redis_url, key_prefix), redis)
    css = await client.get("/console/static/console.css")
    assert css.status == 200 and css.headers["Content-Type"].startswith("text/css")
    for name in (
        "..%2F..%2Fsessions.py",
        "sessions.py",
        "nope.js",
        "CONSOLE.CSS",
        "a" * 80 + ".js",
    ):
        assert (await client.get(f"/console/static/{name}")).status == 404, name


async def test_wrong_keys_are_slowed_down_per_address(
    redis: Redis, redis_url: str, key_prefix: str, start: Any
) -> None:
    client = await start(console_settings(redis_url, key_prefix), redis)
    statuses = []
    for n in range(12):
        guess = {"key": f"guess-{n}"}
        statuses.append(
            (await client.post("/console/login", data=guess, allow_redirects=False)).status
        )
    assert statuses[:10] == [303] * 10 and statuses[-1] == 429
    cross_site = await client.post(
        "/console/login",
        data={"key": ALICE},
        allow_redirects=False,
        headers={"Origin": "https://evil.example"},
    )
    assert cross_site.status == 403 and "Set-Cookie" not in cross_site.headers
    # Our own form's post, as a browser sends it under Referrer-Policy: no-referrer.
    own_form = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
    for headers, status in (
        (own_form, 303),
        ({"Origin": "null"}, 403),
        ({"Sec-Fetch-Site": "cross-site"}, 403),
    ):
        answer = await client.post(
            "/console/login", data={"key": ALICE}, allow_redirects=False, headers=headers
        )
        assert answer.status == status, headers
