"""An input file's lines, read for the row readers of :mod:`worker.intake.importer`:
counted, checked for bytes that are not UTF-8, and bounded, so that a file
without line breaks, or with one huge quoted cell, costs no more memory than
one row of :data:`MAX_ROW_CHARS`; and what is kept of a refused row.
"""

from __future__ import annotations

import io
import re
from typing import NoReturn

from worker.errors import BadInput

# A row (all its lines) longer than this is refused unread: a phone, a
# campaign and a name take a few hundred characters, and a row is held in
# memory whole while it is parsed.
MAX_ROW_CHARS = 65_536
# How much of a refused row's text is kept for the rejects file and report.
EXCERPT_CHARS = 200
# Bytes that are not UTF-8 are decoded as lone surrogates (surrogateescape):
# a row holding one is refused, not the whole file.
_UNDECODABLE = re.compile(r"[\udc80-\udcff]")
# What an excerpt shows escaped: control characters other than TAB, LF and
# CR, and any lone surrogate (a byte that is not UTF-8, or a stray one).
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def excerpt(text: str, length: int | None = None) -> str:
    """At most :data:`EXCERPT_CHARS` of a refused row's text, safe to write anywhere.

    Bytes that are not UTF-8 show as ``\\xNN``, as do control characters
    other than TAB, LF and CR; a cut is marked with the full length
    (``length``, when ``text`` is only the start of the row).
    """
    length = len(text) if length is None else length
    head = _UNPRINTABLE.sub(_escaped, text[:EXCERPT_CHARS])
    if length > EXCERPT_CHARS:
        head += f"... ({length} characters)"
    return head


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:
        # surrogateescape's stand-in for the byte code - 0xDC00.
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class RowTooLong(BadInput):
    """Raised by :class:`BoundedLines` in place of a row too long to keep; caught by
    the row readers, which turn it into a :class:`Rejected`."""

    def __init__(self, chars: int, head: str) -> None:
        super().__init__(f"row longer than {MAX_ROW_CHARS} characters ({chars})")
        self.excerpt = excerpt(head, chars)


# csv's parser states that matter for where a row ends (its default dialect:
# a quote opens a quoted cell only at the start of a cell, "" inside one is a
# quote, and a row goes on over a line break only inside a quoted cell).
_CELL_START, _IN_CELL, _IN_QUOTES, _QUOTE_IN_QUOTES = range(4)
_AFTER_CHAR = {'"': _IN_QUOTES, ",": _CELL_START}


def _csv_state_after(text: str, state: int) -> int:
    """The parser's state after reading ``text`` in ``state``."""
    at, end = 0, len(text)
    while at < end:
        if state == _IN_QUOTES:
            quote = text.find('"', at)
            if quote < 0:
                return _IN_QUOTES
            state, at = _QUOTE_IN_QUOTES, quote + 1
        elif state == _IN_CELL:
            comma = text.find(",", at)
            if comma < 0:
                return _IN_CELL
            state, at = _CELL_START, comma + 1
        else:
            # At a cell's start, and after a quote inside quotes, alike.
            state = _AFTER_CHAR.get(text[at], _IN_CELL)
            at += 1
    return state


# A line is read at most this much at a time: a row of the limit and its CRLF, whole.
_READ_CAP = MAX_ROW_CHARS + 2
_LINE_BREAKS = "\r\n"


class BoundedLines:
    """The file's lines for a row reader: counted, checked for bytes that are
    not UTF-8, and bounded.

    The row reader sets :attr:`begin` (the lines before the row it is about
    to read) before each row; a CSV row that goes on past its first line is
    inside a quoted cell. A row longer than :data:`MAX_ROW_CHARS` (its last
    line break not counted) is read
    past in pieces of that size, to its end, and :class:`RowTooLong` is
    raised in its place: csv's parser starts afresh at the next call, and
    the next row is read from its first line.
    """

    def __init__(self, text: io.TextIOWrapper, quoted_cells: bool) -> None:
        self._readline = text.readline
        self._quoted_cells = quoted_cells
        self.count = 0  # lines read
        self.begin = 0  # lines before the row being read
        self.head = ""  # the row's first line
        self.undecodable_at = 0  # the last line holding a byte that is not UTF-8
        self._row_chars = 0  # of a row of several lines, from its second line on
        # A piece of a long line ended on a CR that may be half of a CRLF.
        self._cut_cr = False

    def __iter__(self) -> BoundedLines:
        return self

    def __next__(self) -> str:
        line = self._readline(_READ_CAP)
        if self._cut_cr:
            line = self._after_cut_cr(line)
        if not line:
            raise StopIteration
        self.count += 1
        if self.count > self.begin + 1:
            self._go_on_with_row(line)
        else:
            self.head = line
            if len(line) > MAX_ROW_CHARS and len(line.rstrip(_LINE_BREAKS)) > MAX_ROW_CHARS:
                self._refuse_row(line, 0, _CELL_START)
        # isascii() is O(1): only lines with other characters are searched.
        if not line.isascii() and _UNDECODABLE.search(line):
            self.undecodable_at = self.count
        return line

    def _go_on_with_row(self, line: str) -> None:
        """A further line of the row being read (a quoted cell's line break)."""
        before = len(self.head) if self.count == self.begin + 2 else self._row_chars
        if before + len(line.rstrip(_LINE_BREAKS)) > MAX_ROW_CHARS:
            # csv asks for another line only from inside a quoted cell.
            self._refuse_row(line, before, _IN_QUOTES)
        self._row_chars = before + len(line)

    def _after_cut_cr(self, line: str) -> str:
        self._cut_cr = False
        # In universal newlines an LF right after a CR is the same line break.
        return self._readline(_READ_CAP) if line == "\n" else line

    def _refuse_row(self, piece: str, chars: int, state: int) -> NoReturn:
        """Read past the rest of the row that ``piece`` belongs to, then refuse it."""
        head = self.head[:EXCERPT_CHARS]
        while True:
            chars += len(piece)
            if self._quoted_cells:
                state = _csv_state_after(piece, state)
            # A piece shorter than the cap ends at a line break (or the file's end).
            ends_line = len(piece) < _READ_CAP or piece.endswith(("\n", "\r"))
            if ends_line and piece.endswith("\r"):
                self._cut_cr = len(piece) == _READ_CAP
            if ends_line and state != _IN_QUOTES:
                break
            following = self._readline(_READ_CAP)
            if self._cut_cr:
                following = self._after_cut_cr(following)
            if not following:
                break
            if ends_line:
                self.count += 1
            piece = following
        # Counted as the limit counts: without the row's last line break.
        chars -= len(piece) - len(piece.rstrip(_LINE_BREAKS))
        raise RowTooLong(chars, head)
