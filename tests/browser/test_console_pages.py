"""The operator console in a real browser: the system's Chromium, driven by
Playwright, against the console served in-process over real HTTP, our own
redis-server, the vendor simulator and, where a drain is needed, the real
worker pool. The pages run under the console's strict CSP; any script error
or CSP violation a page logs fails the test (see ``new_page``)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import APIResponse, Page, expect
from redis.asyncio import Redis

from tests.browser.harness import (
    CAMPAIGN,
    READER_KEY,
    Console,
    ConsoleFactory,
    PageFactory,
    axe_violations,
    dead_letter,
    delayed_retry,
    dom_fields,
    duration,
    expected_fields,
    finish,
    screenshot_dir,
    sign_in,
    submit_key,
    take,
    windows,
)
from tests.conftest import eventually
from worker.accounts.control import pause_account
from worker.accounts.status import status_report
from worker.drain.progress import publish
from worker.pool.workers import run_pool
from worker.queue.jobs import make_job
from worker.queue.lanes import Queue
from worker.results.records import Record
from worker.simulator.faults import LatencySpec
from worker.store.keys import AccountKeys

pytestmark = pytest.mark.slow

COOKIE = "ozp_console"
NUMBERS = [f"98450{i:05d}" for i in range(1200)]
POSITIVE = re.compile(r"^[1-9][0-9]*$")
DRAIN_TAG = "suppression-nov-3f9a2c"


@contextlib.asynccontextmanager
async def pool(console: Console) -> AsyncIterator[asyncio.Task[Any]]:
    """The real worker pool, in-process, until the block ends."""
    stopping = asyncio.Event()
    task = asyncio.create_task(run_pool(console.settings, console.redis, stopping))
    try:
        yield task
    finally:
        stopping.set()
        await asyncio.wait_for(task, 15)


async def deletes(console: Console) -> int:
    """Delete requests the simulator has received."""
    report = await console.sim.inspect()
    return sum(1 for r in report["requests"] if r["endpoint"] == "delete")


async def outstanding(console: Console) -> int:
    return (await Queue(console.redis, console.keys).counts()).outstanding


async def session_of(page: Page, console: Console) -> dict[str, Any]:
    response = await page.request.get(f"{console.url}/console/api/session")
    assert response.status == 200
    return dict(await response.json())


async def post(page: Page, console: Console, action: str, body: dict[str, Any],
               csrf: str | None) -> APIResponse:  # fmt: skip
    """A POST carrying the page's cookie, with the CSRF header when given."""
    headers = {"Content-Type": "application/json"}
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    return await page.request.post(
        f"{console.url}/console/api/{action}", headers=headers, data=body
    )


async def test_sign_in_sets_a_strict_http_only_cookie_and_a_wrong_key_sets_none(
    console_factory: ConsoleFactory, new_page: PageFactory
) -> None:
    console = await console_factory()
    page = await new_page(console)

    await page.goto(f"{console.url}/console")
    await page.wait_for_url(f"{console.url}/console/login")  # no session: sent to sign in
    refused = await submit_key(page, console, "not-anyones-key-0123456789")
    assert refused.status == 303, (refused.status, await refused.text())
    await page.wait_for_url(f"{console.url}/console/login?failed=1")
    await expect(page.locator('#login-error[role="alert"]')).to_have_text("Wrong key")
    assert [c for c in await page.context.cookies() if c["name"] == COOKIE] == []

    await sign_in(page, console)
    await expect(page.locator("h1")).to_have_text("Overview")
    await expect(page.locator("#operator")).to_have_text("alice")
    [cookie] = [c for c in await page.context.cookies() if c["name"] == COOKIE]
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/console")
    assert COOKIE not in await page.evaluate("document.cookie")  # out of the scripts' reach

    # Sign out: a POST form carrying the CSRF token the page filled in.
    assert await page.input_value(".signout input[name=csrf]")
    await page.click(".signout button")
    await page.wait_for_url(f"{console.url}/console/login")
    assert [c for c in await page.context.cookies() if c["name"] == COOKIE] == []
    await page.goto(f"{console.url}/console/dead-letters")
    await page.wait_for_url(f"{console.url}/console/login")


async def test_the_overview_shows_what_status_json_says(
    console_factory: ConsoleFactory, new_page: PageFactory
) -> None:
    console = await console_factory()
    redis, settings, keys = console.redis, console.settings, console.keys
    # Jobs taken by a worker first: a consumer reads the oldest entry it was not given.
    for phone in NUMBERS[9:12]:
        await finish(redis, settings, keys, phone, Record("deleted", "Deleted Successfully", 1))
    await dead_letter(redis, settings, keys, NUMBERS[12])
    await dead_letter(redis, settings, keys, NUMBERS[13], reason="invalid_campaign")
    await delayed_retry(redis, keys, NUMBERS[8], delay_s=600)
    await take(redis, keys, make_job(CAMPAIGN, NUMBERS[7]))  # held by a worker: in flight
    queue = Queue(redis, keys)
    await queue.enqueue_many([make_job(CAMPAIGN, n) for n in NUMBERS[:2]], lane="urgent")
    await queue.enqueue_many([make_job(CAMPAIGN, n) for n in NUMBERS[2:7]])
    # A second account, known only to Redis, paused by an operator.
    other = AccountKeys(keys.prefix, "backup")
    await Queue(redis, other).enqueue_many([make_job(CAMPAIGN, n) for n in NUMBERS[20:23]])
    await pause_account(redis, other, "vendor maintenance window")
    # A drain's live view publishes its panel's numbers; the overview lists them.
    await publish(redis, keys, DRAIN_TAG, {"file": "suppression-nov.csv", "phase": "sending",
                                          "rows": 14, "queued": 9, "done": 3, "dead": 2,
                                          "rejected": 0})  # fmt: skip

    page = await new_page(console)
    await sign_in(page, console)
    backup = page.locator('section.account[data-account="backup"]')
    await expect(backup.locator('[data-field="state"]')).to_have_text("paused")
    await expect(backup).to_contain_text("vendor maintenance window")

    status = (await status_report(redis, settings))["accounts"]
    assert list(status) == ["default", "backup"]
    overview = await (await page.request.get(f"{console.url}/console/api/overview")).json()
    for name, entry in status.items():
        shown = await dom_fields(page, name)
        wanted = expected_fields(entry)
        assert {k: shown[k] for k in wanted} == wanted, name
        api = overview["accounts"][name]
        assert shown["permits"] == str(api["permits_window"])
        assert shown["limit"] == str(api["limit"])
        assert shown["workers"] == str(api["workers"])
    # The queue as built, so the comparison above was not of zeros.
    assert status["default"]["queued"] == {"urgent": 2, "bulk": 5}
    assert (status["default"]["in_flight"], status["default"]["delayed"]) == (1, 1)
    assert (status["default"]["done"], status["default"]["dead"]) == (3, 2)
    assert status["backup"]["state"] == "paused"

    drain = page.locator(f'table.drains tr[data-tag="{DRAIN_TAG}"] td')
    cells = ["default", DRAIN_TAG, "suppression-nov.csv", "sending", "36%", "14", "9", "3", "2"]
    await expect(drain).to_have_text([*cells, "0", re.compile(r"s ago$")])

    chart = page.locator('svg.rate-chart[data-account="default"]')
    await expect(chart.locator("rect.bar")).to_have_count(60)
    await expect(chart.locator("line.limit")).to_have_count(1)
    assert await chart.get_attribute("role") == "img"
    assert "limit" in (await chart.get_attribute("aria-label") or "")
    # The durations above were compared through a Python copy of the pages' format.
    samples = [None, 0, 59, 65, 3600, 3725, 90061, -65]
    formatted = await page.evaluate(
        "samples => import('/console/static/console.js').then(m => samples.map(m.duration))",
        samples,
    )
    assert formatted == [duration(s) for s in samples]


async def test_a_pause_from_the_page_stops_sending_and_resume_drains_the_rest(
    console_factory: ConsoleFactory, new_page: PageFactory
) -> None:
    # 10 a second: the drain lasts about 8 s unpaused, time enough to pause it.
    jobs = 80
    console = await console_factory(NUMBERS[:jobs], rate_limit=10, rate_window_s=1.0)
    await Queue(console.redis, console.keys).enqueue_many(
        make_job(CAMPAIGN, n) for n in NUMBERS[:jobs]
    )
    page = await new_page(console)
    await sign_in(page, console)
    await page.evaluate("window.sameDocument = true")
    done = page.locator('section.account[data-account="default"] [data-field="done"]')

    async with pool(console):
        await eventually(lambda: _at_least(deletes(console), 5))
        # The page follows the drain by itself.
        await expect(done).to_have_text(POSITIVE)

        await page.fill("input[name=reason]", "vendor maintenance")
        await page.click('button[data-action="pause"]')
        await expect(page.locator('[data-field="state"]')).to_have_text("paused")
        # Requests already on their way finish; then nothing more is sent.
        await eventually(lambda: _is_zero(_in_flight(console)))
        before = await deletes(console)
        await asyncio.sleep(windows(3, console.settings))
        assert await deletes(console) == before
        assert await outstanding(console) > 0
        assert before < jobs

        await page.click('button[data-action="resume"]')
        await expect(page.locator('[data-field="state"]')).to_have_text("running")
        await eventually(lambda: _is_zero(outstanding(console)), timeout_s=30)
        await expect(done).to_have_text(str(jobs))

    assert await deletes(console) == jobs
    actions = page.locator("ol.actions li")
    await expect(actions.nth(0)).to_contain_text("alice resumed")
    await expect(actions.nth(1)).to_contain_text("alice paused: vendor maintenance")
    assert await page.evaluate("window.sameDocument") is True  # polled, never reloaded


async def _at_least(count: Any, wanted: int) -> bool:
    return int(await count) >= wanted


async def _is_zero(count: Any) -> bool:
    return int(await count) == 0


async def _in_flight(console: Console) -> int:
    return (await Queue(console.redis, console.keys).counts()).in_flight


async def test_a_replay_from_the_dead_letters_page_queues_a_new_job(
    console_factory: ConsoleFactory, new_page: PageFactory
) -> None:
    console = await console_factory()
    redis, keys = console.redis, console.keys
    for phone in NUMBERS[:3]:
        await dead_letter(redis, console.settings, keys, phone)
    await dead_letter(redis, console.settings, keys, NUMBERS[3], reason="invalid_campaign")
    letters = await redis.xrange(keys.dlq)
    first_id, first = letters[0]

    page = await new_page(console)
    await sign_in(page, console)
    await page.goto(f"{console.url}/console/dead-letters")
    rows = page.locator("table.letters tbody tr[data-id]")
    await expect(rows).to_have_count(4)
    options = await page.locator("#reason option").all_text_contents()
    assert options == ["All (4)", "invalid_campaign (1)", "no_record (3)"]
    table = await page.locator("table.letters").inner_text()
    assert not any(phone in table for phone in NUMBERS[:4])  # masked
    assert first["phone"][-3:] in table

    retry_before = await redis.xlen(keys.retry)
    await page.click(f'tr[data-id="{first_id}"] button[data-action="replay"]')
    await expect(rows).to_have_count(3)
    await expect(page.locator(f'tr[data-id="{first_id}"]')).to_have_count(0)
    assert await redis.xlen(keys.retry) == retry_before + 1
    assert await redis.xlen(keys.dlq) == 3
    [(_, replayed)] = await redis.xrange(keys.retry)
    assert (replayed["replay_of"], replayed["phone"]) == (first["job_id"], first["phone"])
    status = (await status_report(redis, console.settings))["accounts"]["default"]
    assert (status["delayed"], status["dead"]) == (1, 4)  # dead counts jobs that died

    # Reveal one number: shown whole, and recorded as alice's action.
    second_id, second = letters[1]
    await page.click(f'tr[data-id="{second_id}"] button[data-action="reveal"]')
    await expect(page.locator(f'tr[data-id="{second_id}"] td.phone')).to_have_text(second["phone"])
    await page.goto(f"{console.url}/console")
    await expect(page.locator("ol.actions li").nth(0)).to_contain_text("alice revealed")
    await expect(page.locator("ol.actions li").nth(1)).to_contain_text("alice replayed")
    assert second["phone"] not in await page.locator("ol.actions").inner_text()


async def test_replay_by_reason_and_a_confirmed_purge_empty_the_dead_letters(
    console_factory: ConsoleFactory, new_page: PageFactory
) -> None:
    console = await console_factory()
    redis, keys = console.redis, console.keys
    for phone in NUMBERS[:2]:
        await dead_letter(redis, console.settings, keys, phone)
    for phone in NUMBERS[2:5]:
        await dead_letter(redis, console.settings, keys, phone, reason="invalid_campaign")

    page = await new_page(console)
    await sign_in(page, console)
    await page.goto(f"{console.url}/console/dead-letters")
    rows = page.locator("table.letters tbody tr[data-id]")
    await page.select_option("#reason", "no_record")
    await expect(rows).to_have_count(2)
    await page.click('button[data-action="replay-reason"]')
    await expect(page.locator("#notice")).to_contain_text("2 replayed")
    await expect(rows).to_have_count(3)  # what is left: the other reason
    assert await redis.xlen(keys.retry) == 2

    dialog = page.locator("dialog#confirm-purge")
    await page.click('button[data-action="purge"]')
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("3 dead letters")
    assert await redis.xlen(keys.dlq) == 3  # asking is not purging
    await dialog.locator('button[data-action="confirm"]').click()
    await expect(dialog).to_be_hidden()
    await expect(rows).to_have_count(0)
    assert await redis.xlen(keys.dlq) == 0
    assert await redis.xlen(keys.retry) == 2


async def test_a_read_only_operator_sees_no_actions_and_its_posts_are_refused(
    console_factory: ConsoleFactory, new_page: PageFactory
) -> None:
    console = await console_factory()
    redis, keys = console.redis, console.keys
    await dead_letter(redis, console.settings, keys, NUMBERS[0])
    await Queue(redis, keys).enqueue(make_job(CAMPAIGN, NUMBERS[1]))
    page = await new_page(console)
    await sign_in(page, console, READER_KEY)
    await expect(page.locator("#operator")).to_have_text("rita")
    await expect(page.locator("#role")).to_have_text("read-only")
    await expect(page.locator('[data-field="queued-bulk"]')).to_have_text("1")
    actions = "pause, resume, replay, replay-reason, replay-all, purge, confirm"
    acting = ", ".join(f'[data-action="{a.strip()}"]' for a in actions.split(","))
    assert await page.locator(acting).count() == 0

    await page.goto(f"{console.url}/console/dead-letters")
    await expect(page.locator("table.letters tbody tr[data-id]")).to_have_count(1)
    assert await page.locator(acting).count() == 0
    assert await page.locator('button[data-action="reveal"]').count() == 1  # reading stays

    csrf = (await session_of(page, console))["csrf"]
    [(letter_id, _)] = await redis.xrange(keys.dlq)
    refused = {
        "pause": {"account": "default", "reason": "no"},
        "resume": {"account": "default"},
        "replay": {"account": "default", "all": True},
        "purge": {"account": "default", "all": True, "confirm": "purge"},
    }
    for action, body in refused.items():
        response = await post(page, console, action, body, csrf)
        assert response.status == 403, action
        assert await response.json() == {"error": "read-only operator"}
    assert not await redis.exists(keys.paused)
    assert await redis.xlen(keys.dlq) == 1
    lookup = await post(page, console, "lookup", {"account": "default", "job_id": "x"}, csrf)
    assert lookup.status == 200
    reveal = await post(page, console, "reveal", {"account": "default", "letter_id": letter_id},
                        csrf)  # fmt: skip
    assert (await reveal.json())["phone"] == NUMBERS[0]


async def test_posts_without_the_csrf_token_are_refused(
    console_factory: ConsoleFactory, new_page: PageFactory
) -> None:
    console = await console_factory()
    page = await new_page(console)
    await sign_in(page, console)
    pause = {"account": "default", "reason": "forged"}
    for csrf in (None, "", "not-the-token"):
        response = await post(page, console, "pause", pause, csrf)
        assert response.status == 403, csrf
        assert await response.json() == {"error": "missing or wrong CSRF token"}
    # The page's own fetch, with its cookie but without the header, is refused too.
    status = await page.evaluate(
        """fetch('/console/api/pause', {method: 'POST', headers: {'Content-Type':
           'application/json'}, body: JSON.stringify({account: 'default', reason: 'x'})})
           .then(r => r.status)"""
    )
    assert status == 403
    assert not await console.redis.exists(console.keys.paused)
    # The same request with the token is accepted: the header was the difference.
    csrf = (await session_of(page, console))["csrf"]
    assert (await post(page, console, "pause", pause, csrf)).status == 200
    assert await console.redis.get(console.keys.paused) == "forged"


async def test_the_pages_ask_nothing_of_any_other_origin(
    console_factory: ConsoleFactory, new_page: PageFactory
) -> None:
    console = await console_factory()
    redis, settings, keys = console.redis, console.settings, console.keys
    finished = await finish(redis, settings, keys, NUMBERS[0], Record("dead", "No Record Found",
                                                                       1, "no_record"))  # fmt: skip
    page = await new_page(console)
    await page.goto(f"{console.url}/console/login?failed=1")
    await sign_in(page, console)
    await expect(page.locator("svg.rate-chart rect.bar")).to_have_count(60)
    await page.goto(f"{console.url}/console/dead-letters")
    await page.click('button[data-action="reveal"]')
    await expect(page.locator("td.phone")).to_have_text(NUMBERS[0])
    await page.goto(f"{console.url}/console/results")
    await page.fill("#campaign", CAMPAIGN)
    await page.fill("#phone", NUMBERS[0])
    await page.click("#lookup button[type=submit]")
    await expect(page.locator("table.results tbody tr")).to_have_count(1)
    await expect(page.locator("table.results")).to_contain_text(finished.id)
    await page.click(".signout button")
    await page.wait_for_url(f"{console.url}/console/login")

    paths = {urlsplit(url).path for url in console.requests}
    for wanted in ("/console/static/console.js", "/console/static/console.css",
                   "/console/api/overview", "/console/api/lookup"):  # fmt: skip
        assert wanted in paths, wanted
    strangers = [url for url in console.requests if not url.startswith(f"{console.origin}/")]
    assert strangers == []
    # A request to another origin that the CSP stopped never shows above: it
    # shows as the browser's refusal, which counts as an attempt.
    assert [p for p in console.problems if "Content Security Policy" in p] == []
    # The looked-up number went in a body, never in an address.
    assert not [url for url in console.requests if NUMBERS[0] in url]


async def test_axe_finds_nothing_serious_on_any_page(
    console_factory: ConsoleFactory, new_page: PageFactory
) -> None:
    console = await console_factory()
    redis, settings, keys = console.redis, console.settings, console.keys
    await Queue(redis, keys).enqueue(make_job(CAMPAIGN, NUMBERS[0]))
    done = await finish(redis, settings, keys, NUMBERS[1], Record("deleted", "Deleted", 1))
    await dead_letter(redis, settings, keys, NUMBERS[2])
    page = await new_page(console)

    async def check(name: str) -> None:
        assert await axe_violations(page) == [], name
        for width in (1280, 375):
            await page.set_viewport_size({"width": width, "height": 800})
            # Nothing wider than the window: tables scroll inside their own box.
            wide = await page.evaluate("document.documentElement.scrollWidth > innerWidth")
            assert not wide, (name, width)
        await page.set_viewport_size({"width": 1280, "height": 800})

    await page.goto(f"{console.url}/console/login?failed=1")
    await expect(page.locator("#login-error")).to_be_visible()
    await check("login")
    await sign_in(page, console)
    await expect(page.locator("svg.rate-chart rect.bar")).to_have_count(60)
    await check("overview")
    await page.goto(f"{console.url}/console/dead-letters")
    await expect(page.locator("table.letters tbody tr[data-id]")).to_have_count(1)
    await check("dead letters")
    await page.click('button[data-action="purge"]')
    await expect(page.locator("dialog#confirm-purge")).to_be_visible()
    await check("purge dialog")
    await page.keyboard.press("Escape")
    await page.goto(f"{console.url}/console/results")
    await page.fill("#job-id", done.id)
    await page.click("#lookup button[type=submit]")
    await expect(page.locator("table.results tbody tr")).to_have_count(1)
    await check("results")


async def test_screenshots_of_a_drain(
    console_factory: ConsoleFactory, new_page: PageFactory, tmp_path: Path
) -> None:
    """The overview mid-drain and the dead letters, as pictures; the README's
    comes from running this with OZP_SCREENSHOT_DIR=docs/images."""
    # The vendor's real allowance (100 a minute) and clock, 300-500 ms a request.
    console = await console_factory(
        [n for i, n in enumerate(NUMBERS) if i % 25],
        sim={"time_scale": 1.0, "latency": LatencySpec("uniform", 300, 500)},
        rate_limit=100, rate_window_s=60.0, rate_margin_s=0.5, token_budget_window_s=3600.0,
    )  # fmt: skip
    redis, keys = console.redis, console.keys
    queue = Queue(redis, keys)
    await queue.enqueue_many([make_job(CAMPAIGN, n) for n in NUMBERS[1000:1030]], lane="urgent")
    await queue.enqueue_many(make_job(CAMPAIGN, n) for n in NUMBERS[:1000])
    await seed_last_hour(redis, keys)
    page = await new_page(console)
    await sign_in(page, console)
    await page.fill("input[name=reason]", "vendor maintenance window")
    await page.click('button[data-action="pause"]')
    await expect(page.locator('[data-field="state"]')).to_have_text("paused")
    await page.click('button[data-action="resume"]')
    await expect(page.locator('[data-field="state"]')).to_have_text("running")

    done = page.locator('[data-field="done"]')
    async with pool(console):
        await expect(done).to_have_text(POSITIVE)
        first = int(await done.inner_text())
        await expect(done).not_to_have_text(str(first))  # moving, by polling
        # Mid-burst: the minute's hundred permits are not all used yet.
        await eventually(lambda: _at_least(deletes(console), 40))
        heights = await page.locator("svg.rate-chart rect.bar").evaluate_all(
            "bars => bars.map(b => Number(b.getAttribute('height')))"
        )
        assert len(heights) == 60 and min(heights) > 0
        # What the drain command's live view publishes, from the queue's own numbers.
        status = (await status_report(redis, console.settings))["accounts"]["default"]
        await publish(redis, keys, "suppression-nov-3f9a2c", {
            "file": "suppression-nov.csv", "phase": "sending", "rows": 1033, "rejected": 3,
            "queued": 1030 - status["done"] - status["dead"],
            "done": status["done"], "dead": status["dead"],
        })  # fmt: skip
        await page.wait_for_timeout(2200)  # one more poll shows them
        assert int(await page.locator('[data-field="permits"]').inner_text()) > 0
        folder = screenshot_dir(tmp_path)
        await page.screenshot(path=str(folder / "console-overview.png"), full_page=True)
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.screenshot(path=str(folder / "console-overview-narrow.png"), full_page=True)
        await page.set_viewport_size({"width": 1280, "height": 800})
        await page.goto(f"{console.url}/console/dead-letters")
        await expect(page.locator("table.letters tbody tr[data-id]").first).to_be_visible()
        await page.screenshot(path=str(folder / "console-dead-letters.png"), full_page=True)
    assert (folder / "console-overview.png").stat().st_size > 10_000


async def seed_last_hour(redis: Redis, keys: AccountKeys) -> None:
    """An hour of the rate history as the limiter records it (requests per
    minute index), so the chart shows a drain that has been running a while."""
    seconds, _ = await redis.time()
    current = int(seconds) // 60
    history = {str(current - age): 100 - (age * 7) % 5 for age in range(1, 60)}
    await redis.hset(keys.rate_minutes, mapping=history)
