"""Generated hostile requests against the real server over real HTTP on
loopback, with the real Redis: whatever arrives, the answer is JSON with a
2xx, 4xx or 503 status (never a 500 or a traceback), what the server says it
queued is in a lane, and no key reaches an answer or the log."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
import redis as sync_redis
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from tests.conftest import make_settings
from tests.live_server import exchange, serving
from worker.config.settings import AccountSettings, Secret
from worker.logs import configure_logging
from worker.store.keys import AccountKeys

KEYS = {"crm": "crm-key-hostile-0123456789", "batch": "batch-key-hostile-0123456789"}
OPS_KEY = "ops-key-hostile-0123456789"
SECRETS = (*KEYS.values(), OPS_KEY, "demo-key-hostile-0123")
ACCOUNTS = ("default", "other")
HOSTILE = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass
class Live:
    port: int
    redis: sync_redis.Redis
    key_prefix: str
    log: io.StringIO

    def exchange(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        return exchange(self.port, raw)

    def queued_ids(self) -> set[str]:
        ids: set[str] = set()
        for account in ACCOUNTS:
            keys = AccountKeys(self.key_prefix, account)
            for lane in (keys.urgent, keys.bulk):
                ids.update(fields["id"] for _, fields in self.redis.xrange(lane))
        return ids


@pytest.fixture
def live(redis_url: str, key_prefix: str) -> Iterator[Live]:
    """The server on its own loop in a thread: hypothesis drives it synchronously."""
    base = make_settings(redis_url, key_prefix, api_key=Secret(SECRETS[-1]))
    server_settings = base.with_overrides(
        accounts={**base.accounts, "other": AccountSettings(name="other")},
        producer_keys={name: Secret(key) for name, key in KEYS.items()},
        producer_accounts={"crm": ("default",), "batch": ("*",)},
        producer_rate_per_s=100_000.0,
        producer_items_per_s=100_000.0,
        http_max_items=50,
        http_max_body_bytes=64 * 1024,
        ops_key=Secret(OPS_KEY),
    )
    log = io.StringIO()
    configure_logging(level="debug", json=True, stream=log)
    checker = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        with serving(server_settings) as port:
            yield Live(port, checker, key_prefix, log)
    finally:
        checker.close()
        configure_logging(level="warning", json=True)
    text = log.getvalue()
    assert not any(secret in text for secret in SECRETS)
    assert "Traceback" not in text


def request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def check_answer(live: Live, status: int, headers: dict[str, str], body: bytes) -> Any:
    """The invariants of every answer; the parsed body."""
    event(f"status {status}")  # --hypothesis-show-statistics: what the examples reached
    assert 200 <= status < 300 or 400 <= status < 500 or status == 503, (status, body)
    assert headers["content-type"].startswith("application/json"), (status, body)
    assert b"Traceback" not in body and b'File "' not in body
    assert not any(secret.encode() in body for secret in SECRETS)
    answer = json.loads(body)
    if status >= 400:
        assert isinstance(answer["error"], str)
    if status in (429, 503):
        assert int(headers["retry-after"]) >= 1
    return answer


def check_queued(live: Live, status: int, answer: Any) -> None:
    if status not in (202, 409):
        return
    queued = live.queued_ids()
    for job in answer["jobs"]:
        if not job["duplicate"] and not job["conflict"]:
            assert job["id"] in queued, job


# The right keys most of the time, so that most examples get past the door.
AUTH = st.sampled_from([
    {"Authorization": f"Bearer {KEYS['crm']}"}, {"Authorization": f"Bearer {KEYS['batch']}"},
    {"Authorization": f"Bearer {KEYS['crm']}"}, {"Authorization": f"Bearer {KEYS['batch']}"},
    {"Authorization": f"Bearer {KEYS['crm']}"}, {"Authorization": f"Bearer {KEYS['batch']}"},
    {"Authorization": f"Bearer {OPS_KEY}"}, {"Authorization": f"bearer  {KEYS['crm']}  "},
    {"Authorization": f"Basic {KEYS['crm']}"}, {"Authorization": KEYS["crm"]}, {},
])  # fmt: skip
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=15,
)
VALID_ITEM = st.fixed_dictionaries(
    {
        "campaign": st.sampled_from(["spring_sale", " x ", "c"]),
        "phone": st.from_regex(r"\+?[0-9]{5,15}", fullmatch=True),
    },
    optional={
        "id": st.from_regex(r"[A-Za-z0-9._:-]{1,8}", fullmatch=True),
        "name": st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=5),
        "urgent": st.booleans(),
        "account": st.sampled_from(ACCOUNTS),
    },
)
ITEM = VALID_ITEM | st.fixed_dictionaries(
    {"campaign": st.text(max_size=8) | JSON_VALUES, "phone": st.text(max_size=8) | JSON_VALUES},
    optional={
        "id": st.text(max_size=5) | JSON_VALUES,
        "urgent": JSON_VALUES,
        "account": st.sampled_from(["nowhere", ""]) | JSON_VALUES,
    },
)
BODY = (
    VALID_ITEM
    | st.fixed_dictionaries(
        {"items": st.lists(VALID_ITEM, min_size=1, max_size=60)},
        optional={"account": st.sampled_from(ACCOUNTS), "urgent": st.booleans()},
    )
    | ITEM
    | st.fixed_dictionaries({"items": st.lists(ITEM | JSON_VALUES, max_size=5)})
    | JSON_VALUES
)


CRM = {"Authorization": f"Bearer {KEYS['crm']}"}


@HOSTILE
@given(body=st.binary(max_size=3000), auth=AUTH)
@example(body=b"[" * 60_000, auth=CRM)
@example(body=b'{"items": [' + b'{"a": ' * 20_000, auth=CRM)
def test_arbitrary_bytes(live: Live, body: bytes, auth: dict[str, str]) -> None:
    status, headers, raw = live.exchange(request("POST", "/v1/deletions", auth, body))
    check_queued(live, status, check_answer(live, status, headers, raw))


@HOSTILE
@given(body=BODY, auth=AUTH)
def test_arbitrary_json(live: Live, body: Any, auth: dict[str, str]) -> None:
    encoded = json.dumps(body).encode()
    status, headers, raw = live.exchange(request("POST", "/v1/deletions", auth, encoded))
    answer = check_answer(live, status, headers, raw)
    check_queued(live, status, answer)
    if status == 202 and auth.get("Authorization", "").startswith("Bearer "):
        assert len(answer["jobs"]) == (len(body["items"]) if "items" in body else 1)


HEADER_NAME = st.from_regex(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}", fullmatch=True)
# Any byte but CR and LF (those would start a second request), as latin-1.
HEADER_VALUE = st.text(st.characters(min_codepoint=0, max_codepoint=255,
                                     blacklist_characters="\r\n"), max_size=200)  # fmt: skip


@HOSTILE
@given(
    job_id=st.text(max_size=80),
    query=st.none() | st.text(max_size=20),
    extra=st.dictionaries(HEADER_NAME, HEADER_VALUE, max_size=4),
    auth=AUTH,
    method=st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE"]),
)
@example(job_id="x", query=None, extra={"X-Big": "Bearer " + KEYS["crm"] + "x" * 9000},
         auth={}, method="GET")  # fmt: skip
@example(job_id="x", query=None, extra={}, method="GET",
         auth={"Authorization": f"Bearer {KEYS['batch']}{'y' * 9000}"})  # fmt: skip
def test_arbitrary_ids_queries_and_headers(
    live: Live,
    job_id: str,
    query: str | None,
    extra: dict[str, str],
    auth: dict[str, str],
    method: str,
) -> None:
    extra = {k: v for k, v in extra.items() if k.lower() not in ("content-length", "host",
                                                                 "transfer-encoding")}  # fmt: skip
    path = f"/v1/deletions/{quote(job_id, safe='')}"
    if query is not None:
        path += f"?account={quote(query, safe='')}"
    status, headers, raw = live.exchange(request(method, path, {**extra, **auth}))
    if method == "HEAD":
        assert 200 <= status < 300 or 400 <= status < 500 or status == 503
        return
    answer = check_answer(live, status, headers, raw)
    if status == 200:
        assert answer["state"] in ("finished", "unknown")


@HOSTILE
@given(path=st.sampled_from(["/metrics", "/openapi.json", "/healthz", "/readyz", "/nowhere"]),
       auth=AUTH, extra=st.dictionaries(HEADER_NAME, HEADER_VALUE, max_size=3))  # fmt: skip
def test_ops_endpoints(live: Live, path: str, auth: dict[str, str], extra: dict[str, str]) -> None:
    extra = {k: v for k, v in extra.items() if k.lower() not in ("content-length", "host",
                                                                 "transfer-encoding")}  # fmt: skip
    status, headers, raw = live.exchange(request("GET", path, {**extra, **auth}))
    if path == "/metrics" and status == 200:
        assert auth.get("Authorization", "").strip().endswith(OPS_KEY)
        return
    check_answer(live, status, headers, raw)
