"""Hostile requests to the console's API, through the real server: any body,
query or cookie ends in a JSON answer with a reason, never a crash, a
traceback or a secret."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from tests.conftest import make_settings
from tests.live_server import exchange, serving
from tests.test_http_hostile import HOSTILE, request
from worker.config.settings import Secret
from worker.console.app import create_console_app
from worker.logs import configure_logging

OPERATOR_KEY = "hostile-operator-key-0001"
ACTIONS = ["pause", "resume", "replay", "purge", "lookup", "reveal"]
READS = ["session", "overview", "rate", "dead-letters", "drains"]


@dataclass
class Console:
    port: int
    cookie: str
    csrf: str
    log: io.StringIO

    def auth(self) -> dict[str, str]:
        return {"Cookie": f"ozp_console={self.cookie}"}

    def exchange(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        return exchange(self.port, raw)


@pytest.fixture
def console(redis_url: str, key_prefix: str) -> Iterator[Console]:
    settings = make_settings(redis_url, key_prefix).with_overrides(
        operator_keys={"eve": Secret(OPERATOR_KEY)}, http_max_body_bytes=16 * 1024
    )
    log = io.StringIO()
    configure_logging(level="debug", json=True, stream=log)
    try:
        with serving(settings, create_console_app) as port:
            live = Console(port, "", "", log)
            form = f"key={quote(OPERATOR_KEY)}".encode()
            status, headers, _ = live.exchange(
                request(
                    "POST",
                    "/console/login",
                    {"Content-Type": "application/x-www-form-urlencoded"},
                    form,
                )
            )
            assert status == 303
            live.cookie = SimpleCookie(headers["set-cookie"])["ozp_console"].value
            _, _, body = live.exchange(request("GET", "/console/api/session", live.auth()))
            live.csrf = json.loads(body)["csrf"]
            yield live
    finally:
        configure_logging(level="warning", json=True)
    text = log.getvalue()
    assert OPERATOR_KEY not in text and "Traceback" not in text


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=80),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=12,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "account": st.sampled_from(["default", "nobody", "", "x" * 300]) | st.text(max_size=20),
        "id": st.text(max_size=50) | st.integers(),
        "job_id": st.text(max_size=80),
        "letter_id": st.text(max_size=50),
        "reason": st.text(max_size=70) | st.none(),
        "all": st.booleans() | st.integers(),
        "confirm": st.sampled_from(["purge", "PURGE", ""]),
        "campaign": st.text(max_size=40),
        "phone": st.text(max_size=40),
    },
)


def check(console: Console, status: int, headers: dict[str, str], body: bytes) -> None:
    event(f"status {status}")  # --hypothesis-show-statistics: what the examples reached
    assert status in (200, 400, 403, 404, 413), (status, body)
    assert headers["content-type"].startswith("application/json"), (status, body)
    assert b"Traceback" not in body and OPERATOR_KEY.encode() not in body
    answer = json.loads(body)
    if status >= 400:
        assert isinstance(answer["error"], str)
    assert headers["content-security-policy"].startswith("default-src 'none'")


@HOSTILE
@given(action=st.sampled_from(ACTIONS), body=FIELDS | JSON, csrf=st.booleans())
def test_any_action_body_is_answered_with_a_reason(
    console: Console, action: str, body: Any, csrf: bool
) -> None:
    headers = {**console.auth(), "Content-Type": "application/json"}
    if csrf:
        headers["X-CSRF-Token"] = console.csrf
    raw = json.dumps(body).encode()
    status, answer_headers, answer = console.exchange(
        request("POST", f"/console/api/{action}", headers, raw)
    )
    check(console, status, answer_headers, answer)
    if not csrf:
        assert status == 403


@HOSTILE
@given(
    path=st.sampled_from(READS),
    query=st.dictionaries(
        st.sampled_from(["account", "reason", "after", "limit", "x"]), st.text(max_size=30),
        max_size=4,
    ),
)  # fmt: skip
def test_any_query_is_answered_with_a_reason(
    console: Console, path: str, query: dict[str, str]
) -> None:
    search = "&".join(f"{quote(k)}={quote(v)}" for k, v in query.items())
    target = f"/console/api/{path}" + (f"?{search}" if search else "")
    status, headers, body = console.exchange(request("GET", target, console.auth()))
    check(console, status, headers, body)
