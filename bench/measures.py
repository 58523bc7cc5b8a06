"""Rate measures over arrival times, as the simulator stamped them.

The tests use these same definitions (``tests/fleet.py`` imports them), so
that a benchmark number and a test threshold mean the same thing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence


def _in_window(times: Sequence[float], window_s: float) -> Iterator[int]:
    """For each arrival, in order, the arrivals in the window (t - window, t] ending at it."""
    ordered = sorted(times)
    start = 0
    for end, moment in enumerate(ordered):
        while ordered[start] <= moment - window_s:
            start += 1
        yield end - start + 1


def max_in_window(times: Sequence[float], window_s: float) -> int:
    """The most arrivals in any half-open window (t - window, t]."""
    return max(_in_window(times, window_s), default=0)


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


def over_limit(times: Sequence[float], limit: int, window_s: float) -> int:
    """Arrivals that found more than ``limit`` arrivals, themselves included, in
    the window (t - window, t]: what the simulator counts as violations."""
    return sum(1 for count in _in_window(times, window_s) if count > limit)


def utilization_or_rate(
    times: Sequence[float], limit: int, window_s: float, span_s: float
) -> tuple[float, bool]:
    """:func:`utilization`, or, with too few arrivals for a single gap, the
    value it tends to for a steady rate: that rate over the allowance,
    ``len(times) / span_s`` against ``limit / window_s``. The flag says which.

    For a sender that never got past ``limit`` arrivals in ``span_s`` of
    queued work (a run stopped before it could), both say how much of the
    allowance it used; 0.0 for one that sent nothing.
    """
    measured = utilization(times, limit, window_s)
    if measured is not None:
        return measured, False
    return len(times) * window_s / (limit * span_s), True
