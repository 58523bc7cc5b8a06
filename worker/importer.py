"""Reading a file of deletions (CSV or JSONL) into jobs, streamed, and queueing them.

The file is read row by row through a generator: a suppression list of
millions of numbers never sits in memory, and the queue takes the jobs in
batches of :data:`~worker.queue.ENQUEUE_BATCH` as they come. Rows that fail
:func:`worker.jobs.make_job` are handed back as :class:`Rejected` with their
line number instead of stopping the import. Problems with the file as a
whole (missing, no phone column, not UTF-8) raise
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


@dataclass(frozen=True)
class Rejected:
    """A row that is not a valid job: its first line in the file, why, and its text."""

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
        fmt = self.detect_format()
        # utf-8-sig: spreadsheets like to start their CSV exports with a BOM.
        text = io.TextIOWrapper(self._buffered, encoding="utf-8-sig", newline="")
        # Without a campaign column and without --campaign every row would be
        # rejected: that is the wrong file or a forgotten option, not bad rows.
        default_campaign = default_campaign.strip()
        need_campaign = not default_campaign
        rows = _csv_rows(text, need_campaign) if fmt == "csv" else _jsonl_rows(text, need_campaign)
        ids: list[str] = []
        try:
            for row in rows:
                if isinstance(row, Rejected):
                    yield row
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
                    )
                except BadInput as exc:
                    yield Rejected(line, str(exc), raw if isinstance(raw, str) else _csv_line(raw))
                    continue
                yield job
        except UnicodeDecodeError:
            raise BadInput(f"{self.name}: not UTF-8 text") from None


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


def _csv_rows(text: io.TextIOWrapper, need_campaign: bool) -> Iterator[_Row | Rejected]:
    reader = csv.reader(text)
    try:
        header = next(reader, None)
        if header is None:
            raise BadInput("the file is empty: expected a header naming a phoneNumber column")
        columns = [_column(cell) for cell in header]
        if "phone" not in columns:
            raise BadInput(
                f"no phone column in the header {header!r}: "
                "name one phoneNumber (or phone, number, mobile)"
            )
        if need_campaign and "campaign" not in columns:
            raise BadInput(_NO_CAMPAIGN)
        width = len(columns)
        pick = _csv_picker(columns)
        last_line = reader.line_num
        for cells in reader:
            # A quoted cell may span lines: the row starts after the previous one.
            line, last_line = last_line + 1, reader.line_num
            if len(cells) > width:
                if "".join(cells).strip():
                    yield Rejected(line, f"expected at most {width} columns", _csv_line(cells))
                continue
            phone, campaign, name = pick(cells)
            # A row without a phone is seldom seen: only then is it worth
            # asking whether the whole row is blank, to be skipped.
            if not phone.strip() and not "".join(cells).strip():
                continue
            yield line, phone, campaign, name, cells
    except csv.Error as exc:
        raise BadInput(f"not valid CSV at line {reader.line_num}: {exc}") from None


def _csv_line(cells: list[str]) -> str:
    out = io.StringIO()
    # The terminator is what makes the writer quote a cell holding a newline.
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue().removesuffix("\n")


def _jsonl_rows(text: io.TextIOWrapper, need_campaign: bool) -> Iterator[_Row | Rejected]:
    checked = False
    for line, raw_line in enumerate(text, start=1):
        raw = raw_line.rstrip("\r\n")
        if not raw.strip():
            continue
        try:
            value = _decode_json(raw)
        except ValueError:
            yield Rejected(line, "not a JSON object", raw)
            continue
        if not isinstance(value, dict):
            yield Rejected(line, "not a JSON object", raw)
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
                problem = f"{key} must be a string"
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
            yield Rejected(line, problem, raw)
            continue
        get = fields.get
        yield line, get("phone", ""), get("campaign", ""), get("name", ""), raw


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
    """The ``--rejects`` file: CSV of line, reason, raw."""

    def __init__(self, path: str) -> None:
        try:
            # Written row by row as the import goes, closed by close().
            self._file = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as exc:
            raise BadInput(f"{path}: cannot write the rejects file: {exc.strerror}") from None
        self._writer = csv.writer(self._file)
        self._writer.writerow(["line", "reason", "raw"])

    def write(self, rejected: Rejected) -> None:
        self._writer.writerow([rejected.line, rejected.reason, rejected.raw])

    def close(self) -> None:
        self._file.close()
