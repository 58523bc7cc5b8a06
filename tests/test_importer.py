"""Reading CSV and JSONL files into jobs, streamed, and queueing them in Redis."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from redis.asyncio import Redis

from worker.errors import BadInput
from worker.importer import ImportCounts, Rejected, import_jobs, open_source
from worker.jobs import Job, dedupe_digest
from worker.keys import AccountKeys
from worker.queue import Queue


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
