"""Reading a file of deletions (CSV or JSONL) into jobs, streamed, and queueing them.

The file is read row by row through a generator: a suppression list of
millions of numbers never sits in memory, and the queue takes the jobs in
batches of :data:`~worker.queue.ENQUEUE_BATCH` as they come.

A bad row never stops the import: it is handed back as :class:`Rejected`,
with the line it starts on, a one-line reason and at most
:data:`EXCERPT_CHARS` of its text. Bad rows include those that fail
:func:`worker.jobs.make_job`, bytes that are not UTF-8, rows longer than
:data:`MAX_ROW_CHARS` (read past in pieces, never held whole, so a file
without line breaks costs no more memory than one row), and JSONL lines that
are not a JSON object (a number, a string, ``null``, an integer of more
digits than Python reads, nesting deeper than :data:`MAX_JSON_DEPTH`).
Problems with the file as a whole (missing, empty, no phone column) raise
:class:`~worker.errors.BadInput`; the header is checked before the first
batch is queued, so a wrong file queues nothing.

Accepted columns (CSV header or JSONL keys), any case, with or without
``_``/``-``/spaces: phone (``phoneNumber``, ``phone``, ``phone_number``,
``number``, ``mobile``), campaign (``campaignName``, ``campaign``,
``campaign_name``) and ``name``. Other columns are ignored.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import IO, Any, Literal, NoReturn

from worker.csv_cells import SafeCsvWriter
from worker.errors import BadInput
from worker.jobs import Job, make_job, new_job_ids
from worker.keys import Lane
from worker.queue import QUEUED, Queue

Format = Literal["csv", "jsonl"]

_PHONE_COLUMNS = frozenset({"phonenumber", "phone", "number", "mobile", "mobilenumber"})
_CAMPAIGN_COLUMNS = frozenset({"campaignname", "campaign"})
_NAME_COLUMNS = frozenset({"name"})
_SEPARATORS = re.compile(r"[\s_\-]")
_EXTENSIONS: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_NO_CAMPAIGN = "no campaign column: name one campaignName, or pass --campaign"
# Job ids drawn at once: one draw of randomness per id was a tenth of an import.
_IDS_PER_DRAW = 1024
# json.loads without its per-call checks of the arguments.
_decode_json = json.JSONDecoder().decode
# Enough of the file's start to tell JSON objects from a CSV header.
_SNIFF_BYTES = 64
# A row (all its lines) longer than this is refused unread: a phone, a
# campaign and a name take a few hundred characters, and a row is held in
# memory whole while it is parsed.
MAX_ROW_CHARS = 65_536
# How much of a refused row's text is kept for the rejects file and report.
EXCERPT_CHARS = 200
# JSON nested deeper than this is refused before it is decoded: how deep the
# decoder can go before a RecursionError depends on the stack it is called
# from, and a row's verdict must not. A row is a flat object.
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]")
# Longer than any spelling of our columns: not worth a place in the cache.
_MAX_COLUMN_NAME = 64
_NOT_UTF8 = "not UTF-8 text"
_NOT_JSON_OBJECT = "not a JSON object"
_TOO_DEEP = f"{_NOT_JSON_OBJECT}: nested more than {MAX_JSON_DEPTH} deep"
# Bytes that are not UTF-8 are decoded as lone surrogates (surrogateescape):
# a row holding one is refused, not the whole file.
_UNDECODABLE = re.compile(r"[\udc80-\udcff]")
# What an excerpt shows escaped: control characters other than TAB, LF and
# CR, and any lone surrogate (a byte that is not UTF-8, or a stray one).
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


@dataclass(frozen=True)
class Rejected:
    """A row that is not a valid job: its first line in the file, why (one line),
    and an excerpt of its text (see :func:`excerpt`)."""

    line: int
    reason: str
    raw: str


@dataclass
class ImportCounts:
    queued: int = 0
    duplicates: int = 0
    rejected: int = 0

    def summary(self) -> str:
        return (
            f"queued {self.queued}, duplicates skipped {self.duplicates}, rejected {self.rejected}"
        )


class _CountingReader(io.RawIOBase):
    """Counts the bytes pulled from the file, for the progress bar."""

    def __init__(self, inner: IO[bytes]) -> None:
        self._inner = inner
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        self.bytes_read += len(data)
        return len(data)


class Source:
    """An open input file (or stdin), ready to be read as jobs once."""

    def __init__(
        self, binary: IO[bytes], name: str, total_bytes: int | None, owned: bool = True
    ) -> None:
        self.name = name
        self.total_bytes = total_bytes
        self._binary = binary
        self._owned = owned
        self._counter = _CountingReader(binary)
        self._buffered = io.BufferedReader(self._counter)

    @property
    def bytes_read(self) -> int:
        return self._counter.bytes_read

    def close(self) -> None:
        # Standard input belongs to the process, not to this import.
        if self._owned:
            self._binary.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def detect_format(self) -> Format:
        """By extension, else by content: a JSON object first means JSONL."""
        by_extension = _EXTENSIONS.get(os.path.splitext(self.name)[1].lower())
        if by_extension is not None:
            return by_extension
        start = self._buffered.peek(_SNIFF_BYTES)[:_SNIFF_BYTES]
        text = start.decode("utf-8", errors="ignore").lstrip("\ufeff \t\r\n")
        return "jsonl" if text.startswith("{") else "csv"

    def jobs(self, default_campaign: str = "", normalize: bool = False) -> Iterator[Job | Rejected]:
        """Every row as a job or a rejection; raises :class:`BadInput` for the file."""
        for _, row in self.numbered_jobs(default_campaign, normalize):
            yield row

    def numbered_jobs(
        self, default_campaign: str = "", normalize: bool = False
    ) -> Iterator[tuple[int, Job | Rejected]]:
        """Every non-blank row with the line it starts on, as a job or a rejection."""
        fmt = self.detect_format()
        # utf-8-sig: spreadsheets like to start their CSV exports with a BOM.
        # surrogateescape: a byte that is not UTF-8 spoils its row, not the file.
        text = io.TextIOWrapper(
            self._buffered, encoding="utf-8-sig", errors="surrogateescape", newline=""
        )
        # Without a campaign column and without --campaign every row would be
        # rejected: that is the wrong file or a forgotten option, not bad rows.
        default_campaign = default_campaign.strip()
        need_campaign = not default_campaign
        rows = _csv_rows(text, need_campaign) if fmt == "csv" else _jsonl_rows(text, need_campaign)
        ids: list[str] = []
        for row in rows:
            if isinstance(row, Rejected):
                yield row.line, row
                continue
            line, phone, campaign, name, raw = row
            if not ids:
                ids = new_job_ids(_IDS_PER_DRAW)
            try:
                job = make_job(
                    campaign.strip() or default_campaign,
                    phone,
                    name.strip(),
                    ids.pop(),
                    normalize,
                    caller_id=False,
                )
            except BadInput as exc:
                text_of = raw if isinstance(raw, str) else _csv_line(raw)
                yield line, Rejected(line, str(exc), excerpt(text_of))
                continue
            yield line, job


def open_source(path: str, stdin: IO[bytes] | None = None) -> Source:
    """Open ``path`` for reading (``-``: ``stdin``); a missing file is :class:`BadInput`."""
    if path == "-":
        if stdin is None:
            raise BadInput("no standard input to read")
        return Source(stdin, "<stdin>", None, owned=False)
    try:
        # Opened from synchronous code by the CLI, before the event loop starts.
        binary = open(path, "rb")  # noqa: SIM115 - the Source owns and closes it
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot open: {exc.strerror}") from None
    return Source(binary, path, os.fstat(binary.fileno()).st_size)


# Bounded: a JSONL file could bring a new key on every line.
@functools.lru_cache(maxsize=256)
def _column(key: str) -> str | None:
    if len(key) > _MAX_COLUMN_NAME:
        return None
    folded = _SEPARATORS.sub("", key.strip().lower())
    if folded in _PHONE_COLUMNS:
        return "phone"
    if folded in _CAMPAIGN_COLUMNS:
        return "campaign"
    if folded in _NAME_COLUMNS:
        return "name"
    return None


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


class _RowTooLong(BadInput):
    """Raised by :class:`_Lines` in place of a row too long to keep; caught by
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


class _Lines:
    """The file's lines for a row reader: counted, checked for bytes that are
    not UTF-8, and bounded.

    The row reader sets :attr:`begin` (the lines before the row it is about
    to read) before each row; a CSV row that goes on past its first line is
    inside a quoted cell. A row longer than :data:`MAX_ROW_CHARS` (its last
    line break not counted) is read
    past in pieces of that size, to its end, and :class:`_RowTooLong` is
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

    def __iter__(self) -> _Lines:
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
        raise _RowTooLong(chars, head)


# A row read: its first line, phone, campaign and name as written, and what
# its raw text is made from (a CSV row's cells, a JSONL line), which is only
# needed, and so only built, when the row is rejected.
_Row = tuple[int, str, str, str, "list[str] | str"]


def _csv_picker(columns: Sequence[str | None]) -> Callable[[list[str]], tuple[str, str, str]]:
    """Phone, campaign and name from a row's cells; a column named twice: the last one."""
    at = {name: i for i, name in enumerate(columns) if name is not None}
    # A column the header lacks reads as an empty cell past the row's end.
    indexes = (at["phone"], at.get("campaign", len(columns)), at.get("name", len(columns)))
    pick = itemgetter(*indexes)
    needed = max(indexes) + 1

    def picked(cells: list[str]) -> tuple[str, str, str]:
        if len(cells) < needed:
            cells = cells + [""] * (needed - len(cells))
        return pick(cells)  # type: ignore[no-any-return]

    return picked


def _csv_header(reader: Iterator[list[str]], need_campaign: bool) -> list[str | None]:
    try:
        header = next(reader, None)
    except _RowTooLong:
        raise BadInput(f"the header is longer than {MAX_ROW_CHARS} characters") from None
    except csv.Error as exc:
        raise BadInput(f"not valid CSV in the header: {exc}") from None
    if header is None:
        raise BadInput("the file is empty: expected a header naming a phoneNumber column")
    columns = [_column(cell) for cell in header]
    if "phone" not in columns:
        raise BadInput(
            f"no phone column in the header {excerpt(repr(header))}: "
            "name one phoneNumber (or phone, number, mobile)"
        )
    if need_campaign and "campaign" not in columns:
        raise BadInput(_NO_CAMPAIGN)
    return columns


def _csv_rows(text: io.TextIOWrapper, need_campaign: bool) -> Iterator[_Row | Rejected]:
    lines = _Lines(text, quoted_cells=True)
    reader = csv.reader(lines)
    columns = _csv_header(reader, need_campaign)
    width = len(columns)
    pick = _csv_picker(columns)
    while True:
        # A quoted cell may span lines: the row starts after the previous one.
        lines.begin = begin = lines.count
        line = begin + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except _RowTooLong as exc:
            yield Rejected(line, str(exc), exc.excerpt)
            continue
        except csv.Error as exc:
            yield Rejected(line, f"not valid CSV: {exc}", excerpt(lines.head))
            continue
        if lines.undecodable_at > begin:
            yield Rejected(line, _NOT_UTF8, excerpt(_csv_line(cells)))
            continue
        if len(cells) > width:
            if "".join(cells).strip():
                yield Rejected(line, f"expected at most {width} columns", excerpt(_csv_line(cells)))
            continue
        phone, campaign, name = pick(cells)
        # A row without a phone is seldom seen: only then is it worth
        # asking whether the whole row is blank, to be skipped.
        if not phone.strip() and not "".join(cells).strip():
            continue
        yield line, phone, campaign, name, cells


def _csv_line(cells: list[str]) -> str:
    out = io.StringIO()
    # The terminator is what makes the writer quote a cell holding a newline.
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue().removesuffix("\n")


def _jsonl_rows(text: io.TextIOWrapper, need_campaign: bool) -> Iterator[_Row | Rejected]:
    lines = _Lines(text, quoted_cells=False)
    checked = False
    while True:
        lines.begin = lines.count
        line = lines.count + 1
        try:
            raw = next(lines).rstrip("\r\n")
        except StopIteration:
            return
        except _RowTooLong as exc:
            yield Rejected(line, str(exc), exc.excerpt)
            continue
        if not raw.strip():
            continue
        if lines.undecodable_at == line:
            yield Rejected(line, _NOT_UTF8, excerpt(raw))
            continue
        # Counting brackets is cheap; the depth is worked out only past the limit.
        if raw.count("[") + raw.count("{") > MAX_JSON_DEPTH and _json_depth(raw) > MAX_JSON_DEPTH:
            yield Rejected(line, _TOO_DEEP, excerpt(raw))
            continue
        try:
            value = _decode_json(raw)
        except RecursionError:
            yield Rejected(line, _TOO_DEEP, excerpt(raw))
            continue
        except ValueError:
            # Also an integer of more digits than int() takes from text.
            yield Rejected(line, _NOT_JSON_OBJECT, excerpt(raw))
            continue
        if not isinstance(value, dict):
            yield Rejected(line, _NOT_JSON_OBJECT, excerpt(raw))
            continue
        fields: dict[str, str] = {}
        problem = None
        for key, cell in value.items():
            name = _column(key)  # JSON keys are strings
            if name is None:
                continue
            # A number written without quotes is accepted as its digits; a
            # float or a bool is not a phone number or a name.
            if isinstance(cell, str) or (isinstance(cell, int) and not isinstance(cell, bool)):
                fields[name] = str(cell)
            elif cell is not None:
                # The key as written, unless it is odd enough to spoil a one-line reason.
                label = key if key.isprintable() and len(key) <= _MAX_COLUMN_NAME else name
                problem = f"{label} must be a string"
        # The first object stands for the file: without any phone key, the
        # file is the wrong one, and nothing should be queued from it.
        if not checked:
            checked = True
            if "phone" not in fields and problem is None:
                raise BadInput(
                    f"line {line}: no phone field: name one phoneNumber (or phone, number, mobile)"
                )
            if need_campaign and "campaign" not in fields:
                raise BadInput(f"line {line}: {_NO_CAMPAIGN}")
        if problem is not None:
            yield Rejected(line, problem, excerpt(raw))
            continue
        get = fields.get
        yield line, get("phone", ""), get("campaign", ""), get("name", ""), raw


def _json_depth(raw: str) -> int:
    """How deep the brackets of a JSON text go, those inside strings not counted."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", raw))
    depth = deepest = 0
    for bracket in brackets:
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


async def import_jobs(
    queue: Queue,
    rows: Iterable[Job | Rejected],
    lane: Lane = "bulk",
    on_reject: Callable[[Rejected], None] | None = None,
    on_batch: Callable[[ImportCounts], None] | None = None,
) -> ImportCounts:
    """Queue the valid rows in batches; count what was queued, skipped and rejected.

    Only counts are kept, never the job ids, so memory does not grow with the file.
    """
    counts = ImportCounts()

    def jobs() -> Iterator[Job]:
        for row in rows:
            if isinstance(row, Rejected):
                counts.rejected += 1
                if on_reject is not None:
                    on_reject(row)
            else:
                yield row

    def settled(batch: Sequence[Job], verdicts: str) -> None:
        queued = verdicts.count(QUEUED)
        counts.queued += queued
        counts.duplicates += len(verdicts) - queued
        if on_batch is not None:
            on_batch(counts)

    await queue.enqueue_stream(jobs(), lane, settled)
    return counts


class RejectsWriter:
    """The ``--rejects`` file: CSV of line, reason, raw; cells that a spreadsheet
    would take for a formula get a leading ``'`` (see :mod:`worker.csv_cells`)."""

    def __init__(self, path: str) -> None:
        try:
            # Written row by row as the import goes, closed by close().
            self._file = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as exc:
            raise BadInput(f"{path}: cannot write the rejects file: {exc.strerror}") from None
        self._writer = SafeCsvWriter(self._file)
        self._writer.writerow(["line", "reason", "raw"])

    def write(self, rejected: Rejected) -> None:
        self._writer.writerow([rejected.line, rejected.reason, rejected.raw])

    def close(self) -> None:
        self._file.close()
