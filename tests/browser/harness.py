"""What the browser tests share: the browser's flags, the console under test,
signing in, reading the overview, axe-core, and queue states built the way
the pool builds them."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import BrowserContext, Page, Request, Response
from redis.asyncio import Redis

from tests.conftest import Simulator
from worker.config.settings import Settings
from worker.queue.jobs import Job, from_fields, make_job
from worker.queue.lanes import Delivery, Queue
from worker.results.records import Record, Recorder
from worker.store.keys import CONSUMER_GROUP, AccountKeys, Lane

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and nothing that reaches out on its own: no component or safe
# browsing updates, no sync, no QUIC, no field trials. Playwright gives every
# launch a fresh temporary profile (it refuses --user-data-dir in args).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--metrics-recording-only",
    "--safebrowsing-disable-auto-update",
    "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,"
    "AutofillServerCommunication,CertificateTransparencyComponentUpdater,"
    "InterestFeedContentSuggestions,NetworkTimeServiceQuerying,PrivacySandboxSettings4",
]
VIEWPORT = {"width": 1280, "height": 800}

OPERATOR_KEY = "alice-operates-0123456789"
READER_KEY = "rita-only-reads-0123456789"
CAMPAIGN = "spring_sale"

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
# Every field of a status --json entry and where the overview shows it.
FIELDS = {
    "queued-urgent": ("queued", "urgent"),
    "queued-bulk": ("queued", "bulk"),
    "in-flight": ("in_flight",),
    "delayed": ("delayed",),
    "done": ("done",),
    "dead": ("dead",),
    "rate-last-min": ("rate_last_min",),
    "token-generations": ("token", "generations_in_window"),
    "token-budget": ("token", "budget"),
}


@dataclass
class Console:
    """The console under test, served in-process over real HTTP."""

    url: str
    settings: Settings
    redis: Redis
    sim: Simulator
    keys: AccountKeys
    # Every request any page of any context made, and what the pages logged.
    requests: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def origin(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    def watch(self, context: BrowserContext) -> None:
        """Record the context's requests, console errors and page errors."""

        def on_request(request: Request) -> None:
            self.requests.append(request.url)

        def on_page(page: Page) -> None:
            page.on("console", lambda msg: self._console(msg.type, msg.text))
            page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))

        context.on("request", on_request)
        context.on("page", on_page)

    def _console(self, kind: str, text: str) -> None:
        # A refused request is logged by Chromium itself; the tests that cause
        # one say so. Anything else (a CSP violation, a script error) is a fault.
        if kind == "error" and not text.startswith("Failed to load resource"):
            self.problems.append(text)


async def submit_key(page: Page, console: Console, key: str) -> Response:
    """Type ``key`` into the login form and send it; the server's answer to the POST."""
    await page.goto(f"{console.url}/console/login")
    await page.fill("#key", key)
    async with page.expect_response(
        lambda r: r.request.method == "POST" and r.url == f"{console.url}/console/login"
    ) as answer:
        await page.click("form button[type=submit]")
    return await answer.value


async def sign_in(page: Page, console: Console, key: str = OPERATOR_KEY) -> None:
    response = await submit_key(page, console, key)
    # A refusal here is the server's, shown whole: the browser's own form post
    # (its Origin and Sec-Fetch headers as a real browser sends them) was refused.
    assert response.status == 303, (response.status, await response.text())
    await page.wait_for_url(f"{console.url}/console")


async def dom_fields(page: Page, account: str) -> dict[str, str]:
    """Each ``data-field`` of one account's section, by name."""
    section = page.locator(f'section.account[data-account="{account}"]')
    names = await section.locator("[data-field]").evaluate_all(
        "nodes => nodes.map(n => [n.dataset.field, n.textContent])"
    )
    return dict(names)


def duration(seconds: float | None) -> str:
    """The pages' duration format (console.js), for comparing with status --json."""
    if seconds is None:
        return "-"
    sign = "-" if seconds < 0 else ""
    s = abs(round(seconds))
    if s < 60:
        return f"{sign}{s}s"
    if s < 3600:
        return f"{sign}{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{sign}{s // 3600}h{s % 3600 // 60:02d}m"
    hours = s // 3600
    return f"{sign}{hours // 24}d{hours % 24:02d}h"


def expected_fields(status: dict[str, Any]) -> dict[str, str]:
    """What the overview must show for one account of ``status --json``."""
    shown = {}
    for name, path in FIELDS.items():
        value: Any = status
        for part in path:
            value = value[part]
        shown[name] = str(value)
    shown["state"] = status["state"]
    shown["eta"] = duration(status["eta_s"])
    shown["token-expiry"] = duration(status["token"]["expires_in_s"])
    return shown


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it stands.

    The script is evaluated over the DevTools protocol, which the page's CSP
    does not govern: the console itself still allows no inline script.
    """
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.evaluate(AXE.read_text(encoding="utf-8"))
    results = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"]],
        }
        for v in results["violations"]
        if v["impact"] in {"serious", "critical"}
    ]


ConsoleFactory = Callable[..., Awaitable[Console]]
PageFactory = Callable[..., Awaitable[Page]]


def screenshot_dir(default: Path) -> Path:
    """Where screenshots go: ``OZP_SCREENSHOT_DIR`` (docs/images for the README) or ``default``."""
    chosen = Path(os.environ.get("OZP_SCREENSHOT_DIR") or default)
    chosen.mkdir(parents=True, exist_ok=True)
    return chosen


# Queue states built the way the pool builds them: a job is queued, taken by
# a consumer of the group, then recorded or scheduled by the real scripts.


async def take(redis: Redis, keys: AccountKeys, job: Job, lane: Lane = "bulk") -> Delivery:
    """Queue ``job`` and take it as a worker would; it is then in flight."""
    queue = Queue(redis, keys)
    await queue.ensure_groups()
    assert await queue.enqueue(job, lane)
    reply = await redis.xreadgroup(CONSUMER_GROUP, "browser-test", {keys.lane(lane): ">"}, count=1)
    entry_id, fields = reply[0][1][0]
    return Delivery(lane, entry_id, fields, from_fields(fields, entry_id), None)


async def finish(
    redis: Redis, settings: Settings, keys: AccountKeys, phone: str, record: Record
) -> Job:
    job = make_job(CAMPAIGN, phone)
    await Recorder(redis, keys, settings).record(await take(redis, keys, job), record)
    return job


async def dead_letter(redis: Redis, settings: Settings, keys: AccountKeys, phone: str,
                      reason: str = "no_record") -> Job:  # fmt: skip
    message = "No Record Found" if reason == "no_record" else "Invalid Campaign Name"
    return await finish(redis, settings, keys, phone, Record("dead", message, 1, reason))


async def delayed_retry(redis: Redis, keys: AccountKeys, phone: str, delay_s: float) -> None:
    delivery = await take(redis, keys, make_job(CAMPAIGN, phone))
    fields = dict(delivery.fields)
    fields["attempts"] = "1"
    await Queue(redis, keys).schedule_retry(delivery, fields, delay_s)


def windows(count: int, settings: Settings) -> float:
    """``count`` rate windows of the default account, in seconds."""
    account = settings.accounts["default"]
    return count * (account.rate_window_s + account.rate_margin_s)
