"""Rate measures over arrival times, as the simulator stamped them.

The tests use these same definitions (``tests/fleet.py`` imports them), so
that a benchmark number and a test threshold mean the same thing.
"""

from __future__ import annotations

from collections.abc import Sequence


def max_in_window(times: Sequence[float], window_s: float) -> int:
    """The most arrivals in any half-open window (t - window, t]."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(ordered):
        while ordered[start] <= moment - window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


def utilization(times: Sequence[float], limit: int, window_s: float) -> float | None:
    """How closely arrivals follow the limit while work is queued: 1.0 at best.

    The limit lets arrival i + limit come one window after arrival i, and no
    sooner; the mean of those gaps, against the window, is the share of the
    allowance used. Bursts of any shape score alike, so this measures the
    pacing, not how fast one burst leaves. None with too few arrivals to
    have a single gap.
    """
    ordered = sorted(times)
    gaps = [ordered[i + limit] - ordered[i] for i in range(len(ordered) - limit)]
    if not gaps:
        return None
    return window_s / (sum(gaps) / len(gaps))
