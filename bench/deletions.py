"""Generated deletion lists: the CSV the importer reads and the campaigns the simulator holds.

Numbers are distinct and derived from their row index, so the list the
workers delete and the campaign the simulator holds agree without being
stored twice in memory.
"""

from __future__ import annotations

import json
from pathlib import Path

CAMPAIGN = "bench"
# Rows written per write() call: large enough that writing a million rows
# takes about a second, small enough not to build the whole file in memory.
_CHUNK = 10_000


def phone(index: int) -> str:
    # Ten digits starting with 9, as an Indian mobile number: valid for the
    # product's validation, distinct for every index below 10**9.
    return f"9{index:09d}"


def write_csv(path: Path, count: int, campaign: str = CAMPAIGN) -> Path:
    """A CSV with a header and ``count`` distinct rows, in the shape `import` documents."""
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("campaignName,phoneNumber,name\n")
        for start in range(0, count, _CHUNK):
            stop = min(start + _CHUNK, count)
            out.write("".join(f"{campaign},{phone(i)},row {i}\n" for i in range(start, stop)))
    return path


def write_campaigns(path: Path, count: int, campaign: str = CAMPAIGN) -> Path:
    """The simulator's campaigns file: the same ``count`` numbers, so every delete succeeds."""
    path.write_text(json.dumps({campaign: [phone(i) for i in range(count)]}), encoding="utf-8")
    return path
