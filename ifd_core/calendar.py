"""CME trading calendar and trade-date arithmetic.

Wraps ``exchange_calendars`` (calendar "CMES", CME equity products) so that holidays and early
closes come from a maintained library rather than a hand-written list. A CME Globex session opens
at 18:00 America/New_York on the evening before its *trade date* (the hour after the 17:00 close
is its pre-open); everything keyed by "date" in
IFD (lake partitions, baselines, open interest) uses that trade date, never the calendar date.
"""

from __future__ import annotations

import datetime as dt
import warnings
from functools import lru_cache
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
NS = 1_000_000_000


@lru_cache(maxsize=1)
def _calendar():
    import exchange_calendars as xcals  # imported lazily: it pulls in pandas

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xcals.get_calendar("CMES", start="2015-01-01")


def is_trading_day(day: dt.date) -> bool:
    """True when CME equity futures and options hold a session with this trade date."""
    cal = _calendar()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bool(cal.is_session(day.isoformat()))


def trading_days(start: dt.date, count: int) -> list[dt.date]:
    """The first ``count`` trade dates on or after ``start``."""
    if count <= 0:
        return []
    cal = _calendar()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = cal.date_to_session(start.isoformat(), direction="next")
        sessions = cal.sessions_window(first, count)
    return [s.date() for s in sessions]


@lru_cache(maxsize=4096)
def next_session(day: dt.date) -> dt.date:
    """``day`` if it is a CME session, else the first session after it."""
    cal = _calendar()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cal.date_to_session(day.isoformat(), direction="next").date()


def previous_trading_day(day: dt.date) -> dt.date:
    """The last session strictly before ``day``."""
    cal = _calendar()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if cal.is_session(day.isoformat()):
            return cal.previous_session(day.isoformat()).date()
        return cal.date_to_session(day.isoformat(), direction="previous").date()


def et_to_ns(day: dt.date, hour: int, minute: int = 0, second: int = 0) -> int:
    """Nanoseconds since the epoch of a wall-clock time in New York on ``day``."""
    local = dt.datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=NEW_YORK)
    return int(local.timestamp()) * NS


def sessions_before(day: dt.date, count: int) -> list[dt.date]:
    """The ``count`` sessions strictly before ``day``, oldest first (a baseline's lookback)."""
    if count <= 0:
        return []
    cal = _calendar()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        last = previous_trading_day(day)
        sessions = cal.sessions_window(last.isoformat(), -count)
    return [s.date() for s in sessions]
