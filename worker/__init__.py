"""ozonetel-purge: delete records from Ozonetel outbound campaigns in bulk."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["JobStatus", "Producer", "Receipt", "__version__"]

if TYPE_CHECKING:
    from worker.queue.producer import JobStatus, Producer, Receipt


def __getattr__(name: str) -> Any:
    # Imported on first use: every command of the CLI imports this package,
    # and most of them never need the producer (nor redis and aiohttp).
    if name in ("JobStatus", "Producer", "Receipt"):
        from worker.queue import producer

        return getattr(producer, name)
    raise AttributeError(f"module 'worker' has no attribute {name!r}")
