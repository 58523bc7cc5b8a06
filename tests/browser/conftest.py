"""Fixtures of the browser tests: the system's Chromium driven by Playwright,
and the console served in-process over real HTTP against the session's
redis-server and the vendor simulator. Nothing leaves 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright
from redis.asyncio import Redis

from tests.browser.harness import (
    CAMPAIGN,
    CHROMIUM,
    CHROMIUM_ARGS,
    OPERATOR_KEY,
    READER_KEY,
    VIEWPORT,
    Console,
    ConsoleFactory,
    PageFactory,
)
from tests.conftest import TIME_SCALE, make_settings
from worker.config.settings import Secret
from worker.console.app import create_console_app
from worker.http.api import listening
from worker.store.keys import AccountKeys


@pytest.fixture(scope="session")
def chromium() -> Path:
    """The system's Chromium. Missing: skipped on a laptop, a failure in CI."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: apt-get install chromium (the browser tests drive it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(chromium),
                                                    args=CHROMIUM_ARGS)  # fmt: skip
        yield launched
        await launched.close()


@pytest.fixture
async def console_factory(
    redis: Redis, redis_url: str, key_prefix: str, simulator_factory: Any
) -> AsyncIterator[ConsoleFactory]:
    """Start the console (once per test) with two operators: alice may act,
    rita may only read; ``numbers`` are the campaign's records at the vendor."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            numbers: Iterable[str] = (), sim: dict[str, Any] | None = None, **account: Any
        ) -> Console:
            simulator = await simulator_factory(
                campaigns={CAMPAIGN: set(numbers)}, **{"time_scale": TIME_SCALE, **(sim or {})}
            )
            operators = {"alice": Secret(OPERATOR_KEY), "rita": Secret(READER_KEY)}
            settings = make_settings(
                redis_url,
                key_prefix,
                {"operator_keys": operators, "operator_roles": {"rita": "read"}},
                base_url=simulator.url,
                **account,
            )
            served = await stack.enter_async_context(
                listening(settings, redis, "127.0.0.1", 0, create_console_app)
            )
            url = f"http://127.0.0.1:{served.port}"
            return Console(url, settings, redis, simulator, AccountKeys(key_prefix, "default"))

        yield start


@pytest.fixture
async def new_page(browser: Browser, console_factory: ConsoleFactory) -> AsyncIterator[PageFactory]:
    """Pages, each in a fresh context (its own cookies), recorded by the console
    object; no page may log an error (a CSP violation, a script fault)."""
    watched: list[Console] = []
    async with contextlib.AsyncExitStack() as stack:

        async def open_page(console: Console, **options: Any) -> Page:
            context = await browser.new_context(**{"viewport": VIEWPORT, **options})
            stack.push_async_callback(context.close)
            console.watch(context)
            watched.append(console)
            page = await context.new_page()
            # Fail in seconds, not Playwright's 30: every wait here is for a poll or a click.
            page.set_default_timeout(10_000)
            return page

        yield open_page
    for console in watched:
        assert console.problems == [], console.problems
