"""Noticing when permits keep arriving late: a process that falls behind.

A permit traded for a job more than a quarter of the margin after its slot
is refunded and asked for again (see ``queue/fetch.lua``). Now and then that
is a hiccup; most of the time it means this process's event loop cannot keep
its accounts' schedules (too many accounts per process, a starved CPU), and
the allowance goes unused. That deserves a warning, not only info lines, and
one that says what to do.
"""

from __future__ import annotations

from collections import deque

from worker.logs import WarningSampler, get_logger

log = get_logger(__name__)

# Judged over the last this many permits of an account ...
WINDOW = 100
# ... once it has seen at least this many ...
MIN_SEEN = 20
# ... a late share above this is a process falling behind.
LATE_SHARE = 0.2
WARNING_PERIOD_S = 60.0


class LatenessWatch:
    """The share of an account's recent permits that came late."""

    def __init__(self, account: str) -> None:
        self._account = account
        self._recent: deque[bool] = deque(maxlen=WINDOW)
        self._late = 0
        self._warnings = WarningSampler(WARNING_PERIOD_S)

    @property
    def late_share(self) -> float:
        return self._late / len(self._recent) if self._recent else 0.0

    def saw(self, late: bool, now: float) -> bool:
        """Count one permit; True (and a warning, sampled) if the account is behind."""
        if len(self._recent) == self._recent.maxlen and self._recent[0]:
            self._late -= 1
        self._recent.append(late)
        self._late += late
        behind = len(self._recent) >= MIN_SEEN and self.late_share > LATE_SHARE
        if behind:
            held = self._warnings.admit(now)
            if held is not None:
                log.warning(
                    "permits.late_often",
                    account=self._account,
                    late_share=round(self.late_share, 2),
                    of_last=len(self._recent),
                    fix="fewer accounts or less load per process, or a larger OZP_RATE_MARGIN_S",
                )
        return behind
