"""The rows of a file being drained: its identity, and every row with its line.

A drain names its jobs after the file's content and the row's line,
``<tag>-<line>``, so that running the same command again on the same file
produces the same job ids: the terminal records already written then say
which rows are done, and nothing is sent twice.

The rows, their lines and their checks are the importer's
(:meth:`worker.intake.importer.Source.numbered_jobs`): one reader of the file, so
the line a job is named after is the line a rejection reports, however
hostile the file (lines that are not UTF-8, rows too long to keep, quoted
cells over several lines).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from worker.errors import BadInput
from worker.intake.importer import Rejected, open_source
from worker.queue.jobs import Job

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
        for line, row in source.numbered_jobs(campaign, normalize):
            if isinstance(row, Job):
                # The importer's jobs carry nothing but these four fields.
                yield line, Job(job_id(tag, line), row.campaign, row.phone, row.name)
            else:
                yield line, row
