"""The printed tables and the JSON document; nothing here measures."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.fleet import FleetResult
from bench.importing import ImportResult

Column = tuple[str, Callable[[Any], str]]

FLEET_COLUMNS: list[Column] = [
    ("procs", lambda r: str(r.processes)),
    ("jobs", lambda r: str(r.jobs)),
    ("sent", lambda r: str(r.sent)),
    ("violations", lambda r: str(r.violations)),
    ("max/window", lambda r: str(r.max_in_window)),
    ("utilization", lambda r: "n/a" if r.utilization is None else f"{100 * r.utilization:.2f} %"),
    ("drain s", lambda r: f"{r.drain_s:.1f}"),
    ("drain/ideal", lambda r: f"{r.drain_ratio:.3f}"),
    ("CPU ms/job", lambda r: f"{r.cpu_ms_per_job:.2f}"),
    ("net CPU ms/job", lambda r: f"{r.net_cpu_ms_per_job:.2f}"),
    ("start-up CPU s", lambda r: f"{r.startup_cpu_s:.2f}"),
    ("peak RSS MiB", lambda r: f"{r.peak_rss_mib:.1f}"),
    ("Redis CPU ms/job", lambda r: f"{r.redis_cpu_ms_per_job:.2f}"),
    ("done", lambda r: str(r.done)),
    ("dead", lambda r: str(r.dead)),
    ("exit codes", lambda r: ",".join(str(c) for c in sorted(set(r.exit_codes)))),
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


def machine_lines(machine: dict[str, str]) -> str:
    return "\n".join(f"{key:>15}: {value}" for key, value in machine.items())


def write_json(
    path: Path,
    machine: dict[str, str],
    settings: dict[str, Any],
    fleet: Sequence[FleetResult],
    imports: Sequence[ImportResult],
) -> None:
    document = {
        "machine": machine,
        "settings": settings,
        "fleet": [asdict(r) for r in fleet],
        "import": [asdict(r) for r in imports],
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
