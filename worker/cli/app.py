"""The CLI's plumbing: the Typer app, exit codes, and the one path from a
command to the library (:func:`execute`), which maps failures to exit codes.

Settings are loaded once per command; expected failures print one line on
stderr and exit with a named code, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any, Literal, NoReturn

import typer
from redis.asyncio import Redis
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    NoPermissionError,
    RedisError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rich.console import Console

from worker import __version__
from worker.cli.safe_text import visible
from worker.config.settings import Settings
from worker.config.sources import load_settings, log_options
from worker.errors import (
    AccountHalted,
    BadInput,
    ConfigError,
    RedisUnavailable,
    TokenUnavailable,
)
from worker.logs import configure_logging
from worker.store.connection import connect
from worker.store.keys import AccountKeys, Lane

EXIT_OK = 0
EXIT_FAILED = 1  # the operation failed for a reason printed (e.g. the token endpoint refused)
EXIT_USAGE = 2  # bad option, bad input file or job, bad configuration
EXIT_NO_REDIS = 3  # Redis cannot be reached
EXIT_HALTED = 4  # an account is halted by a credential error
# Redis answered but refused: the user lacks an ACL permission, it is out of
# memory, a read-only replica, a Cluster node that does not hold the key, ...
EXIT_REDIS_REFUSED = 5
EXIT_INTERRUPTED = 130  # stopped at once by a second SIGINT or SIGTERM, as shells report it
EXIT_CODES_HELP = (
    "Exit codes: 0 ok, 1 failed, 2 bad input or config, 3 no Redis (unreachable, or a wrong "
    "or missing password), 4 account halted, 5 Redis refused a command (ACL permission, "
    "out of memory, read-only replica), 130 stopped at once by a second Ctrl-C."
)

app = typer.Typer(
    name="ozonetel-purge",
    help="Delete records from Ozonetel outbound campaigns in bulk, within the vendor's "
    "100-per-minute limit, coordinated through Redis (REDIS_URL).\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    # Rich tracebacks print local variables, which may hold a token.
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

AccountOption = Annotated[
    str | None,
    typer.Option(
        "--account",
        "-a",
        help="Account name (default: the first configured, OZP_ACCOUNT or 'default').",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]


def fail(code: int, message: object) -> NoReturn:
    # A message may quote a value read from Redis or a file: shown as text.
    err.print(f"error: {visible(message)}", markup=False)
    raise typer.Exit(code)


def execute(work: Callable[[Settings], Coroutine[Any, Any, int]]) -> NoReturn:
    """Load the settings, run ``work`` on a fresh event loop, map failures to exit codes."""
    try:
        code = asyncio.run(work(load_settings()))
    except (ConfigError, BadInput) as exc:
        fail(EXIT_USAGE, exc)
    except RedisUnavailable as exc:
        fail(EXIT_NO_REDIS, exc)
    # Before ConnectionError, which it subclasses: a password changed or
    # revoked while we ran (at start, connect() reports it).
    except (AuthenticationError, AuthorizationError) as exc:
        fail(EXIT_NO_REDIS, f"Redis refused the credentials of REDIS_URL: {exc}")
    except (RedisConnectionError, RedisTimeoutError) as exc:
        fail(EXIT_NO_REDIS, f"lost the connection to Redis: {exc}")
    except NoPermissionError as exc:
        fail(
            EXIT_REDIS_REFUSED,
            f"the Redis user lacks a permission: {exc} (the README lists the ACL the product "
            "needs)",
        )
    except RedisError as exc:
        # redis-py's messages name the command and the reason, never the
        # arguments, so they hold no token, phone or password.
        fail(EXIT_REDIS_REFUSED, f"Redis refused a command: {type(exc).__name__}: {exc}")
    except AccountHalted as exc:
        fail(EXIT_HALTED, f"{exc} (fix the credentials, then `ozonetel-purge resume`)")
    except TokenUnavailable as exc:
        fail(EXIT_FAILED, f"{exc}; try again in {exc.retry_after_s:.0f} s")
    except asyncio.CancelledError:
        fail(EXIT_INTERRUPTED, "stopped at once; unfinished jobs are taken over by other workers")
    raise typer.Exit(code)


@contextlib.asynccontextmanager
async def connected(settings: Settings) -> AsyncIterator[Redis]:
    redis = await connect(settings.redis_url_or_default, settings.redis_mode)
    try:
        yield redis
    finally:
        await redis.aclose()


def account_keys(settings: Settings, account: str | None) -> AccountKeys:
    """Keys of a configured account; an unknown name is a ConfigError (exit 2)."""
    return AccountKeys(settings.key_prefix, settings.account(account).name)


def lane_of(urgent: bool) -> Lane:
    return "urgent" if urgent else "bulk"


def stop_on_signals() -> asyncio.Event:
    """An event set by the first SIGINT or SIGTERM; a second one stops the command at once.

    The first lets ``run`` finish its requests in flight (up to the request
    timeout); an operator who cannot wait presses Ctrl-C again. Jobs still
    held then are taken over by another worker after the visibility timeout.
    """
    stopping = asyncio.Event()
    command = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stopping.is_set() and command is not None:
            command.cancel()
        stopping.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    return stopping


async def wait_or_stop(stopping: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless stopped; True if it is time to stop."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
    return stopping.is_set()


def print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, sort_keys=False) + "\n")
    sys.stdout.flush()


def _version(show: bool) -> None:
    if show:
        out.print(f"ozonetel-purge {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def main_options(
    log_level: Annotated[
        Literal["debug", "info", "warning", "error"] | None,
        typer.Option(
            help="Logs go to stderr, one JSON object per line off a terminal "
            "(OZP_LOG_LEVEL, default info; OZP_LOG_FORMAT=json|console to choose)."
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print it.")
    ] = False,
) -> None:
    """Options of every command (the app's help text is the Typer's)."""
    try:
        env_level, json_format = log_options()
    except ConfigError as exc:
        fail(EXIT_USAGE, exc)
    configure_logging(level=log_level or env_level or "info", json=json_format)
