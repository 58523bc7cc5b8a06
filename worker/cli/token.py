"""``token status`` and ``token refresh``: the account's shared API token, never shown."""

from __future__ import annotations

import typer

from worker.accounts.status import token_health
from worker.cli.app import (
    EXIT_OK,
    AccountOption,
    JsonOption,
    account_keys,
    connected,
    execute,
    out,
    print_json,
)
from worker.cli.views import token_lines
from worker.config.settings import Settings

token_app = typer.Typer(
    help="The account's API token, shared by every worker through Redis. "
    "Never printed; the vendor allows 10 generations per hour.",
    no_args_is_help=True,
)


@token_app.command("status")
def token_status(account: AccountOption = None, json_output: JsonOption = False) -> None:
    """Token age, expiry, generation, budget used, and why it is waiting or halted."""

    async def work(settings: Settings) -> int:
        keys = account_keys(settings, account)
        async with connected(settings) as redis:
            health = await token_health(redis, keys, settings.account(account))
        if json_output:
            print_json(health)
        else:
            for line in token_lines(health):
                out.print(line)
        return EXIT_OK

    execute(work)


@token_app.command("refresh")
def token_refresh(account: AccountOption = None) -> None:
    """Generate a new token now (one of the 10 per hour), once across all workers.

    The old token stops working at the vendor at once; workers pick up the new one.
    """

    async def work(settings: Settings) -> int:
        # Imported here: loading aiohttp costs every other command a quarter second.
        from worker.tokens.refresh import force_refresh

        settings.account(account).require_credentials()
        async with connected(settings) as redis:
            health = await force_refresh(redis, settings, settings.account(account))
        for line in token_lines(health):
            out.print(line)
        return EXIT_OK

    execute(work)
