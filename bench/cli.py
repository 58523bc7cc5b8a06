"""``python -m bench``: options, the order of the runs, and what is printed.

Progress goes to stderr as each run ends; the machine and the tables go to
stdout, so ``python -m bench > bench.md`` keeps only the results.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.deletions import write_campaigns, write_csv
from bench.environment import RateSettings
from bench.fleet import FleetOptions, FleetResult, run_fleet
from bench.importing import ImportResult, measure_import
from bench.machine import describe
from bench.report import FLEET_COLUMNS, IMPORT_COLUMNS, machine_lines, table, write_json

# At least this many windows of backlog per configuration: fewer, and the
# first window's burst (which any limiter grants at once) dominates the rate.
MIN_WINDOWS = 8
DEFAULT_WINDOWS = 10


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None
    if not counts or any(n < 1 for n in counts):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return counts


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure ozonetel-purge on this machine: the rate kept by 1..N worker "
        "processes against the simulator, and the importer. Everything runs on 127.0.0.1.",
    )
    rate = p.add_argument_group("fleet (a time-compressed vendor limit)")
    rate.add_argument("--limit", type=int, default=100, help="requests per window (default 100)")
    rate.add_argument("--window", type=float, default=10.0, help="window, seconds (default 10)")
    rate.add_argument(
        "--margin",
        type=float,
        default=None,
        help="OZP_RATE_MARGIN_S (default: 0.5 %% of the window, as 0.3 s of 60 s)",
    )
    rate.add_argument(
        "--jobs", type=int, default=None,
        help=f"backlog per configuration (default: {DEFAULT_WINDOWS} windows' worth)",
    )  # fmt: skip
    rate.add_argument(
        "--processes", type=_counts, default=[1, 2, 4, 8], help="worker counts (default 1,2,4,8)"
    )
    rate.add_argument(
        "--latency", default="uniform:0,300", help="simulator latency, ms (default uniform:0,300)"
    )
    rate.add_argument("--concurrency", type=int, default=4, help="OZP_CONCURRENCY (default 4)")
    rate.add_argument("--seed", type=int, default=7, help="simulator seed (default 7)")
    imp = p.add_argument_group("import")
    imp.add_argument(
        "--import-rows", type=_counts, default=[100_000, 1_000_000],
        help="generated rows per import run (default 100000,1000000)",
    )  # fmt: skip
    p.add_argument("--skip-fleet", action="store_true", help="measure only the import")
    p.add_argument("--skip-import", action="store_true", help="measure only the fleet")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    p.add_argument(
        "--workdir", type=Path, metavar="DIR",
        help="keep logs and Redis directories here (default: a temporary directory, removed)",
    )  # fmt: skip
    return p


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _run_fleets(options: FleetOptions, counts: Sequence[int], workdir: Path) -> list[FleetResult]:
    # One backlog file and one campaigns file for every configuration: the
    # same work, so the rows differ only in the number of processes.
    csv = write_csv(workdir / "backlog.csv", options.jobs)
    campaigns = write_campaigns(workdir / "campaigns.json", options.jobs)
    results = []
    for count in counts:
        _progress(f"fleet: {count} process(es), {options.jobs} jobs ...")
        result = run_fleet(options, count, workdir, csv, campaigns)
        _progress(
            f"fleet: {count} process(es): violations {result.violations}, "
            f"drain {result.drain_s:.1f} s, exits {result.exit_codes}"
        )
        results.append(result)
    return results


def _run_imports(rows: Sequence[int], workdir: Path) -> list[ImportResult]:
    results = []
    for count in rows:
        _progress(f"import: {count} rows ...")
        result = measure_import(count, workdir)
        _progress(f"import: {count} rows in {result.seconds:.1f} s")
        results.append(result)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.limit < 1 or args.window <= 0 or args.concurrency < 1:
        parser().error("--limit, --window and --concurrency must be positive")
    margin = args.margin if args.margin is not None else args.window / 200
    if not 0 < margin < args.window:
        parser().error("--margin must be above 0 and below --window")
    jobs = args.jobs if args.jobs is not None else DEFAULT_WINDOWS * args.limit
    if jobs < MIN_WINDOWS * args.limit and not args.skip_fleet:
        _progress(f"warning: {jobs} jobs is under {MIN_WINDOWS} windows of backlog")
    options = FleetOptions(
        RateSettings(args.limit, args.window, margin),
        jobs,
        args.latency,
        args.seed,
        args.concurrency,
    )
    machine = describe()
    print("python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv))
    print(machine_lines(machine), flush=True)

    with ExitStack() as stack:
        if args.workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ozp-bench-")))
        else:
            workdir = args.workdir
            workdir.mkdir(parents=True, exist_ok=True)
        fleet = [] if args.skip_fleet else _run_fleets(options, args.processes, workdir)
        imports = [] if args.skip_import else _run_imports(args.import_rows, workdir)

    settings: dict[str, Any] = {**asdict(options), "processes": args.processes}
    settings["import_rows"] = args.import_rows
    if fleet:
        rate = options.rate
        print(
            f"\nFleet: {jobs} jobs per configuration, limit {rate.limit} per {rate.window_s:g} s "
            f"(margin {rate.margin_s:g} s), simulator latency {options.latency}, "
            f"concurrency {options.concurrency} per process; ideal drain "
            f"{options.ideal_drain_s:.1f} s\n"
        )
        print(table(FLEET_COLUMNS, fleet))
    if imports:
        print("\nImport: python -m worker import FILE (CSV), end to end\n")
        print(table(IMPORT_COLUMNS, imports))
    if args.json is not None:
        write_json(args.json, machine, settings, fleet, imports)
