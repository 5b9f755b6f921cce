"""The CME calendar, live session periods and the trade-date rule, in one module.

Holidays and early closes come from ``exchange_calendars`` ("CMES"), not a hand-written list. A
Globex session opens at 18:00 New York on the evening before its *trade date*; everything keyed by
"date" (lake partitions, baselines, open interest) uses that trade date. ``live.session_policy``
picks ``always_on`` (the whole Globex session, closed 17:00 New York) or ``rth_only`` (09:30-16:00).
Instants are int ns since the epoch, UTC; periods are half open. What the library says about CMES,
checked, is in docs/operations.md ("Sessions and trade dates").
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from ifd_core.units import NS

NEW_YORK = ZoneInfo("America/New_York")


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


def trade_date_bounds(trade_date: dt.date) -> tuple[int, int]:
    """``[start_ns, end_ns)``: every instant the trade-date rule (``trade_date_of``) puts on
    ``trade_date``, from the previous session's 17:00 New York close to this one's.

    Wider than the streaming period: it also holds the 17:00-18:00 pre-open (order adds that
    build the books), a weekend or holiday before the session and, on an early-close day, the
    records up to 17:00. The live run keys its records by this span so that it consumes exactly
    the records the lake partitions into the date (``streaming_period`` says when to stream).
    """
    return (
        et_to_ns(previous_trading_day(trade_date), *GLOBEX_CLOSE_ET),
        et_to_ns(trade_date, *GLOBEX_CLOSE_ET),
    )


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
    """The CME trade date of an instant, by the lake's rule (``trade_date``).

    Delegates to the vectorised expression the lake partitions by, so that the controller and the
    lake can never disagree on which date a record belongs to: after 17:00 New York an instant
    belongs to the next session, and weekends and holidays roll forward to the next session.
    That rule works per whole minute, so the (millisecond) polars call is cached per minute.
    """
    return _trade_date_of_minute(ts_ns // _MINUTE_NS)


_MINUTE_NS = 60 * NS


@lru_cache(maxsize=4096)
def _trade_date_of_minute(minute: int) -> dt.date:
    ts = pl.DataFrame({"ts": [minute * _MINUTE_NS]}, schema={"ts": pl.Int64})
    return snap_to_sessions(ts.select(trade_date("ts")))["date"][0]


def new_york_date(col: str) -> pl.Expr:
    """The New York calendar date of a column of ns UTC instants (an option's expiration, say)."""
    return (
        pl.col(col)
        .cast(pl.Int64)
        .cast(pl.Datetime("ns", "UTC"))
        .dt.convert_time_zone("America/New_York")
        .dt.date()
    )


# The lake's trade-date rule as polars expressions (docs/algorithms.md, "Trade dates").


def _calendar_date(col: str) -> pl.Expr:
    # Globex closes at 17:00 New York; everything after (the 17:00-18:00 pre-open included)
    # belongs to the next session. Converted per whole minute: far fewer time-zone lookups.
    minute = (pl.col(col).cast(pl.Int64) // 60_000_000_000) * 60_000_000_000
    return (
        minute.cast(pl.Datetime("ns", "UTC"))
        .dt.convert_time_zone("America/New_York")
        .dt.offset_by("7h")
        .dt.date()
    )


def trade_date(col: str) -> pl.Expr:
    """Placeholder date column: ``snap_to_sessions`` moves it to a CME session afterwards."""
    return _calendar_date(col).alias("date")


def calendar_dates(ts: np.ndarray) -> pl.Series:
    """``trade_date``'s placeholder dates for a whole column of instants at once.

    The same rule as the expression (the date of New York time + 7 h: a new date from each
    17:00 New York), found by locating each instant among the few 17:00 boundaries its span
    crosses (``searchsorted``) instead of converting millions of rows to New York time, which
    was a third of turning a day's records into frames. 17:00 is a whole minute and no DST
    switch falls between 17:00 and midnight, so it equals the expression on every instant
    (tests/test_sessions.py pins it). ``snap_to_sessions`` still moves the dates to sessions.
    """
    ts = np.asarray(ts)
    if ts.size == 0:
        return pl.Series("date", [], dtype=pl.Date)
    if ts.dtype.kind == "u" and int(ts.max()) > np.iinfo(np.int64).max:
        raise ValueError("an instant beyond int64 nanoseconds has no trade date")
    ts = ts.astype(np.int64, copy=False)
    first, last = _ny_date(int(ts.min())), _ny_date(int(ts.max()))
    days = [first + dt.timedelta(days=k) for k in range(-1, (last - first).days + 3)]
    # boundaries[k]: the instant from which the placeholder date is days[k]
    boundaries = np.array([et_to_ns(d - dt.timedelta(days=1), *GLOBEX_CLOSE_ET) for d in days])
    index = np.searchsorted(boundaries, ts, side="right") - 1
    return pl.Series("date", np.array(days, dtype="datetime64[D]")[index], dtype=pl.Date)


def snap_to_sessions(df: pl.DataFrame) -> pl.DataFrame:
    """Snap dates that are not CME sessions (weekends, holidays) to the next session.

    A Sunday-evening record belongs to Monday's session, and one on the eve of a holiday to the
    session after it. Only the few distinct dates go through the calendar.
    """
    if df.height == 0:
        return df
    mapping = {d: next_session(d) for d in df["date"].unique().to_list() if d is not None}
    return df.with_columns(pl.col("date").replace_strict(mapping, return_dtype=pl.Date))
