"""A process whose permits keep coming late says so, once a minute, with the fix."""

from __future__ import annotations

from structlog.testing import capture_logs

from worker.logs import configure_logging
from worker.pool.lateness import LATE_SHARE, MIN_SEEN, WINDOW, LatenessWatch


def test_a_hiccup_is_quiet_and_a_process_falling_behind_is_warned_about() -> None:
    configure_logging(level="warning", json=True)
    watch = LatenessWatch("acct")
    with capture_logs() as logs:
        # One late permit in twenty on time: a hiccup.
        assert not any(watch.saw(n == 0, now=float(n)) for n in range(MIN_SEEN))
        # Then half of them late: behind, warned about once per period.
        behind = [watch.saw(n % 2 == 0, now=100.0 + n) for n in range(WINDOW)]
    assert behind[-1] and watch.late_share > LATE_SHARE
    warnings = [entry for entry in logs if entry["event"] == "permits.late_often"]
    assert len(warnings) == 2  # at 100+x and 60 s later, not once per permit
    assert warnings[0]["account"] == "acct" and "OZP_RATE_MARGIN_S" in warnings[0]["fix"]


def test_the_share_is_of_the_last_window_only() -> None:
    watch = LatenessWatch("acct")
    for n in range(WINDOW):
        watch.saw(True, now=float(n))
    assert watch.late_share == 1.0
    for n in range(WINDOW):
        watch.saw(False, now=float(WINDOW + n))
    assert watch.late_share == 0.0
