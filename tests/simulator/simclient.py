"""A small client for the simulator's tests: one running simulator, real HTTP.

Kept out of ``conftest.py`` so test modules can import its names.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from worker.simulator import SimulatorConfig

DELETE = "/ca_apis/deleteCampaignData"
TOKEN = "/ca_apis/CAToken/generateToken"
USER = "demo"
KEY = "demo-key"
CAMPAIGN = "spring-sale"
NUMBERS = frozenset({"8100000001", "8100000002", "8100000003", "+918100000004"})


@dataclass
class Answer:
    """An HTTP answer as a client sees it, with the vendor's double encoding undone."""

    status: int
    text: str
    content_type: str
    document: Any = None  # the JSON document, or None when the body is not JSON
    double_encoded: bool = False

    @classmethod
    def read(cls, status: int, text: str, content_type: str) -> Answer:
        try:
            document = json.loads(text)
        except ValueError:
            return cls(status, text, content_type)
        if isinstance(document, str):
            return cls(status, text, content_type, json.loads(document), True)
        return cls(status, text, content_type, document)


_UNSET: Any = object()


@dataclass
class Sim:
    """One running simulator and a client session bound to it."""

    url: str
    session: aiohttp.ClientSession
    config: SimulatorConfig

    async def _send(
        self, method: str, path: str, *, headers: dict[str, str], data: bytes | None
    ) -> Answer:
        async with self.session.request(
            method, self.url + path, headers=headers, data=data
        ) as response:
            text = await response.text()
            return Answer.read(response.status, text, response.content_type)

    async def generate_token(
        self,
        body: Any = _UNSET,
        *,
        api_key: str | None = KEY,
        user: str = USER,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Answer:
        sent = {"Content-Type": "application/json", **(headers or {})}
        if api_key is not None:
            sent["apiKey"] = api_key
        if raw is None:
            raw = json.dumps({"userName": user} if body is _UNSET else body).encode()
        return await self._send("POST", TOKEN, headers=sent, data=raw)

    async def token(self, user: str = USER, api_key: str = KEY) -> str:
        answer = await self.generate_token(user=user, api_key=api_key)
        assert answer.status == 200, answer.text
        token = answer.document["token"]
        assert isinstance(token, str)
        return token

    async def delete(
        self,
        body: Any = _UNSET,
        *,
        phone: str = "8100000001",
        campaign: str = CAMPAIGN,
        user: str = USER,
        api_key: str | None = KEY,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Answer:
        sent = {"Content-Type": "application/json", **(headers or {})}
        if api_key is not None:
            sent["apiKey"] = api_key
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if raw is None:
            document = (
                {"campaignName": campaign, "phoneNumber": phone, "userName": user, "name": "x"}
                if body is _UNSET
                else body
            )
            raw = json.dumps(document).encode()
        return await self._send("DELETE", DELETE, headers=sent, data=raw)

    async def get(self, path: str) -> Any:
        async with self.session.get(self.url + path) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.post(self.url + path, json=body) as response:
            return response.status, await response.json()

    async def log(self) -> dict[str, Any]:
        inspected: dict[str, Any] = await self.get("/_sim/requests")
        return inspected

    async def remaining(self, campaign: str = CAMPAIGN) -> set[str]:
        return set((await self.get("/_sim/campaigns"))["campaigns"][campaign])


SimFactory = Callable[..., Awaitable[Sim]]


def make_config(**overrides: Any) -> SimulatorConfig:
    """A config with the test campaign; keyword arguments override any field."""
    settings: dict[str, Any] = {"campaigns": {CAMPAIGN: NUMBERS}, "seed": 7}
    settings.update(overrides)
    return SimulatorConfig(**settings)
