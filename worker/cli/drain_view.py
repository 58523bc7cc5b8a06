"""What ``drain`` and ``demo`` show a person: the live panel and the summary table.

The live panel is redrawn about once a second from ``status`` (the same
numbers ``ozonetel-purge status`` prints) and from the drain's own progress.
Done and dead are counted from the start of this run, since the account's
counters also hold earlier runs and other producers' work. The same numbers
are published in Redis for the operator console (:mod:`worker.drain.progress`)
at the same pace, on a terminal or not, and once more when the drain ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from worker.accounts.status import account_status
from worker.cli.safe_text import safe_text, visible
from worker.cli.views import duration
from worker.config.settings import Settings
from worker.drain.batch import DrainProgress, DrainSpec
from worker.drain.progress import publish
from worker.drain.report import REPORT_OUTCOMES, Summary
from worker.events import wait_event
from worker.logs import configure_logging, get_logger

log = get_logger(__name__)

REFRESH_S = 1.0


def _counts(status: dict[str, Any]) -> tuple[int, int]:
    return int(status["done"]), int(status["dead"])


def live_panel(
    spec: DrainSpec,
    progress: DrainProgress,
    status: dict[str, Any] | None,
    baseline: tuple[int, int],
) -> Group:
    # The file name, the tag and the account are the operator's, but a file
    # name can hold anything a terminal would act on.
    title = Text.assemble(
        ("draining ", "bold"), (visible(spec.path.name), "bold cyan"),
        f"  tag {visible(spec.tag)}", "  account ", (visible(spec.keys.account), "bold"),
    )  # fmt: skip
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    grid.add_row("phase", Text(progress.phase, style="green"))
    imported = (
        f"{progress.rows_read} rows read this run: queued {progress.queued}, "
        f"duplicates {progress.duplicates}, rejected {progress.rejected}"
    )
    if progress.resumed_after_line:
        imported += f" (resumed after line {progress.resumed_after_line})"
    grid.add_row("import", imported)
    if progress.taken_over:
        grid.add_row("taken over", f"{progress.taken_over} jobs held by the interrupted run")
    if status is not None:
        done, dead = _counts(status)
        queued = status["queued"]["urgent"] + status["queued"]["bulk"]
        grid.add_row("done", str(done - baseline[0]))
        grid.add_row(
            "dead", Text(str(dead - baseline[1]), style="red" if dead > baseline[1] else "")
        )
        grid.add_row(
            "left",
            f"{queued} queued, {status['in_flight']} in flight, {status['delayed']} delayed",
        )
        grid.add_row("rate", f"{status['rate_last_min']} sent in the last minute")
        grid.add_row("ETA", duration(status["eta_s"]))
        if status["halted"]:
            grid.add_row("HALTED", safe_text(status["halted"], style="bold red"))
        elif status["paused"]:
            grid.add_row("paused", Text("yes: `ozonetel-purge resume` to go on", style="yellow"))
    return Group(title, grid)


def progress_snapshot(
    spec: DrainSpec,
    progress: DrainProgress,
    status: dict[str, Any] | None,
    baseline: tuple[int, int],
) -> dict[str, int | str]:
    """The panel's numbers, as :func:`worker.drain.progress.publish` takes them."""
    snapshot: dict[str, int | str] = {
        "file": spec.path.name,
        "phase": progress.phase,
        "rows": progress.rows_read,
        "queued": progress.queued,
        "rejected": progress.rejected,
    }
    if status is not None:
        done, dead = _counts(status)
        snapshot["done"], snapshot["dead"] = done - baseline[0], dead - baseline[1]
    return snapshot


@contextlib.asynccontextmanager
async def live_view(
    console: Console, redis: Redis, settings: Settings, spec: DrainSpec, progress: DrainProgress
) -> AsyncIterator[None]:
    """Redraw the panel every second while the body runs, on a terminal only; and
    publish the same numbers for the operator console, on a terminal or not."""
    baseline = _counts(await account_status(redis, settings, spec.keys.account))
    if not console.is_terminal:
        async with _refreshing(redis, settings, spec, progress, baseline, None):
            yield
        return

    panel = live_panel(spec, progress, None, baseline)
    with Live(panel, console=console, auto_refresh=False, transient=True) as live:

        def redraw(status: dict[str, Any] | None) -> None:
            live.update(live_panel(spec, progress, status, baseline), refresh=True)

        level = _quiet_logs()
        try:
            async with _refreshing(redis, settings, spec, progress, baseline, redraw):
                yield
        finally:
            configure_logging(level=logging.getLevelName(level).lower())


@contextlib.asynccontextmanager
async def _refreshing(
    redis: Redis,
    settings: Settings,
    spec: DrainSpec,
    progress: DrainProgress,
    baseline: tuple[int, int],
    show: Callable[[dict[str, Any] | None], None] | None,
) -> AsyncIterator[None]:
    """Once a second while the body runs: read the status, show it, publish it;
    and after a body that ended normally (phase "done"), publish once more."""

    async def read_status() -> dict[str, Any] | None:
        # A Redis hiccup costs a frame, never the drain: the pool rides it out.
        with contextlib.suppress(RedisError, OSError):
            return await account_status(redis, settings, spec.keys.account)
        return None

    async def publish_now(status: dict[str, Any] | None) -> None:
        snapshot = progress_snapshot(spec, progress, status, baseline)
        try:
            await publish(redis, spec.keys, spec.tag, snapshot, ttl_s=settings.result_ttl_s)
        except (RedisError, OSError) as exc:
            # The console's view of the drain, never the drain itself.
            log.debug("drain.progress_not_published", error=exc)

    over = asyncio.Event()

    async def refresh() -> None:
        status: dict[str, Any] | None = None
        while not over.is_set():
            status = await read_status() or status
            if show is not None:
                show(status)
            await publish_now(status)
            await wait_event(over, REFRESH_S)

    task = asyncio.create_task(refresh())
    try:
        yield
    finally:
        # Ended by an event, not by cancellation: a cancel that lands as a
        # Redis reply arrives can be swallowed by the client, and the loop
        # would go on for ever, holding the drain open after its last job.
        over.set()
        await task
    # Not reached when the body raised (a second Ctrl-C): nothing more waits on Redis then.
    await publish_now(await read_status())


def _quiet_logs() -> int:
    """Only warnings and errors while the panel is up, printed above it.

    One ``job.finished`` line per job would scroll the panel away; the
    report holds every outcome. Returns the level to restore.
    """
    wrapper: Any = structlog.get_config()["wrapper_class"]
    level = int(wrapper.get_effective_level(None))
    # Live swapped sys.stderr for a proxy that prints above the panel.
    configure_logging(
        level=logging.getLevelName(max(level, logging.WARNING)).lower(), stream=sys.stderr
    )
    return level


def summary_table(summary: Summary) -> Table:
    """Counts per outcome, with the reasons under dead and rejected."""
    title = safe_text(f"{summary.file}: {summary.rows} rows")
    table = Table(title=title, title_justify="left", box=None)
    table.add_column("outcome")
    table.add_column("rows", justify="right")
    styles = {"deleted": "green", "dead": "red", "rejected": "yellow", "pending": "bold yellow"}
    for outcome in REPORT_OUTCOMES:
        count = summary.outcomes[outcome]
        table.add_row(Text(outcome, style=styles.get(outcome, "") if count else ""), str(count))
        for reason, n in summary.reasons.get(outcome, {}).items():
            if outcome != "duplicate":
                table.add_row(safe_text(f"  {reason}", style="dim"), Text(str(n), style="dim"))
    table.add_row(Text("total", style="bold"), Text(str(summary.rows), style="bold"))
    return table


def summary_footer(summary: Summary) -> Text:
    # Line breaks of our own, so each path is made visible on its own.
    return Text(
        f"elapsed {duration(summary.elapsed_s)}, {summary.finished_this_run} finished this run "
        f"({summary.rate_per_min:.1f} per minute)\n"
        f"outcomes: {visible(summary.outcomes_csv)}\n"
        f"summary:  {visible(summary.summary_json)}\n"
        f"rejects:  {visible(summary.rejects_csv)}",
    )
