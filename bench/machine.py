"""The machine the numbers were measured on, printed above them.

Rates depend on it (two cores shared by eight workers, the simulator and
Redis is not eight cores), so a table without it cannot be compared.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from bench.redis_server import server_version
from worker import __version__


def _proc_field(path: str, name: str) -> str | None:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def _ram() -> str:
    total_kb = _proc_field("/proc/meminfo", "MemTotal")
    if total_kb is None:
        return "unknown"
    return f"{int(total_kb.split()[0]) / 2**20:.1f} GiB"


def describe() -> dict[str, str]:
    return {
        "cpu": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "cores": str(os.cpu_count()),
        "ram": _ram(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "redis": server_version(),
        "ozonetel-purge": __version__,
    }
