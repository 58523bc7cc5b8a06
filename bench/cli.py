"""``python -m bench [fleet|import|tenants]``: options, the order of the runs, and what is printed.

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
from bench.fleet import FleetOptions, FleetResult, run_fleet, run_timeout_s
from bench.importing import ImportResult, measure_import
from bench.machine import describe
from bench.report import (
    FLEET_COLUMNS,
    IMPORT_COLUMNS,
    TENANT_COLUMNS,
    failure_lines,
    machine_lines,
    table,
    write_json,
)
from bench.tenants import TenantOptions, TenantResult, run_tenants

# At least this many windows of backlog per configuration: fewer, and the
# first window's burst (which any limiter grants at once) dominates the rate.
MIN_WINDOWS = 8
DEFAULT_WINDOWS = 10
DEFAULT_FLEET_WINDOW_S = 10.0
# The tenants mode compresses time less: its allowance is N accounts'
# worth, and at 10 s windows 30 accounts ask 300 requests/s of the machine
# with a margin of 50 ms; on two cores the simulator then stamps some
# arrivals later than that, and counts violations that the compression
# made, not the limiter. At 30 s, 100 requests/s and a 150 ms margin.
DEFAULT_TENANT_WINDOW_S = 30.0
# Per account: a few windows keep 300 accounts' run short, and every
# account still has more than one window's worth to pace.
DEFAULT_TENANT_WINDOWS = 3
DEFAULT_FLEET_PROCESSES = [1, 2, 4, 8]
DEFAULT_TENANT_PROCESSES = [2]
MODES = ("fleet", "import", "tenants")


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
        "processes against the simulator, and the importer (both by default); or, with "
        "'tenants', many accounts at once. Everything runs on 127.0.0.1.",
    )
    p.add_argument(
        "mode", nargs="?", choices=MODES, default=None,
        help="run only this part (default: fleet, then import)",
    )  # fmt: skip
    rate = p.add_argument_group("fleet and tenants (a time-compressed vendor limit)")
    rate.add_argument("--limit", type=int, default=100, help="requests per window (default 100)")
    rate.add_argument(
        "--window", type=float, default=None,
        help=f"window, seconds (default {DEFAULT_FLEET_WINDOW_S:g}; tenants: "
        f"{DEFAULT_TENANT_WINDOW_S:g})",
    )  # fmt: skip
    rate.add_argument(
        "--margin",
        type=float,
        default=None,
        help="OZP_RATE_MARGIN_S (default: 0.5 %% of the window, as 0.3 s of 60 s)",
    )
    rate.add_argument(
        "--jobs", type=int, default=None,
        help=f"backlog per fleet configuration (default: {DEFAULT_WINDOWS} windows' worth)",
    )  # fmt: skip
    rate.add_argument(
        "--processes", type=_counts, default=None,
        help="worker counts (default 1,2,4,8; tenants: 2)",
    )  # fmt: skip
    rate.add_argument(
        "--latency", default="uniform:0,300", help="simulator latency, ms (default uniform:0,300)"
    )
    rate.add_argument("--concurrency", type=int, default=4, help="OZP_CONCURRENCY (default 4)")
    rate.add_argument("--seed", type=int, default=7, help="simulator seed (default 7)")
    tenants = p.add_argument_group("tenants (many accounts, one simulator, one Redis)")
    tenants.add_argument(
        "--accounts", type=_counts, default=[1, 30, 300],
        help="account counts, one configuration each (default 1,30,300)",
    )  # fmt: skip
    tenants.add_argument(
        "--backlog-windows", type=int, default=DEFAULT_TENANT_WINDOWS,
        help=f"each account's backlog, in windows' worth (default {DEFAULT_TENANT_WINDOWS})",
    )  # fmt: skip
    tenants.add_argument(
        "--redis-max-connections", type=int, default=None, metavar="N",
        help="the workers' Redis pool cap, as ?max_connections=N on REDIS_URL "
        "(default: unset, the product's own)",
    )  # fmt: skip
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


def _run_tenants(
    options: TenantOptions, accounts: Sequence[int], processes: Sequence[int], workdir: Path
) -> list[TenantResult]:
    results = []
    for count in accounts:
        for procs in processes:
            _progress(
                f"tenants: {count} account(s), {procs} process(es), "
                f"{count * options.jobs_per_account} jobs ..."
            )
            result = run_tenants(options, count, procs, workdir)
            _progress(
                f"tenants: {count} account(s), {procs} process(es): {result.sent_per_s:.1f} "
                f"req/s of {result.allowed_per_s:g}, violations {result.violations}, "
                f"{result.drain_s:.1f} s{' (capped)' if result.capped else ''}, "
                f"exits {result.exit_codes}"
            )
            results.append(result)
    return results


def _print_tenants(options: TenantOptions, results: Sequence[TenantResult]) -> None:
    rate = options.rate
    print(
        f"\nTenants: {options.jobs_per_account} jobs per account ({options.backlog_windows} "
        f"windows' worth), limit {rate.limit} per {rate.window_s:g} s per account (margin "
        f"{rate.margin_s:g} s), one simulator for every account, latency {options.latency}, "
        f"concurrency {options.concurrency} per account per process; ideal run "
        f"{options.ideal_drain_s:.1f} s, stopped at {run_timeout_s(options.ideal_drain_s):.0f} s\n"
    )
    print(table(TENANT_COLUMNS, results))
    failed = failure_lines(results)
    if failed:
        print("\nWorkers that failed:\n" + failed)


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.limit < 1 or (args.window is not None and args.window <= 0) or args.concurrency < 1:
        parser().error("--limit, --window and --concurrency must be positive")
    if args.redis_max_connections is not None and args.redis_max_connections < 1:
        parser().error("--redis-max-connections must be positive")
    if args.backlog_windows < 2:
        # One window's worth leaves no account a gap to measure its pacing by.
        parser().error("--backlog-windows must be 2 or more")
    runs_fleet = args.mode == "fleet" or (args.mode is None and not args.skip_fleet)
    runs_import = args.mode == "import" or (args.mode is None and not args.skip_import)
    runs_tenants = args.mode == "tenants"
    if args.processes is None:
        args.processes = DEFAULT_TENANT_PROCESSES if runs_tenants else DEFAULT_FLEET_PROCESSES
    if args.window is None:
        args.window = DEFAULT_TENANT_WINDOW_S if runs_tenants else DEFAULT_FLEET_WINDOW_S
    margin = args.margin if args.margin is not None else args.window / 200
    if not 0 < margin < args.window:
        parser().error("--margin must be above 0 and below --window")
    jobs = args.jobs if args.jobs is not None else DEFAULT_WINDOWS * args.limit
    if jobs < MIN_WINDOWS * args.limit and runs_fleet:
        _progress(f"warning: {jobs} jobs is under {MIN_WINDOWS} windows of backlog")
    options = FleetOptions(
        RateSettings(args.limit, args.window, margin),
        jobs,
        args.latency,
        args.seed,
        args.concurrency,
    )
    tenant_options = TenantOptions(
        options.rate,
        args.backlog_windows,
        args.latency,
        args.seed,
        args.concurrency,
        args.redis_max_connections,
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
        fleet = _run_fleets(options, args.processes, workdir) if runs_fleet else []
        imports = _run_imports(args.import_rows, workdir) if runs_import else []
        tenant_results = (
            _run_tenants(tenant_options, args.accounts, args.processes, workdir)
            if runs_tenants
            else []
        )

    settings: dict[str, Any] = {**asdict(options), "processes": args.processes}
    if runs_import:
        settings["import_rows"] = args.import_rows
    if runs_tenants:
        # The fleet's backlog is not this mode's: each account's is below.
        del settings["jobs"]
        settings["accounts"] = args.accounts
        settings["backlog_windows"] = args.backlog_windows
        settings["jobs_per_account"] = tenant_options.jobs_per_account
        settings["redis_max_connections"] = args.redis_max_connections
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
    if tenant_results:
        _print_tenants(tenant_options, tenant_results)
    if args.json is not None:
        write_json(args.json, machine, settings, fleet, imports, tenant_results)
