"""Session controller for the live deployment: when streaming should be on (platform.md §2.1).

The reference's controller polled "Monday-Friday 09:30-16:00 ET" and ignored holidays, early closes
and the overnight Globex session. Here every period comes from the exchange calendar (CMES in
``exchange_calendars``, through ``ifd_core.calendar``) so that holidays and early closes are a
maintained library's business, and the policy is a setting (``live.session_policy``):

``always_on``
    The whole Globex session of a trade date: from 18:00 New York on the evening before (the
    library's session open) to the close of that trade date, 17:00 New York normally and the
    library's early close on early-close days. The daily 17:00-18:00 halt and weekends fall between
    periods. No period when the trade date is not a CMES session (Christmas, Good Friday, ...).
``rth_only``
    Regular trading hours 09:30-16:00 New York of the trade date, cut at the early close when the
    library has one. Never opens on a day that is not a session.

What ``exchange_calendars`` 4.x says about CMES, and how it is used (checked, not assumed):

* ``session_open`` is 17:00 Chicago (18:00 New York) on the previous calendar day for every
  session, Monday's included (Sunday evening); there are no late opens.
* ``session_close`` of a normal session is 17:00 *Chicago* (18:00 New York): the library models
  a 24-hour session with no daily halt. The real Globex equity close is 16:00 Chicago (17:00 New
  York), so ``always_on`` caps the close at 17:00 New York.
* Early closes are 12:00 Chicago (13:00 New York), e.g. 2024-11-29 and 2024-12-24, and also on
  the Monday holidays the library keeps as sessions (MLK, Presidents', Memorial, Labor Day,
  Independence Day, Thanksgiving: CME trades a shortened Globex session on those days). Both
  policies stop at that close. CME's own published early halt for equity index futures is
  12:15 Chicago on some of these days; the library's value is used, not a hand-written list.
* Holidays with no session at all: New Year's Day, Good Friday, Christmas Day and ad-hoc closures
  such as 2025-01-09.

All instants are int nanoseconds since the epoch, UTC, like ``ts_event``; periods are half open,
``[open_ns, close_ns)``.
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from ifd_core.calendar import NEW_YORK, NS, _calendar, et_to_ns

GLOBEX_CLOSE_ET = (17, 0)
RTH_OPEN_ET = (9, 30)
RTH_CLOSE_ET = (16, 0)
# A trade date's period opens the evening before and the calendar skips at most a long weekend
# plus a holiday or two; a search longer than this means the calendar has run out of dates.
_MAX_SEARCH_DAYS = 14


class SessionPolicy(StrEnum):
    """Which part of each CME session the live deployment streams."""

    ALWAYS_ON = "always_on"
    RTH_ONLY = "rth_only"


@dataclass(frozen=True)
class StreamingPeriod:
    """A span ``[open_ns, close_ns)`` in which streaming is on, and the trade date it serves."""

    trade_date: dt.date
    open_ns: int
    close_ns: int

    def contains(self, ts_ns: int) -> bool:
        return self.open_ns <= ts_ns < self.close_ns

    @property
    def minutes(self) -> int:
        """Whole minutes in the period (RTH uptime counts these)."""
        return (self.close_ns - self.open_ns) // (60 * NS)


class CalendarRangeError(ValueError):
    """A date outside the span the exchange calendar covers."""


def _session_bounds(trade_date: dt.date) -> tuple[int, int] | None:
    """The library's ``(open_ns, close_ns)`` for a trade date, or None when it is no session."""
    cal = _calendar()
    label = trade_date.isoformat()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if not cal.is_session(label):
                return None
            open_ = cal.session_open(label)
            close = cal.session_close(label)
        except Exception as exc:  # exchange_calendars.errors.DateOutOfBounds and relatives
            raise CalendarRangeError(
                f"{trade_date} is outside the CMES calendar "
                f"({cal.first_session.date()} .. {cal.last_session.date()}): {exc}. "
                "The calendar is built for a year ahead; upgrade exchange_calendars or "
                "widen ifd_core.calendar's range."
            ) from exc
    return int(open_.value), int(close.value)


@lru_cache(maxsize=8192)
def streaming_period(trade_date: dt.date, policy: SessionPolicy | str) -> StreamingPeriod | None:
    """The streaming period serving ``trade_date`` under ``policy``; None on a non-trading day."""
    policy = SessionPolicy(policy)
    bounds = _session_bounds(trade_date)
    if bounds is None:
        return None
    lib_open, lib_close = bounds
    if policy is SessionPolicy.ALWAYS_ON:
        open_ns = lib_open
        close_ns = min(lib_close, et_to_ns(trade_date, *GLOBEX_CLOSE_ET))
    else:
        open_ns = et_to_ns(trade_date, *RTH_OPEN_ET)
        close_ns = min(lib_close, et_to_ns(trade_date, *RTH_CLOSE_ET))
    if close_ns <= open_ns:  # an early close before 09:30: no RTH that day
        return None
    return StreamingPeriod(trade_date, open_ns, close_ns)


def _ny_date(ts_ns: int) -> dt.date:
    return dt.datetime.fromtimestamp(ts_ns / NS, tz=NEW_YORK).date()


def period_at(ts_ns: int, policy: SessionPolicy | str) -> StreamingPeriod | None:
    """The period containing ``ts_ns``, or None (halt, weekend, holiday, outside RTH)."""
    day = _ny_date(ts_ns)
    # A period lies within its trade date's New York day or starts the evening before it.
    for trade_date in (day, day + dt.timedelta(days=1)):
        period = streaming_period(trade_date, policy)
        if period is not None and period.contains(ts_ns):
            return period
    return None


def next_period(ts_ns: int, policy: SessionPolicy | str) -> StreamingPeriod:
    """The first period whose close is after ``ts_ns``: the current one when in session.

    The controller sleeps until ``open_ns`` (if in the future) and streams until ``close_ns``.
    """
    day = _ny_date(ts_ns)
    for offset in range(_MAX_SEARCH_DAYS + 1):
        period = streaming_period(day + dt.timedelta(days=offset), policy)
        if period is not None and period.close_ns > ts_ns:
            return period
    raise CalendarRangeError(f"no streaming period within {_MAX_SEARCH_DAYS} days of {day}")


def trade_date_of(ts_ns: int) -> dt.date:
    """The CME trade date of an instant, by the lake's rule (``frames.trade_date``).

    Delegates to the vectorised expression the lake partitions by, so that the controller and the
    lake can never disagree on which date a record belongs to: after 17:00 New York an instant
    belongs to the next session, and weekends and holidays roll forward to the next session.
    That rule works per whole minute, so the (millisecond) polars call is cached per minute.
    """
    return _trade_date_of_minute(ts_ns // _MINUTE_NS)


_MINUTE_NS = 60 * NS


@lru_cache(maxsize=4096)
def _trade_date_of_minute(minute: int) -> dt.date:
    import polars as pl

    from ifd_core.marketdata.frames import _finish_dates, trade_date

    ts = pl.DataFrame({"ts": [minute * _MINUTE_NS]}, schema={"ts": pl.Int64})
    return _finish_dates(ts.select(trade_date("ts")))["date"][0]
