"""``status`` and ``results``: what the accounts are doing and what became of each job."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import typer
from redis.asyncio import Redis
from rich.live import Live

from worker.accounts.status import status_report
from worker.cli.app import (
    EXIT_OK,
    AccountOption,
    JsonOption,
    account_keys,
    connected,
    err,
    execute,
    out,
    print_json,
    stop_on_signals,
    wait_or_stop,
)
from worker.cli.safe_text import safe_text
from worker.cli.views import result_line, results_table, status_table
from worker.config.settings import Settings
from worker.results.records import result_view
from worker.store.stream_reads import Entry, entries_after, entries_from, last_id, latest


def _show(report: dict[str, Any], json_output: bool) -> None:
    if json_output:
        print_json(report)
    else:
        out.print(status_table(report))


def status(
    json_output: JsonOption = False,
    watch: Annotated[
        float | None,
        typer.Option(min=0.5, metavar="SECONDS", help="Refresh every SECONDS until Ctrl-C."),
    ] = None,
    account: Annotated[
        list[str] | None,
        typer.Option("--account", "-a", help="Only this account (repeatable). Default: all."),
    ] = None,
) -> None:
    """Per account: backlog, sends in the last minute, ETA, token, paused or halted.

    Queued by lane, in flight, delayed (retries), done, dead; token expiry and
    generations used of the budget; and why an account is paused, halted or
    waiting. Accounts: the configured ones plus any that has had work in Redis.
    """

    async def work(settings: Settings) -> int:
        async with connected(settings) as redis:
            report = await status_report(redis, settings, account)
            if watch is None:
                _show(report, json_output)
                return EXIT_OK
            stopping = stop_on_signals()
            if json_output or not out.is_terminal:
                # A log-like stream: one report per interval.
                _show(report, json_output)
                while not await wait_or_stop(stopping, watch):
                    _show(await status_report(redis, settings, account), json_output)
                return EXIT_OK
            with Live(status_table(report), console=out, auto_refresh=False) as live:
                while not await wait_or_stop(stopping, watch):
                    report = await status_report(redis, settings, account)
                    live.update(status_table(report), refresh=True)
        return EXIT_OK

    execute(work)


async def _history(redis: Redis, key: str, limit: int) -> AsyncIterator[Entry]:
    if limit:
        for entry in await latest(redis, key, limit):
            yield entry
    else:
        async for entry in entries_from(redis, key):
            yield entry


# A table of more rows than this is no longer read, only scrolled.
HUMAN_RESULTS = 50


def results(
    json_output: JsonOption = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new results until Ctrl-C.")
    ] = False,
    account: AccountOption = None,
    limit: Annotated[
        int | None,
        typer.Option(
            min=0,
            help=f"Show the newest N (0: all). Default: {HUMAN_RESULTS} in the table, "
            "all with --json.",
        ),
    ] = None,
) -> None:
    """Terminal records, oldest first: one per job (deleted, already_deleted or dead).

    With --json every record is printed unless --limit says otherwise, so a
    script reading it never gets a silently cut list.
    """

    async def work(settings: Settings) -> int:
        newest = limit if limit is not None else (0 if json_output else HUMAN_RESULTS)
        keys = account_keys(settings, account)
        async with connected(settings) as redis:
            # --follow picks up after the newest entry shown, or the newest
            # entry in the stream if none was shown: nothing is missed or repeated.
            after = await last_id(redis, keys.results)
            views: list[dict[str, Any]] = []
            async for entry_id, fields in _history(redis, keys.results, newest):
                after = entry_id
                view = result_view(entry_id, fields)
                if json_output:
                    print_json(view)  # streamed: --limit 0 may be millions
                else:
                    views.append(view)
            if views:
                out.print(results_table(views))
            elif not json_output:
                err.print(safe_text(f"no results yet for account {keys.account}"))
            if not follow:
                return EXIT_OK
            stopping = stop_on_signals()
            # Short blocks, so Ctrl-C is answered within a second.
            while not stopping.is_set():
                for entry_id, fields in await entries_after(redis, keys.results, after, 1000):
                    after = entry_id
                    view = result_view(entry_id, fields)
                    if json_output:
                        print_json(view)
                    else:
                        out.print(result_line(view))
        return EXIT_OK

    execute(work)
