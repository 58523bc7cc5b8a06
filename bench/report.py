"""The printed tables and the JSON document; nothing here measures."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.fleet import FleetResult
from bench.importing import ImportResult
from bench.tenants import TenantResult

Column = tuple[str, Callable[[Any], str]]


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def _fixed(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _exit_codes(codes: Sequence[int]) -> str:
    return ",".join(str(c) for c in sorted(set(codes)))


def _costs(per: str, unit: str) -> list[Column]:
    """What the processes cost: per job queued (fleet), per request sent (tenants)."""

    def per_unit(name: str) -> Callable[[Any], str]:
        return lambda r: _fixed(getattr(r, f"{name}_per_{per}"), 2)

    return [
        (f"CPU ms/{unit}", per_unit("cpu_ms")),
        (f"net CPU ms/{unit}", per_unit("net_cpu_ms")),
        ("start-up CPU s", lambda r: f"{r.startup_cpu_s:.2f}"),
        ("peak RSS MiB", lambda r: f"{r.peak_rss_mib:.1f}"),
        (f"Redis CPU ms/{unit}", per_unit("redis_cpu_ms")),
    ]


# The work, and how it ended: the same in every table of worker runs.
_WORK: list[Column] = [
    ("procs", lambda r: str(r.processes)),
    ("jobs", lambda r: str(r.jobs)),
    ("sent", lambda r: str(r.sent)),
]
_ENDING: list[Column] = [
    ("done", lambda r: str(r.done)),
    ("dead", lambda r: str(r.dead)),
    ("exit codes", lambda r: _exit_codes(r.exit_codes)),
]

FLEET_COLUMNS: list[Column] = [
    *_WORK,
    ("violations", lambda r: str(r.violations)),
    ("max/window", lambda r: str(r.max_in_window)),
    ("utilization", lambda r: _percent(r.utilization)),
    ("drain s", lambda r: f"{r.drain_s:.1f}"),
    ("drain/ideal", lambda r: f"{r.drain_ratio:.3f}"),
    *_costs("job", "job"),
    *_ENDING,
]

TENANT_COLUMNS: list[Column] = [
    ("accounts", lambda r: str(r.accounts)),
    *_WORK,
    ("req/s", lambda r: f"{r.sent_per_s:.1f}"),
    ("allowed/s", lambda r: f"{r.allowed_per_s:.1f}"),
    ("max violations", lambda r: str(r.max_violations)),
    ("max/window", lambda r: str(r.max_in_window)),
    ("util min", lambda r: _percent(r.min_utilization)),
    ("util median", lambda r: _percent(r.median_utilization)),
    ("by rate", lambda r: str(r.estimated_utilization)),
    ("run s", lambda r: f"{r.drain_s:.1f}" + (" (cap)" if r.capped else "")),
    ("1st req s", lambda r: _fixed(r.first_request_s, 1)),
    *_costs("request", "req"),
    ("Redis conns/proc", lambda r: str(r.max_redis_connections_per_process)),
    *_ENDING,
]

IMPORT_COLUMNS: list[Column] = [
    ("rows", lambda r: str(r.rows)),
    ("file MiB", lambda r: f"{r.file_bytes / 2**20:.1f}"),
    ("seconds", lambda r: f"{r.seconds:.1f}"),
    ("rows/s", lambda r: f"{r.rows_per_s:,.0f}"),
    ("Redis bytes/job", lambda r: f"{r.redis_bytes_per_job:.0f}"),
    ("importer peak RSS MiB", lambda r: f"{r.importer_peak_rss_mib:.1f}"),
    ("importer CPU s", lambda r: f"{r.importer_cpu_s:.1f}"),
    ("queued", lambda r: str(r.queued)),
]


def table(columns: Sequence[Column], rows: Sequence[Any]) -> str:
    """A Markdown table, which reads as plain text and pastes into an issue."""
    cells = [[render(row) for _, render in columns] for row in rows]
    widths = [
        max([len(title)] + [len(c[i]) for c in cells]) for i, (title, _) in enumerate(columns)
    ]
    lines = [
        "| " + " | ".join(t.ljust(w) for (t, _), w in zip(columns, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [
        "| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    return "\n".join(lines)


def failure_lines(results: Sequence[TenantResult]) -> str:
    """The workers that exited on their own with an error, and how their logs end."""
    lines = []
    for r in results:
        for failed in r.failures:
            lines.append(
                f"{r.accounts} accounts, {r.processes} procs: {failed.worker} exited "
                f"{failed.exit_code}; its log ends:"
            )
            lines += [f"    {line}" for line in failed.log_tail.splitlines()]
    return "\n".join(lines)


def machine_lines(machine: dict[str, str]) -> str:
    return "\n".join(f"{key:>15}: {value}" for key, value in machine.items())


def write_json(
    path: Path,
    machine: dict[str, str],
    settings: dict[str, Any],
    fleet: Sequence[FleetResult],
    imports: Sequence[ImportResult],
    tenants: Sequence[TenantResult] = (),
) -> None:
    document = {
        "machine": machine,
        "settings": settings,
        "fleet": [asdict(r) for r in fleet],
        "import": [asdict(r) for r in imports],
        "tenants": [asdict(r) for r in tenants],
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
