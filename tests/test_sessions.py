"""Session controller: streaming periods from the CMES calendar under both policies (docs/operations.md §Sessions and trade dates)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from ifd_core.calendar import (
    NS,
    SessionPolicy,
    StreamingPeriod,
    calendar_dates,
    et_to_ns,
    next_period,
    period_at,
    previous_trading_day,
    snap_to_sessions,
    streaming_period,
    trade_date,
    trade_date_bounds,
    trade_date_of,
)
from ifd_core.settings import get_settings

D = dt.date
ALWAYS, RTH = SessionPolicy.ALWAYS_ON, SessionPolicy.RTH_ONLY


def utc_ns(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp()) * NS


@pytest.mark.parametrize("holiday", [D(2024, 12, 25), D(2024, 3, 29), D(2025, 1, 1), D(2025, 1, 9)])
def test_holiday_has_no_period_under_either_policy(holiday):
    assert streaming_period(holiday, RTH) is None
    assert streaming_period(holiday, ALWAYS) is None
    # Christmas noon: nothing is open, and the controller sleeps until the 26th's session.
    noon = et_to_ns(holiday, 12)
    assert period_at(noon, RTH) is None
    assert period_at(noon, ALWAYS) is None
    assert next_period(noon, RTH).trade_date > holiday
    assert next_period(noon, ALWAYS).trade_date > holiday


def test_rth_only_never_opens_on_christmas_day():
    # Every minute from Christmas Eve's early close to Boxing Day's RTH open is outside RTH.
    start, end = et_to_ns(D(2024, 12, 24), 13), et_to_ns(D(2024, 12, 26), 9, 30)
    assert all(period_at(t, RTH) is None for t in range(start, end, 60 * NS))
    assert next_period(start, RTH) == StreamingPeriod(
        D(2024, 12, 26), end, et_to_ns(D(2024, 12, 26), 16)
    )


@pytest.mark.parametrize("day", [D(2024, 11, 29), D(2024, 12, 24), D(2025, 11, 28)])
def test_early_close_day_stops_at_the_librarys_early_close(day):
    from ifd_core.calendar import _calendar

    lib_close = int(_calendar().session_close(day.isoformat()).value)
    assert lib_close == et_to_ns(day, 13)  # CMES early close: 12:00 Chicago = 13:00 New York
    rth = streaming_period(day, RTH)
    glob = streaming_period(day, ALWAYS)
    assert rth == StreamingPeriod(day, et_to_ns(day, 9, 30), lib_close)
    assert rth.minutes == 210
    assert glob.close_ns == lib_close
    assert period_at(lib_close - 1, RTH) == rth
    assert period_at(lib_close, RTH) is None
    assert period_at(lib_close, ALWAYS) is None


def test_normal_monday_opens_sunday_evening_and_closes_at_five():
    monday = D(2024, 6, 10)
    p = streaming_period(monday, ALWAYS)
    assert p.open_ns == et_to_ns(D(2024, 6, 9), 18) == utc_ns(2024, 6, 9, 22)
    assert p.close_ns == et_to_ns(monday, 17) == utc_ns(2024, 6, 10, 21)
    r = streaming_period(monday, RTH)
    assert (r.open_ns, r.close_ns) == (utc_ns(2024, 6, 10, 13, 30), utc_ns(2024, 6, 10, 20))
    assert r.minutes == 390
    # Saturday and Sunday afternoon: closed; the next period is Monday's, opening Sunday 18:00.
    for t in (et_to_ns(D(2024, 6, 8), 12), et_to_ns(D(2024, 6, 9), 17, 59)):
        assert period_at(t, ALWAYS) is None
        assert next_period(t, ALWAYS) == p
    assert period_at(et_to_ns(D(2024, 6, 9), 18), ALWAYS) == p
    assert period_at(et_to_ns(D(2024, 6, 10), 3), RTH) is None
    assert next_period(et_to_ns(D(2024, 6, 10), 3), RTH) == r


def test_daily_halt_is_outside_every_period():
    tue, wed = D(2024, 6, 11), D(2024, 6, 12)
    for minute in (0, 1, 30, 59):
        t = et_to_ns(tue, 17, minute)
        assert period_at(t, ALWAYS) is None
        assert next_period(t, ALWAYS) == streaming_period(wed, ALWAYS)
    assert period_at(et_to_ns(tue, 17) - 1, ALWAYS).trade_date == tue
    assert period_at(et_to_ns(tue, 18), ALWAYS).trade_date == wed


def test_friday_close_rolls_to_sunday_evening():
    fri = D(2024, 6, 14)
    after = et_to_ns(fri, 17, 30)
    assert period_at(after, ALWAYS) is None
    assert next_period(after, ALWAYS).open_ns == et_to_ns(D(2024, 6, 16), 18)


def test_dst_transitions_give_the_right_utc():
    # 2024-03-10 (spring forward): Monday's session opens Sunday 18:00 EDT = 22:00 UTC, while
    # Friday's opened Thursday 18:00 EST = 23:00 UTC.
    assert streaming_period(D(2024, 3, 8), ALWAYS).open_ns == utc_ns(2024, 3, 7, 23)
    assert streaming_period(D(2024, 3, 8), ALWAYS).close_ns == utc_ns(2024, 3, 8, 22)
    assert streaming_period(D(2024, 3, 11), ALWAYS).open_ns == utc_ns(2024, 3, 10, 22)
    assert streaming_period(D(2024, 3, 11), ALWAYS).close_ns == utc_ns(2024, 3, 11, 21)
    assert streaming_period(D(2024, 3, 11), RTH).open_ns == utc_ns(2024, 3, 11, 13, 30)
    # 2024-11-03 (fall back): Monday opens Sunday 18:00 EST = 23:00 UTC; RTH 14:30-21:00 UTC.
    assert streaming_period(D(2024, 11, 1), ALWAYS).close_ns == utc_ns(2024, 11, 1, 21)
    assert streaming_period(D(2024, 11, 4), ALWAYS).open_ns == utc_ns(2024, 11, 3, 23)
    r = streaming_period(D(2024, 11, 4), RTH)
    assert (r.open_ns, r.close_ns) == (utc_ns(2024, 11, 4, 14, 30), utc_ns(2024, 11, 4, 21))
    # The Globex session spanning a DST night is still 23 hours (18:00 to 17:00 local).
    p = streaming_period(D(2024, 3, 11), ALWAYS)
    assert p.close_ns - p.open_ns == 23 * 3600 * NS


def test_policy_accepts_the_settings_string(monkeypatch):
    monkeypatch.setenv("IFD_LIVE__SESSION_POLICY", "rth_only")
    policy = SessionPolicy(get_settings().live.session_policy)
    assert policy is RTH
    assert streaming_period(D(2024, 6, 10), "rth_only") == streaming_period(D(2024, 6, 10), RTH)


def test_next_period_is_the_current_one_while_in_session():
    t = et_to_ns(D(2024, 6, 12), 11)
    assert next_period(t, RTH) == period_at(t, RTH)
    assert next_period(t, ALWAYS) == period_at(t, ALWAYS)


def test_every_period_lies_in_one_trade_date():
    # The controller and the lake must agree on dates: every instant of a period has its date.
    for day in (D(2024, 3, 11), D(2024, 11, 29), D(2024, 12, 26), D(2025, 1, 2)):
        p = streaming_period(day, ALWAYS)
        for t in (p.open_ns, (p.open_ns + p.close_ns) // 2, p.close_ns - 1):
            assert trade_date_of(t) == day


def test_trade_date_of_matches_the_lake_partitioning():
    rng = np.random.default_rng(7)
    start, end = utc_ns(2024, 11, 20), utc_ns(2025, 1, 10)
    ts = np.concatenate(
        [
            rng.integers(start, end, 400),
            [et_to_ns(D(2024, 12, 24), 16, 59, 59), et_to_ns(D(2024, 12, 24), 17)],
        ]
    )
    df = snap_to_sessions(pl.DataFrame({"ts": ts}).with_columns(trade_date("ts")))
    assert [trade_date_of(int(t)) for t in ts] == df["date"].to_list()
    assert trade_date_of(et_to_ns(D(2024, 12, 24), 17)) == D(2024, 12, 26)


@pytest.mark.parametrize(
    "day",
    # a Monday, the session after Good Friday, an early close, the first session after DST began
    [D(2024, 6, 10), D(2024, 4, 1), D(2024, 11, 29), D(2024, 3, 11), D(2024, 12, 26)],
)
def test_trade_date_bounds_are_exactly_the_instants_of_the_trade_date(day):
    start, end = trade_date_bounds(day)
    assert trade_date_of(start) == day and trade_date_of(end - 1) == day
    assert trade_date_of(start - 1) < day < trade_date_of(end)
    assert start == et_to_ns(previous_trading_day(day), 17) and end == et_to_ns(day, 17)
    # The streaming period lies inside; the span also holds the pre-open (and, on an early
    # close, the hours to 17:00) that the lake partitions into the date.
    period = streaming_period(day, ALWAYS)
    assert start < period.open_ns and period.close_ns <= end
    assert trade_date_of(period.open_ns - 30 * 60 * NS) == day  # 17:30 pre-open


def test_calendar_dates_of_a_column_equal_the_trade_date_expression():
    """The searchsorted rule the frames use gives the expression's date on every instant:
    random ones over three years, and each side of 17:00 New York on DST switch days."""
    rng = np.random.default_rng(11)
    start, end = utc_ns(2024, 1, 1), utc_ns(2027, 1, 1)
    edges = [
        et_to_ns(day, 17) + delta
        for day in (D(2024, 3, 9), D(2024, 3, 10), D(2024, 11, 2), D(2024, 11, 3), D(2026, 3, 8))
        for delta in (-1, 0, 1, -60 * NS, 60 * NS)
    ]
    ts = np.concatenate([rng.integers(start, end, 20_000), edges]).astype(np.uint64)
    expected = pl.DataFrame({"ts": ts}).select(trade_date("ts"))["date"]
    assert calendar_dates(ts).to_list() == expected.to_list()
    assert calendar_dates(ts[:0]).dtype == pl.Date and calendar_dates(ts[:0]).len() == 0
    with pytest.raises(ValueError, match="int64"):
        calendar_dates(np.array([np.iinfo(np.uint64).max], dtype=np.uint64))
