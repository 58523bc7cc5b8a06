"""``dlq list``, ``dlq replay`` and ``dlq purge``: the dead letters."""

from __future__ import annotations

from typing import Annotated

import typer

from worker.cli.app import (
    EXIT_OK,
    EXIT_USAGE,
    AccountOption,
    JsonOption,
    account_keys,
    connected,
    err,
    execute,
    fail,
    out,
    print_json,
)
from worker.cli.safe_text import safe_text
from worker.cli.views import dead_letters_table
from worker.config.settings import Settings
from worker.results.dead_letters import letters, purge, replay
from worker.vendor.outcomes import DEAD_REASONS

dlq_app = typer.Typer(
    help="Dead letters: jobs that failed for their own reasons (no_record, "
    "invalid_campaign, ...). List them, replay them as new jobs, or purge them.",
    no_args_is_help=True,
)


def _known_reason(reason: str | None) -> str | None:
    # A mistyped reason would match nothing and look like an empty queue.
    if reason is not None and reason not in DEAD_REASONS:
        raise typer.BadParameter(f"not a dead-letter reason; one of {', '.join(DEAD_REASONS)}")
    return reason


ReasonOption = Annotated[
    str | None,
    typer.Option(help=f"Only this reason: {', '.join(DEAD_REASONS)}.", callback=_known_reason),
]


@dlq_app.command("list")
def dlq_list(
    reason: ReasonOption = None, json_output: JsonOption = False, account: AccountOption = None
) -> None:
    """List the dead letters, oldest first."""

    async def work(settings: Settings) -> int:
        keys = account_keys(settings, account)
        views = []
        async with connected(settings) as redis:
            async for letter in letters(redis, keys, reason):
                if json_output:
                    print_json(letter.view())  # streamed: there may be millions
                else:
                    views.append(letter.view())
        if views:
            out.print(dead_letters_table(views))
        elif not json_output:
            err.print(safe_text(f"no dead letters for account {keys.account}"))
        return EXIT_OK

    execute(work)


@dlq_app.command("replay")
def dlq_replay(
    reason: ReasonOption = None,
    account: AccountOption = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Replay at most N.")] = None,
) -> None:
    """Queue dead letters again as new jobs (replay_of = the old id) and remove them.

    Fix the cause first (a campaign name, the account's numbers), or they die again.
    Letters dead as 'malformed' cannot be replayed and are left in place.
    """

    async def work(settings: Settings) -> int:
        keys = account_keys(settings, account)
        async with connected(settings) as redis:
            counts = await replay(redis, keys, reason, limit)
        out.print(counts.summary(), markup=False)
        return EXIT_OK

    execute(work)


@dlq_app.command("purge")
def dlq_purge(
    reason: ReasonOption = None,
    account: AccountOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Required: purging cannot be undone.")] = False,
) -> None:
    """Delete dead letters for good (their lines in `results` stay)."""
    if not yes:
        fail(EXIT_USAGE, "purging dead letters cannot be undone: add --yes")

    async def work(settings: Settings) -> int:
        keys = account_keys(settings, account)
        async with connected(settings) as redis:
            deleted = await purge(redis, keys, reason)
        out.print(f"purged {deleted}", markup=False)
        return EXIT_OK

    execute(work)
