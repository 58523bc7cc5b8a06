"""``docs/vendor-api.md`` against ``worker/vendor/outcomes.py``: the page's two
response tables are ``DELETE_ROWS`` and ``TOKEN_ROWS``, row for row, in order,
every column (case, status, message, double-encoded, outcome, reason).

Offline: no Redis, no network. A failure means the page and the classifier
disagree on what the vendor says or what the service does with it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from worker.vendor.outcomes import DELETE_ROWS, TOKEN_ROWS, Outcome, Row

PAGE = Path(__file__).resolve().parent.parent / "docs" / "vendor-api.md"
HEADER = ["case", "`status` field", "`message`", "double-encoded", "outcome", "dead-letter reason"]
NO_REASON = "—"
YES_NO = {"yes": True, "no": False}


def section(text: str, heading: str) -> str:
    """The lines under ``heading`` (a whole line) up to the next heading of its level or above."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    start = lines.index(heading) + 1
    end = next(
        (i for i in range(start, len(lines)) if re.match(rf"#{{1,{level}}} ", lines[i])),
        len(lines),
    )
    return "\n".join(lines[start:end])


def response_table(text: str) -> list[list[str]]:
    """The cells of the one table in ``text`` whose header is :data:`HEADER`."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            current.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif current:
            tables.append(current)
            current = []
    found = [table for table in tables if table[0] == HEADER]
    assert len(found) == 1, f"expected one table headed {HEADER}"
    rule, *rows = found[0][1:]
    assert all(set(cell) <= {"-", ":"} for cell in rule)
    assert all(len(row) == len(HEADER) for row in rows), "a row has the wrong number of cells"
    return rows


def code(cell: str) -> str:
    """The text of a cell that is exactly one code span."""
    match = re.fullmatch(r"`([^`]+)`", cell)
    assert match, f"{cell!r} is not one code span"
    return match.group(1)


def to_row(cells: list[str]) -> Row:
    case, status, message, double, outcome, reason = cells
    assert double in YES_NO, f"double-encoded is yes or no, not {double!r}"
    return Row(
        case=case,
        status=code(status),
        message=code(message),
        double_encoded=YES_NO[double],
        outcome=Outcome(code(outcome)),
        reason=None if reason == NO_REASON else code(reason),
    )


def documented(heading: str) -> list[Row]:
    text = PAGE.read_text(encoding="utf-8")
    return [to_row(cells) for cells in response_table(section(text, heading))]


@pytest.mark.parametrize(
    ("heading", "rows"),
    [("## Delete campaign data", DELETE_ROWS), ("## Generate token", TOKEN_ROWS)],
    ids=["delete", "token"],
)
def test_the_page_holds_the_classifiers_table_row_for_row(
    heading: str, rows: tuple[Row, ...]
) -> None:
    assert documented(heading) == list(rows)
