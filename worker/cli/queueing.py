"""``enqueue`` and ``import``: putting deletions on the queue."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from worker.cli.app import (
    EXIT_OK,
    AccountOption,
    JsonOption,
    account_keys,
    connected,
    err,
    execute,
    lane_of,
    out,
    print_json,
)
from worker.cli.safe_text import visible
from worker.config.settings import Settings
from worker.errors import BadInput
from worker.intake.importer import (
    ImportCounts,
    Rejected,
    RejectsWriter,
    Source,
    import_jobs,
    open_source,
)
from worker.queue.jobs import Job, make_job
from worker.queue.lanes import Queue
from worker.store.keys import Lane


def enqueue(
    campaign: Annotated[str, typer.Option(help="The outbound campaign's name, as in Ozonetel.")],
    phone: Annotated[str, typer.Option(help="The number to delete, exactly as stored.")],
    name: Annotated[str, typer.Option(help="Free text passed to the vendor.")] = "",
    account: AccountOption = None,
    urgent: Annotated[
        bool, typer.Option("--urgent", help="Jump ahead of the bulk backlog.")
    ] = False,
    job_id: Annotated[
        str | None, typer.Option("--id", help="Your job id (default: a random one).")
    ] = None,
) -> None:
    """Queue one deletion; prints its job id.

    A number already queued or in flight for the same campaign (or an --id
    already used for this number) is not queued again: the command says so on
    stderr, prints no id, and exits 0. An --id that names another number, or
    that a producer of the HTTP API queued, is refused (exit 2).
    """

    async def work(settings: Settings) -> int:
        job = make_job(campaign, phone, name, job_id)
        keys = account_keys(settings, account)
        async with connected(settings) as redis:
            result = await Queue(redis, keys).enqueue_many([job], lane_of(urgent))
        if result.conflicts:
            raise BadInput(
                f"job id {visible(job.id)!r} is already used for another number or by a "
                "producer of the HTTP API; nothing was queued"
            )
        if result.queued:
            out.print(job.id, markup=False)
        else:
            err.print("duplicate: this campaign and number are already queued; not queued again")
        return EXIT_OK

    execute(work)


def import_file(
    file: Annotated[str, typer.Argument(help="CSV or JSONL file; '-' reads standard input.")],
    campaign: Annotated[str | None, typer.Option(help="Campaign for rows that name none.")] = None,
    account: AccountOption = None,
    urgent: Annotated[bool, typer.Option("--urgent", help="Queue on the urgent lane.")] = False,
    rejects: Annotated[
        str | None,
        typer.Option(metavar="FILE", help="Write refused rows here (CSV: line, reason, raw)."),
    ] = None,
    normalize: Annotated[
        bool, typer.Option("--normalize", help="Drop spaces, dashes, dots and brackets first.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Queue every row of a CSV or JSONL file, streamed; prints the counts
    (with --json, one object: queued, duplicates, rejected).

    Columns (any case): phoneNumber (or phone, number, mobile), campaignName
    (or campaign), name. Format by extension (.csv, .jsonl, .ndjson) or content.
    Rows already queued are skipped, bad rows are counted (see --rejects), and
    re-running after an interruption queues only what is missing. A bad row
    (not UTF-8, over 65,536 characters, not a JSON object) never stops it.
    In the rejects file a cell starting with = + - or @ gets a leading ' so
    that a spreadsheet shows it as text instead of running it.
    """

    async def work(settings: Settings) -> int:
        keys = account_keys(settings, account)
        with open_source(file, sys.stdin.buffer) as source:
            writer = RejectsWriter(rejects) if rejects else None
            examples: list[Rejected] = []

            def on_reject(row: Rejected) -> None:
                if writer is not None:
                    writer.write(row)
                elif len(examples) < 3:
                    examples.append(row)

            try:
                async with connected(settings) as redis:
                    queue = Queue(redis, keys)
                    rows = source.jobs(campaign or "", normalize)
                    lane = lane_of(urgent)
                    if err.is_terminal:
                        counts = await _import_with_progress(queue, rows, lane, on_reject, source)
                    else:
                        counts = await import_jobs(queue, rows, lane, on_reject)
            finally:
                if writer is not None:
                    writer.close()
        if json_output:
            print_json(asdict(counts))
        else:
            out.print(counts.summary(), markup=False)
        for row in examples:
            err.print(f"rejected line {row.line}: {visible(row.reason)}", markup=False)
        if counts.rejected and writer is None:
            err.print("(pass --rejects FILE to keep every refused row)")
        return EXIT_OK

    execute(work)


async def _import_with_progress(
    queue: Queue,
    rows: Iterable[Job | Rejected],
    lane: Lane,
    on_reject: Callable[[Rejected], None],
    source: Source,
) -> ImportCounts:
    """The import, with a progress bar of the bytes read (indeterminate on stdin)."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("importing", total=source.total_bytes)

        def on_batch(counts: ImportCounts) -> None:
            progress.update(task, completed=source.bytes_read, description=counts.summary())

        return await import_jobs(queue, rows, lane, on_reject, on_batch)
