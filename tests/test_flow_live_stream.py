"""The scheduled live_stream run picks its session from the CME calendar: it waits for an open
that is near and skips a holiday instead of streaming an empty market."""

from __future__ import annotations

import datetime as dt

from flows.live_stream import session_to_stream
from ifd_core.calendar import et_to_ns


def test_the_sunday_evening_run_waits_for_mondays_open():
    now = et_to_ns(dt.date(2026, 3, 1), 17, 45)  # a Sunday, 17:45 New York
    assert session_to_stream(now, "always_on", 3 * 3600) == (dt.date(2026, 3, 2), 15 * 60.0)


def test_a_run_inside_a_session_streams_it_at_once():
    now = et_to_ns(dt.date(2026, 3, 3), 10, 0)
    assert session_to_stream(now, "always_on", 3 * 3600) == (dt.date(2026, 3, 3), 0.0)


def test_the_run_before_good_friday_is_skipped():
    # Thursday 2026-04-02 17:45: Good Friday has no session, the next opens Sunday evening.
    now = et_to_ns(dt.date(2026, 4, 2), 17, 45)
    assert session_to_stream(now, "always_on", 3 * 3600) is None
