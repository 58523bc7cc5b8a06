"""The rows of a file being drained: its identity, and every row with its line.

A drain names its jobs after the file's content and the row's line,
``<tag>-<line>``, so that running the same command again on the same file
produces the same job ids: the terminal records already written then say
which rows are done, and nothing is sent twice.

The importer (:mod:`worker.importer`) reads the file and validates the rows,
but hands back a job without its line; the line is counted here, in step
with it, by a second, light reader that applies the importer's two rules:
a row starts on the line after the previous row ends (a quoted cell may
span lines), and a blank row yields nothing. Every rejected row carries the
importer's own line number, which is checked against ours: if the two ever
disagreed, the drain stops instead of naming jobs after the wrong lines.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

from worker.errors import BadInput
from worker.importer import Format, Rejected, open_source
from worker.jobs import Job

TAG_HEX = 12
_DIGEST_CHUNK = 1 << 20

Row = tuple[int, Job | Rejected]


def file_tag(path: Path) -> str:
    """12 hex characters of a blake2b digest of the file's bytes, read in chunks."""
    digest = hashlib.blake2b(digest_size=TAG_HEX // 2)
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(_DIGEST_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror}") from None
    return digest.hexdigest()


def job_id(tag: str, line: int) -> str:
    return f"{tag}-{line}"


def duplicate_field(line: int) -> str:
    """The field of a drain's progress hash that marks a row refused as a duplicate."""
    return f"d:{line}"


def numbered_rows(path: Path, tag: str, campaign: str, normalize: bool) -> Iterator[Row]:
    """Every non-blank row of the file, in order: its line and its job (id
    ``<tag>-<line>``) or why it was refused. Raises :class:`BadInput` for the file."""
    with open_source(str(path)) as source:
        fmt = source.detect_format()
        lines = _row_lines(path, fmt)
        for row in source.jobs(campaign, normalize):
            line = next(lines, None)
            if line is None or (isinstance(row, Rejected) and row.line != line):
                raise RuntimeError(
                    f"{path}: the drain and the importer disagree on line numbers "
                    f"(row at line {getattr(row, 'line', '?')}, counted {line}); "
                    "this is a bug: please report it with the file"
                )
            if isinstance(row, Job):
                # The importer's jobs carry nothing but these four fields.
                yield line, Job(job_id(tag, line), row.campaign, row.phone, row.name)
            else:
                yield line, row


def _row_lines(path: Path, fmt: Format) -> Iterator[int]:
    """The first line of each non-blank row, as :meth:`Source.jobs` numbers them."""
    # Opened as the importer opens it: a BOM is dropped, line ends kept as they are.
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as text:
        if fmt == "jsonl":
            yield from (n for n, raw in enumerate(text, start=1) if raw.strip())
        else:
            yield from _csv_row_lines(text)


def _csv_row_lines(text: io.TextIOBase) -> Iterator[int]:
    reader = csv.reader(text)
    try:
        if next(reader, None) is None:
            return
        last_line = reader.line_num
        for cells in reader:
            line, last_line = last_line + 1, reader.line_num
            if "".join(cells).strip():
                yield line
    except csv.Error:
        # The importer reports the broken file itself, in its own words.
        return
