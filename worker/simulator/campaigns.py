"""Loading campaigns (name -> phone numbers) from JSON or CSV files.

Accepted shapes:

- JSON ``{"campaigns": {"name": ["num", ...]}}`` or plain ``{"name": ["num", ...]}``;
- CSV with a header naming the columns ``campaignName`` and ``phoneNumber``
  (any case, any order, other columns ignored), one number per row.

Every problem is a ``ValueError`` whose message is one line naming the file,
so a command line can print it as it is.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

Campaigns = dict[str, frozenset[str]]

CAMPAIGN_COLUMN = "campaignname"
PHONE_COLUMN = "phonenumber"


def load_campaigns(path: str | Path) -> Campaigns:
    """Read a campaigns file; the format follows the suffix, else the first character."""
    source = Path(path)
    try:
        # utf-8-sig: spreadsheets like to start their CSV exports with a BOM.
        text = source.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{source}: cannot read campaigns file: {exc}") from exc
    if not text.strip():
        raise ValueError(f"{source}: the campaigns file is empty")
    suffix = source.suffix.lower()
    if suffix == ".json" or (suffix != ".csv" and text.lstrip().startswith("{")):
        return _from_json(source, text)
    return _from_csv(source, text)


def _from_json(source: Path, text: str) -> Campaigns:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not valid JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(document, dict):
        raise ValueError(f"{source}: expected a JSON object of campaign name -> list of numbers")
    # {"campaigns": [...]} is a plain mapping with a campaign called "campaigns";
    # only an object under that key is the wrapped form.
    wrapped = document.get("campaigns")
    table = wrapped if isinstance(wrapped, dict) and len(document) == 1 else document
    campaigns: Campaigns = {}
    for name, numbers in table.items():
        if not name:
            raise ValueError(f"{source}: a campaign name is empty")
        if not isinstance(numbers, list):
            raise ValueError(f"{source}: campaign {name!r} must map to a list of numbers")
        for number in numbers:
            if not isinstance(number, str):
                raise ValueError(
                    f"{source}: campaign {name!r}: phone number {number!r} must be a string"
                    " (quote it, so leading zeros and + survive)"
                )
            if not number:
                raise ValueError(f"{source}: campaign {name!r} has an empty phone number")
        campaigns[name] = frozenset(numbers)
    return campaigns


def _from_csv(source: Path, text: str) -> Campaigns:
    rows = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(rows)
    except csv.Error as exc:
        raise ValueError(f"{source}: not valid CSV: {exc}") from None
    columns = [column.strip().lower() for column in header]
    if CAMPAIGN_COLUMN not in columns or PHONE_COLUMN not in columns:
        raise ValueError(
            f"{source}: the CSV header must name campaignName and phoneNumber, got {header!r}"
        )
    campaign_at, phone_at = columns.index(CAMPAIGN_COLUMN), columns.index(PHONE_COLUMN)
    found: dict[str, set[str]] = {}
    try:
        for row in rows:
            if not any(cell.strip() for cell in row):
                continue
            line = rows.line_num
            if len(row) <= max(campaign_at, phone_at):
                raise ValueError(f"{source}: line {line}: expected {len(header)} columns")
            # Cells are stripped: "c1, 9876" is a CSV habit, not a number with a space.
            name, number = row[campaign_at].strip(), row[phone_at].strip()
            if not name or not number:
                raise ValueError(f"{source}: line {line}: empty campaignName or phoneNumber")
            found.setdefault(name, set()).add(number)
    except csv.Error as exc:
        raise ValueError(f"{source}: not valid CSV at line {rows.line_num}: {exc}") from None
    return {name: frozenset(numbers) for name, numbers in found.items()}
