"""``drain`` and ``demo``: one file from rows to a report, in one command."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tempfile
from collections.abc import AsyncIterator, Coroutine, Iterator
from importlib.resources import as_file
from pathlib import Path
from typing import Annotated

import typer
from redis.asyncio import Redis

from worker.accounts.control import AccountExit
from worker.cli.app import (
    EXIT_FAILED,
    EXIT_HALTED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    AccountOption,
    err,
    execute,
    fail,
    out,
    stop_on_signals,
)
from worker.cli.drain_view import live_view, summary_footer, summary_table
from worker.cli.safe_text import visible
from worker.config.settings import Secret, Settings
from worker.drain.batch import DrainProgress, DrainSpec, Phase, drain
from worker.drain.rows import file_tag
from worker.drain.state import private_redis
from worker.errors import EmbeddedRedisError
from worker.store.connection import connect, redacted_url
from worker.store.embedded import EmbeddedRedis
from worker.store.keys import AccountKeys

DEFAULT_STATE_DIR = Path(".ozp-state")
REJECTS_NAME = "rejects.csv"


def drain_command(
    file: Annotated[Path, typer.Argument(help="CSV or JSONL file of numbers to delete.")],
    campaign: Annotated[
        str | None, typer.Option(help="Campaign for rows that name none (no campaign column).")
    ] = None,
    account: AccountOption = None,
    rejects: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="Refused rows (line, reason, raw). Default: in --report."
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Where the report goes. Default: ./<file name>-report/"),
    ] = None,
    state_dir: Annotated[
        Path,
        typer.Option(
            metavar="DIR", help="The private Redis's data, when REDIS_URL is unset. Keep it."
        ),
    ] = DEFAULT_STATE_DIR,
    normalize: Annotated[
        bool, typer.Option("--normalize", help="Drop spaces, dashes, dots and brackets first.")
    ] = False,
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Requests in flight at once (OZP_CONCURRENCY)."),
    ] = None,
) -> None:
    """Delete every number in FILE, then write a report of what became of each line.

    Safe to stop and to run again. Ctrl-C or SIGTERM stops after the requests in
    flight; run the SAME command on the SAME file to resume: rows already done are
    not sent again, and the report then covers every line. (A second Ctrl-C stops
    at once; the next run takes over what was in flight, marked "possibly sent",
    so a "No Record Found" for those reads already_deleted, not dead.)

    Without REDIS_URL it keeps its own Redis in --state-dir (one drain at a time
    per directory; keep the directory until the report says every line is done).
    With REDIS_URL it uses that Redis, sends alongside any other workers there,
    and ends when the account's whole queue is empty, not only this file's rows.

    The report directory gets outcomes.csv (one row per line: line, phone,
    campaign, name, outcome, reason, message, attempts, finished_at; outcome is
    deleted, already_deleted, dead, rejected, duplicate or pending) and
    summary.json. In both CSV files a cell starting with = + - or @ (a phone
    +91..., too) gets a leading ' so that a spreadsheet shows it as text.

    Exit codes: 0 every line done; 1 stopped with work left (run it again);
    2 bad file, config or state dir; 3 no Redis; 4 account halted by a credential
    error (fix OZONETEL_API_KEY / OZONETEL_USERNAME and run it again; with
    REDIS_URL, `ozonetel-purge resume` first); 5 Redis refused a command (ACL,
    out of memory); 130 stopped at once.
    """
    report_dir = report or Path(f"{file.stem}-report")
    rejects_path = rejects or report_dir / REJECTS_NAME

    async def work(settings: Settings) -> int:
        if concurrency is not None:
            settings = settings.with_overrides(concurrency=concurrency)
        keys = AccountKeys(settings.key_prefix, settings.account(account).name)
        spec = DrainSpec(file, file_tag(file), keys, campaign or "", normalize)
        # A wrong file or missing credentials fail before anything starts.
        spec.check_header()
        settings.account(keys.account).require_credentials()
        _report_dir(report_dir)
        async with _redis_for(settings, state_dir) as (redis, private):
            return await drain_and_show(redis, settings, spec, report_dir, rejects_path, private)

    execute(work)


def demo(
    report: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Where the report goes. Default: a new temporary dir."),
    ] = None,
    console: Annotated[
        bool,
        typer.Option(
            "--console",
            help="Also serve the operator console on 127.0.0.1 (a one-time key is printed), "
            "and keep it up after the drain until Ctrl-C.",
        ),
    ] = False,
    console_port: Annotated[
        int, typer.Option(min=0, max=65535, help="The console's port (0: any free one).")
    ] = 8090,
) -> None:
    """Watch a drain from start to end, without Ozonetel and without your Redis.

    Starts a throwaway Redis and the Ozonetel simulator on 127.0.0.1, with the
    vendor's clock 30 times faster (100 requests per 2 s instead of per minute),
    and drains a sample list of a few hundred rows through it: the same code as
    `drain`. Nothing of yours is read or changed; the environment is ignored.
    With --console, open the printed URL and sign in with the printed key to
    watch the same drain in the browser.
    """
    from worker import demo as props
    from worker.simulator import start as start_simulator

    report_dir = _report_dir(report) if report else Path(tempfile.mkdtemp(prefix="ozp-demo-"))

    async def work(_: Settings) -> int:
        with (
            tempfile.TemporaryDirectory(prefix="ozp-demo-") as scratch,
            as_file(props.sample_list()) as sample,
            _embedded(EmbeddedRedis(Path(scratch) / "redis", persist=False)) as server,
        ):
            runner, url = await start_simulator(props.simulator_config(), "127.0.0.1", 0)
            try:
                settings = props.demo_settings(server.url, url)
                keys = AccountKeys(settings.key_prefix, props.DEMO_ACCOUNT)
                spec = DrainSpec(sample, file_tag(sample), keys)
                err.print(
                    f"simulator on {url}, Redis on {redacted_url(server.url)}, "
                    "both thrown away after; "
                    f"the vendor's clock runs {props.TIME_SCALE:g} times faster here",
                    markup=False,
                )
                redis = await connect(server.url)
                try:
                    rejects = report_dir / REJECTS_NAME
                    if not console:
                        return await drain_and_show(
                            redis, settings, spec, report_dir, rejects, True
                        )
                    return await _with_console(
                        redis, settings, console_port,
                        drain_and_show(redis, settings, spec, report_dir, rejects, True),
                    )  # fmt: skip
                finally:
                    await redis.aclose()
            finally:
                await runner.cleanup()

    execute(work)


async def _with_console(
    redis: Redis, settings: Settings, port: int, run: Coroutine[None, None, int]
) -> int:
    """Run the demo with the console served beside it, then keep serving
    until Ctrl-C, so there is time to look around once the drain is over."""
    from worker.console.app import create_console_app
    from worker.http.api import listening

    key = f"demo-{secrets.token_urlsafe(18)}"
    settings = settings.with_overrides(operator_keys={"demo": Secret(key)})
    async with listening(settings, redis, "127.0.0.1", port, create_console_app) as server:
        err.print(
            f"console on http://127.0.0.1:{server.port}/console, sign in with {key}",
            markup=False,
        )
        code = await run
        if code != EXIT_INTERRUPTED:
            err.print("the console stays up until Ctrl-C", markup=False)
            await stop_on_signals().wait()
    return code


def _report_dir(path: Path) -> Path:
    """Made before any work, so that a report that cannot be written stops nothing midway."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(EXIT_USAGE, f"{path}: cannot make the report directory: {exc.strerror}")
    return path


@contextlib.contextmanager
def _embedded(server: EmbeddedRedis) -> Iterator[EmbeddedRedis]:
    try:
        with server:
            yield server
    except EmbeddedRedisError as exc:
        fail(EXIT_USAGE, exc)


@contextlib.asynccontextmanager
async def _redis_for(settings: Settings, state_dir: Path) -> AsyncIterator[tuple[Redis, bool]]:
    """REDIS_URL's Redis, or a private one kept in ``state_dir``; True if private."""
    if settings.redis_url is not None:
        redis = await connect(settings.redis_url, settings.redis_mode)
        try:
            yield redis, False
        finally:
            await redis.aclose()
        return
    try:
        with private_redis(state_dir) as server:
            redis = await connect(server.url)
            try:
                yield redis, True
            finally:
                await redis.aclose()
    except EmbeddedRedisError as exc:
        fail(EXIT_USAGE, exc)


async def drain_and_show(
    redis: Redis,
    settings: Settings,
    spec: DrainSpec,
    report_dir: Path,
    rejects_path: Path,
    private: bool,
) -> int:
    """The drain with its live view and summary; returns the exit code."""
    stopping = stop_on_signals()
    progress = DrainProgress()

    def on_phase(phase: Phase) -> None:
        if phase == "reporting" and stopping.is_set():
            err.print("stopped: writing the report (Ctrl-C again to skip it)", markup=False)

    try:
        async with live_view(err, redis, settings, spec, progress):
            result = await drain(
                redis,
                settings,
                spec,
                stopping,
                report_dir,
                rejects_path,
                private,
                progress,
                on_phase,
            )
    except asyncio.CancelledError:
        # The second signal: requests in flight were abandoned, their jobs stay
        # held, and the next drain takes them over (as "possibly sent").
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        err.print(_resume_hint("stopped at once"), markup=False)
        return EXIT_INTERRUPTED
    summary = result.summary
    out.print(summary_table(summary))
    out.print(summary_footer(summary), markup=False)
    if progress.taken_over:
        err.print(
            f"took over {progress.taken_over} jobs left in flight by the interrupted run",
            markup=False,
        )
    if progress.cleared_halt:
        err.print(
            f"cleared the halt the last run left: {visible(progress.cleared_halt)}", markup=False
        )
    if result.exit is AccountExit.HALTED:
        then = "" if private else "`ozonetel-purge resume`, then "
        err.print(
            f"account {spec.keys.account} is halted by a credential error (see the log "
            f"above); fix OZONETEL_API_KEY / OZONETEL_USERNAME, {then}run this same "
            "command again",
            markup=False,
        )
        return EXIT_HALTED
    if summary.complete:
        return EXIT_OK
    err.print(_resume_hint(f"stopped with {summary.outcomes['pending']} rows left"), markup=False)
    return EXIT_FAILED


def _resume_hint(what: str) -> str:
    return (
        f"{what}: run the same command again on the same file to resume; "
        "rows already done will not be sent again"
    )
