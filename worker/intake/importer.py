"""Reading a file of deletions (CSV or JSONL) into jobs, streamed, and queueing them.

The file is read row by row through a generator: a suppression list of
millions of numbers never sits in memory, and the queue takes the jobs in
batches of :data:`~worker.queue.lanes.ENQUEUE_BATCH` as they come.

A bad row never stops the import: it is handed back as :class:`Rejected`,
with the line it starts on, a one-line reason and at most
:data:`~worker.intake.lines.EXCERPT_CHARS` of its text. Bad rows include those that fail
:func:`worker.queue.jobs.make_job`, bytes that are not UTF-8, rows longer than
:data:`~worker.intake.lines.MAX_ROW_CHARS` (read past in pieces, never held whole, so a file
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
from typing import IO, Any, Literal

from worker.errors import BadInput
from worker.intake.csv_cells import SafeCsvWriter
from worker.intake.lines import (
    MAX_ROW_CHARS,
    BoundedLines,
    RowTooLong,
    excerpt,
)
from worker.queue.jobs import Job, make_job, new_job_ids
from worker.queue.lanes import QUEUED, Queue
from worker.store.keys import Lane

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
    except RowTooLong:
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
    lines = BoundedLines(text, quoted_cells=True)
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
        except RowTooLong as exc:
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
    lines = BoundedLines(text, quoted_cells=False)
    checked = False
    while True:
        lines.begin = lines.count
        line = lines.count + 1
        try:
            raw = next(lines).rstrip("\r\n")
        except StopIteration:
            return
        except RowTooLong as exc:
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
    would take for a formula get a leading ``'`` (see :mod:`worker.intake.csv_cells`)."""

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
