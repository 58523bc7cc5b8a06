"""How the CLI shows things to a person: rich tables and one-line summaries.

Pure functions from the documented JSON views (``status --json``,
``results --json``, ``dlq list --json``, ``token status --json``) to rich
renderables, so that what a person reads and what a script parses are the
same facts. Phones are shown in full: the operator owns that data, and the
logs (which may travel further) mask them instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from rich.table import Table
from rich.text import Text


def duration(seconds: float | None) -> str:
    """``1h02m03s`` style; ``-`` for unknown; negative means ``ago``."""
    if seconds is None:
        return "-"
    whole = round(abs(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
    if not hours and not minutes:
        text = f"{secs}s"
    return f"{text} ago" if seconds < 0 else text


def _state(account: dict[str, Any]) -> Text:
    if account["halted"]:
        return Text(f"HALTED: {account['halted']}", style="bold red")
    if account["paused"]:
        return Text("paused", style="yellow")
    if account["token"]["waiting"]:
        return Text(f"waiting: {account['token']['waiting']}", style="yellow")
    return Text("running", style="green")


# The rows of the status table: one metric per row, one account per column,
# so that it stays readable in an 80-column terminal at 3 a.m.
_STATUS_ROWS: tuple[tuple[str, Callable[[dict[str, Any]], str | Text]], ...] = (
    ("state", _state),
    ("queued urgent", lambda a: str(a["queued"]["urgent"])),
    ("queued bulk", lambda a: str(a["queued"]["bulk"])),
    ("in flight", lambda a: str(a["in_flight"])),
    ("delayed (retries)", lambda a: str(a["delayed"])),
    ("done", lambda a: str(a["done"])),
    ("dead", lambda a: Text(str(a["dead"]), style="red" if a["dead"] else "")),
    ("sent last minute", lambda a: str(a["rate_last_min"])),
    ("ETA", lambda a: duration(a["eta_s"])),
    ("token expires in", lambda a: duration(a["token"]["expires_in_s"])),
    (
        "tokens last hour",
        lambda a: f"{a['token']['generations_last_hour']} of {a['token']['budget']}",
    ),
)


def status_table(report: dict[str, Any]) -> Table:
    accounts: dict[str, dict[str, Any]] = report["accounts"]
    table = Table(title="ozonetel-purge status", title_justify="left")
    table.add_column("account")
    for name in accounts:
        table.add_column(name, justify="right")
    for label, cell in _STATUS_ROWS:
        table.add_row(label, *(cell(account) for account in accounts.values()))
    if not accounts:
        table.caption = "no accounts configured or seen in Redis"
    return table


def _when(iso: str | None) -> str:
    """An ISO 8601 UTC time from the JSON views, to the second, for a table."""
    return iso[:19].replace("T", " ") if iso else "-"


def results_table(views: Iterable[dict[str, Any]]) -> Table:
    table = Table(title="results (oldest first)", title_justify="left")
    for column in ("finished (UTC)", "outcome", "job id", "campaign", "phone", "tries", "message"):
        table.add_column(column)
    for view in views:
        table.add_row(*result_cells(view))
    return table


def result_cells(view: dict[str, Any]) -> list[str | Text]:
    outcome = view["outcome"] or ""
    if view["reason"]:
        outcome = f"{outcome} ({view['reason']})"
    style = "red" if view["outcome"] == "dead" else "green"
    return [
        _when(view["finished_at"]),
        Text(outcome, style=style),
        view["job_id"] or "-",
        view["campaign"] or "",
        view["phone"] or "",
        str(view["attempts"]),
        view["message"],
    ]


def result_line(view: dict[str, Any]) -> Text:
    """One result as one line, for ``results --follow``."""
    return Text("  ").join(Text(c) if isinstance(c, str) else c for c in result_cells(view))


def dead_letters_table(views: Iterable[dict[str, Any]]) -> Table:
    table = Table(title="dead letters (oldest first)", title_justify="left")
    for column in ("failed (UTC)", "reason", "job id", "campaign", "phone", "tries", "message"):
        table.add_column(column)
    for view in views:
        table.add_row(
            _when(view["failed_at"]),
            Text(view["reason"] or "", style="red"),
            view["job_id"] or "-",
            view["campaign"] or "",
            view["phone"] or "",
            str(view["attempts"]),
            view["message"],
        )
    return table


def token_lines(health: dict[str, Any]) -> list[str]:
    """``token status`` for a person: never the token, only facts about it."""
    name = health["account"]
    if health["auth_mode"] == "apikey":
        lines = [f"account {name}: authenticates with its API key (no token is used)"]
    elif not health["present"]:
        lines = [f"account {name}: no token stored yet (one is generated on first use)"]
    else:
        expires = health["expires_in_s"]
        state = f"expires in {duration(expires)}" if expires >= 0 else "EXPIRED"
        lines = [
            f"account {name}: token generation {health['generation']}, "
            f"age {duration(health['age_s'])}, {state}"
        ]
    lines.append(
        f"generations in the last hour: {health['generations_last_hour']} "
        f"of {health['budget']} allowed"
    )
    if health["waiting"]:
        lines.append(f"waiting: {health['waiting']}")
    if health["halted"]:
        lines.append(f"HALTED: {health['halted']} (fix the credentials, then `resume`)")
    return lines
