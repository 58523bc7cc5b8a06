"""The command line, ``ozonetel-purge`` (also ``python -m worker``).

Thin, as arq's: each command parses its options, calls the library and
prints. Commands live in small modules by concern; this module is the table
of contents, registering them in the order ``--help`` lists them.
"""

from __future__ import annotations

from worker.cli import dlq, draining, queueing, running, simulate, token, watching
from worker.cli.app import (
    EXIT_FAILED,
    EXIT_HALTED,
    EXIT_NO_REDIS,
    EXIT_OK,
    EXIT_REDIS_REFUSED,
    EXIT_USAGE,
    app,
)

__all__ = [
    "EXIT_FAILED",
    "EXIT_HALTED",
    "EXIT_NO_REDIS",
    "EXIT_OK",
    "EXIT_REDIS_REFUSED",
    "EXIT_USAGE",
    "app",
    "main",
]

app.command()(running.run)
app.command()(queueing.enqueue)
app.command("import")(queueing.import_file)
app.command("drain")(draining.drain_command)
app.command()(watching.status)
app.command()(watching.results)
app.add_typer(dlq.dlq_app, name="dlq")
app.add_typer(token.token_app, name="token")
app.command()(running.pause)
app.command()(running.resume)
app.command()(running.exporter)
app.command()(running.console)
app.command()(simulate.simulate)
app.command()(draining.demo)


def main() -> None:
    app(prog_name="ozonetel-purge")
