"""How the CLI shows things to a person: rich tables and one-line summaries.

Pure functions from the documented JSON views (``status --json``,
``results --json``, ``dlq list --json``, ``token status --json``) to rich
renderables, so that what a person reads and what a script parses are the
same facts. Phones are shown in full: the operator owns that data, and the
logs (which may travel further) mask them instead.

Every value read from Redis is shown through :mod:`worker.cli.safe_text`,
as a ``Text`` (rich parses a plain ``str`` cell as markup), and any value a
view may hold (``None``, a number, a string that is not what it should be)
is shown, never raised on: a corrupt entry must not hide the others.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Any

from rich.table import Table
from rich.text import Text

from worker.cli.safe_text import safe_text


def duration(seconds: object) -> str:
    """``1h02m03s`` style; ``-`` for unknown; negative means ``ago``."""
    # Anything but a finite number (None, inf from a corrupt value) is unknown.
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return "-"
    if not math.isfinite(seconds):
        return "-"
    whole = round(abs(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
    if not hours and not minutes:
        text = f"{secs}s"
    return f"{text} ago" if seconds < 0 else text


def _count(value: object) -> Text:
    """A number from a view; anything else shown as it is, or ``-`` if missing."""
    return safe_text(value, placeholder="-")


def _state(account: dict[str, Any]) -> Text:
    token = account.get("token") or {}
    if account.get("halted"):
        return safe_text(f"HALTED: {account['halted']}", style="bold red")
    if account.get("paused"):
        return safe_text(f"paused: {account['paused']}", style="yellow")
    if token.get("waiting"):
        return safe_text(f"waiting: {token['waiting']}", style="yellow")
    return Text("running", style="green")


def _dead(account: dict[str, Any]) -> Text:
    return safe_text(account.get("dead"), style="red" if account.get("dead") else "")


def _tokens_used(account: dict[str, Any]) -> Text:
    token = account.get("token") or {}
    return safe_text(f"{token.get('generations_in_window')} of {token.get('budget')}")


# The rows of the status table: one metric per row, one account per column,
# so that it stays readable in an 80-column terminal at 3 a.m.
_STATUS_ROWS: tuple[tuple[str, Callable[[dict[str, Any]], str | Text]], ...] = (
    ("state", _state),
    ("queued urgent", lambda a: _count((a.get("queued") or {}).get("urgent"))),
    ("queued bulk", lambda a: _count((a.get("queued") or {}).get("bulk"))),
    ("in flight", lambda a: _count(a.get("in_flight"))),
    ("delayed (retries)", lambda a: _count(a.get("delayed"))),
    ("done", lambda a: _count(a.get("done"))),
    ("dead", _dead),
    ("sent last minute", lambda a: _count(a.get("rate_last_min"))),
    ("ETA", lambda a: duration(a.get("eta_s"))),
    ("token expires in", lambda a: duration((a.get("token") or {}).get("expires_in_s"))),
    ("tokens in window", _tokens_used),
)


def status_table(report: dict[str, Any]) -> Table:
    accounts: dict[str, dict[str, Any]] = report["accounts"]
    table = Table(title="ozonetel-purge status", title_justify="left")
    table.add_column("account")
    for name in accounts:
        # Account names come from Redis too (an account only another host knows).
        table.add_column(safe_text(name), justify="right")
    for label, cell in _STATUS_ROWS:
        table.add_row(label, *(cell(account) for account in accounts.values()))
    if not accounts:
        table.caption = "no accounts configured or seen in Redis"
    return table


_ISO_SECOND = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def _when(iso: object) -> Text:
    """An ISO 8601 UTC time from the JSON views, to the second, for a table.

    ``-`` when unknown; a value that is not such a time is shown as it is.
    """
    if isinstance(iso, str) and _ISO_SECOND.match(iso):
        return Text(iso[:19].replace("T", " "))
    return safe_text(iso, placeholder="-")


def results_table(views: Iterable[dict[str, Any]]) -> Table:
    table = Table(title="results (oldest first)", title_justify="left")
    for column in ("finished (UTC)", "outcome", "job id", "campaign", "phone", "tries", "message"):
        table.add_column(column)
    for view in views:
        table.add_row(*result_cells(view))
    return table


def result_cells(view: dict[str, Any]) -> list[Text]:
    outcome = view.get("outcome")
    shown = "" if outcome is None else str(outcome)
    if view.get("reason"):
        shown = f"{shown} ({view['reason']})"
    return [
        _when(view.get("finished_at")),
        safe_text(shown, style="red" if outcome == "dead" else "green"),
        safe_text(view.get("job_id"), placeholder="-"),
        safe_text(view.get("campaign")),
        safe_text(view.get("phone")),
        _count(view.get("attempts")),
        safe_text(view.get("message")),
    ]


def result_line(view: dict[str, Any]) -> Text:
    """One result as one line, for ``results --follow``."""
    return Text("  ").join(result_cells(view))


def dead_letters_table(views: Iterable[dict[str, Any]]) -> Table:
    table = Table(title="dead letters (oldest first)", title_justify="left")
    for column in ("failed (UTC)", "reason", "job id", "campaign", "phone", "tries", "message"):
        table.add_column(column)
    for view in views:
        table.add_row(
            _when(view.get("failed_at")),
            safe_text(view.get("reason"), style="red"),
            safe_text(view.get("job_id"), placeholder="-"),
            safe_text(view.get("campaign")),
            safe_text(view.get("phone")),
            _count(view.get("attempts")),
            safe_text(view.get("message")),
        )
    return table


def token_lines(health: dict[str, Any]) -> list[Text]:
    """``token status`` for a person: never the token, only facts about it."""
    name = health.get("account")
    if health.get("auth_mode") == "apikey":
        lines = [f"account {name}: authenticates with its API key (no token is used)"]
    elif not health.get("present"):
        lines = [f"account {name}: no token stored yet (one is generated on first use)"]
    else:
        expires = health.get("expires_in_s")
        expired = isinstance(expires, int | float) and expires < 0
        state = "EXPIRED" if expired else f"expires in {duration(expires)}"
        lines = [
            f"account {name}: token generation {health.get('generation')}, "
            f"age {duration(health.get('age_s'))}, {state}"
        ]
    lines.append(
        f"generations in the last {duration(health.get('budget_window_s'))}: "
        f"{health.get('generations_in_window')} of {health.get('budget')} allowed"
    )
    if health.get("waiting"):
        lines.append(f"waiting: {health['waiting']}")
    if health.get("halted"):
        lines.append(f"HALTED: {health['halted']} (fix the credentials, then `resume`)")
    return [safe_text(line) for line in lines]
