"""A strict sliding-window counter, the rule both of the vendor's limits follow."""

from __future__ import annotations

from collections import deque


class SlidingWindow:
    """Arrivals per key in the half-open window ``(t - window_s, t]``.

    Times are the caller's (``time.monotonic()`` in the app, plain numbers in
    unit tests) and must not go backwards for one key, which holds for
    arrivals stamped on one event loop.
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._arrivals: dict[str, deque[float]] = {}

    def _trimmed(self, key: str, now: float) -> deque[float]:
        arrivals = self._arrivals.setdefault(key, deque())
        # Strictly older than now - W leaves the window: at exactly now - W an
        # arrival is out, so the window is (now - W, now].
        horizon = now - self.window_s
        while arrivals and arrivals[0] <= horizon:
            arrivals.popleft()
        return arrivals

    def count(self, key: str, now: float) -> int:
        """Arrivals of ``key`` inside the window ending at ``now``."""
        return len(self._trimmed(key, now))

    def record(self, key: str, now: float) -> int:
        """Add an arrival and return the count in its window, itself included."""
        arrivals = self._trimmed(key, now)
        arrivals.append(now)
        return len(arrivals)
