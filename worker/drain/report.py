"""A drain's report: what became of every line of the file.

Written into the report directory:

- ``outcomes.csv``: one row per non-blank row of the file, in file order:
  ``line, phone, campaign, name, outcome, reason, message, attempts,
  finished_at``. ``outcome`` is one of :data:`REPORT_OUTCOMES`;
  ``finished_at`` is ISO 8601 UTC. A rejected row has its raw text as the
  message, since it could not be read into fields.
- ``summary.json``: the counts per outcome and per reason, the run's
  elapsed time and rate, and where the files are.
- the rejects file (``rejects.csv`` by default): line, reason, raw.

Every cell of both CSV files that a spreadsheet would take for a formula
(starting with ``=``, ``+``, ``-``, ``@``, TAB or CR) is written with a
leading ``'``: a phone ``+919845012345`` reads ``'+919845012345``. See
:mod:`worker.intake.csv_cells` for the rule and for reading a cell back.

The report is built by reading the file again, in batches, and looking up
each row's job by its id (``<tag>-<line>``) in one script call per batch
(``drain/outcomes.lua``): the job's status hash says whether it ended, and
points at its entry in the results stream for the vendor's message. Memory
stays flat however long the file is, and only this file's jobs are read,
however busy the account's results stream is. The files are written beside
their final names and renamed at the end, so a report that was cut short
never passes for a complete one.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from worker.accounts.status import server_time_ms
from worker.drain.rows import Row, duplicate_field
from worker.errors import BadInput
from worker.intake.csv_cells import SafeCsvWriter
from worker.intake.importer import Rejected, RejectsWriter
from worker.queue.jobs import Job
from worker.store.keys import AccountKeys
from worker.store.lua import register

OUTCOME_COLUMNS = (
    "line",
    "phone",
    "campaign",
    "name",
    "outcome",
    "reason",
    "message",
    "attempts",
    "finished_at",
)
REPORT_OUTCOMES = ("deleted", "already_deleted", "dead", "rejected", "duplicate", "pending")
DUPLICATE_REASON = "already_queued"
DUPLICATE_MESSAGE = "not sent: the same campaign and number was already queued"
PENDING_MESSAGE = "not finished yet: run the same command again to resume"
TRIMMED_MESSAGE = "(the vendor's message was trimmed from the results stream)"
# Rows looked up per call of drain/outcomes.lua: each call holds the server
# for about a millisecond.
_LOOKUP_BATCH = 1000
_FIELDS_PER_JOB = 6


@dataclass
class Summary:
    file: str
    tag: str
    account: str
    report_dir: str
    outcomes_csv: str
    summary_json: str
    rejects_csv: str
    rows: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REPORT_OUTCOMES, 0))
    # outcome -> reason -> count, for the outcomes that carry a reason.
    reasons: dict[str, dict[str, int]] = field(default_factory=dict)
    finished_this_run: int = 0
    elapsed_s: float = 0.0

    @property
    def complete(self) -> bool:
        """Every row has its final outcome: nothing is left to send."""
        return self.outcomes["pending"] == 0

    @property
    def rate_per_min(self) -> float:
        """Rows that reached a terminal record during this run, per minute."""
        return self.finished_this_run * 60 / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "tag": self.tag,
            "account": self.account,
            "rows": self.rows,
            "complete": self.complete,
            "outcomes": self.outcomes,
            "reasons": self.reasons,
            "finished_this_run": self.finished_this_run,
            "elapsed_s": round(self.elapsed_s, 3),
            "rate_per_min": round(self.rate_per_min, 1),
            "report": {
                "dir": self.report_dir,
                "outcomes": self.outcomes_csv,
                "summary": self.summary_json,
                "rejects": self.rejects_csv,
            },
        }


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class _ReportFiles:
    """outcomes.csv and the rejects file, written under ``.partial`` names until
    :meth:`commit`. Plain file writes: the event loop has nothing else to do
    while the report is written."""

    def __init__(self, report_dir: Path, rejects_path: Path) -> None:
        self.outcomes_path = report_dir / "outcomes.csv"
        self.summary_path = report_dir / "summary.json"
        self.rejects_path = rejects_path
        self._partial = report_dir / "outcomes.csv.partial"
        self._rejects_partial = rejects_path.with_name(rejects_path.name + ".partial")
        try:
            report_dir.mkdir(parents=True, exist_ok=True)
            self._handle = self._partial.open("w", encoding="utf-8", newline="")
        except OSError as exc:
            raise BadInput(f"{report_dir}: cannot write the report: {exc.strerror}") from None
        try:
            self.rejects = RejectsWriter(str(self._rejects_partial))
        except BadInput:
            self._handle.close()
            raise
        self.outcomes = SafeCsvWriter(self._handle)
        self.outcomes.writerow(OUTCOME_COLUMNS)

    def close(self) -> None:
        self._handle.close()
        self.rejects.close()

    def discard(self) -> None:
        """A report cut short leaves nothing behind but the previous one."""
        self.close()
        self._partial.unlink(missing_ok=True)
        self._rejects_partial.unlink(missing_ok=True)

    def commit(self, summary: Summary) -> None:
        self.close()
        os.replace(self._partial, self.outcomes_path)
        os.replace(self._rejects_partial, self.rejects_path)
        text = json.dumps(summary.as_json(), indent=2) + "\n"
        self.summary_path.write_text(text, encoding="utf-8")


async def write_report(
    redis: Redis,
    keys: AccountKeys,
    rows: Iterable[Row],
    tag: str,
    source: Path,
    report_dir: Path,
    rejects_path: Path,
    run_started_ms: int,
) -> Summary:
    """Write outcomes.csv, summary.json and the rejects file; return the summary."""
    files = _ReportFiles(report_dir, rejects_path)
    summary = Summary(
        file=str(source),
        tag=tag,
        account=keys.account,
        report_dir=str(report_dir),
        outcomes_csv=str(files.outcomes_path),
        summary_json=str(files.summary_path),
        rejects_csv=str(rejects_path),
    )
    reasons: dict[str, Counter[str]] = {}
    lookup = register(redis, "drain/outcomes")
    try:
        for batch in _batches(rows):
            for row in await _lookup(lookup, keys, tag, batch, files.rejects):
                outcome, reason, finished_ms = row[4], row[5], row.pop()
                summary.rows += 1
                summary.outcomes[outcome] += 1
                if reason:
                    reasons.setdefault(outcome, Counter())[reason] += 1
                if finished_ms and int(finished_ms) >= run_started_ms:
                    summary.finished_this_run += 1
                files.outcomes.writerow(row)
    except BaseException:
        files.discard()
        raise
    summary.reasons = {out: dict(counts.most_common()) for out, counts in reasons.items()}
    summary.elapsed_s = (await server_time_ms(redis) - run_started_ms) / 1000
    files.commit(summary)
    return summary


def _batches(rows: Iterable[Row]) -> Iterator[list[Row]]:
    unread = iter(rows)
    while batch := list(islice(unread, _LOOKUP_BATCH)):
        yield batch


async def _lookup(
    lookup: AsyncScript, keys: AccountKeys, tag: str, batch: list[Row], rejects: RejectsWriter
) -> list[list[str]]:
    """The report rows of a batch, each with the finish time in ms appended ('' if none)."""
    jobs = [(line, row) for line, row in batch if isinstance(row, Job)]
    flat = await lookup(
        keys=[keys.results, keys.drain(tag), *(keys.job(job.id) for _, job in jobs)],
        args=[duplicate_field(line) for line, _ in jobs],
    )
    found = {
        job.id: flat[i * _FIELDS_PER_JOB : (i + 1) * _FIELDS_PER_JOB]
        for i, (_, job) in enumerate(jobs)
    }
    out: list[list[str]] = []
    for line, row in batch:
        if isinstance(row, Rejected):
            rejects.write(row)
            out.append([str(line), "", "", "", "rejected", row.reason, row.raw, "0", "", ""])
            continue
        head = [str(line), row.phone, row.campaign, row.name]
        outcome, finished, reason, message, attempts, read = found[row.id]
        if outcome == "duplicate":
            out.append([*head, outcome, DUPLICATE_REASON, DUPLICATE_MESSAGE, "0", "", ""])
        elif outcome:
            message = message if read == "1" else TRIMMED_MESSAGE
            when = iso_ms(int(finished)) if finished else ""
            out.append([*head, outcome, reason, message, attempts, when, finished])
        else:
            out.append([*head, "pending", "", PENDING_MESSAGE, "", "", ""])
    return out
