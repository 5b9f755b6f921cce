"""Baselines: earlier sessions only, sample statistics with a floor, explicit 'no baseline'."""

from __future__ import annotations

import datetime as dt
import math

import polars as pl
import pytest

from ifd_core.analysis.baselines import BaselineParams, add_bucket_keys, build_baselines, score
from ifd_core.calendar import trading_days

DAYS = trading_days(dt.date(2026, 3, 2), 7)
NS = 1_000_000_000


def window(
    day: dt.date,
    buy: int,
    sell: int,
    iid: int = 5001,
    strike: float = 21000.0,
    underlying: float = 21000.0,
    hour: int = 14,
) -> dict:
    start = int(dt.datetime(day.year, day.month, day.day, hour, 0, tzinfo=dt.UTC).timestamp()) * NS
    return {
        "date": day,
        "window_start": start,
        "instrument_id": iid,
        "strike": strike,
        "right": "C",
        "expiration": start + 5 * 86_400 * NS,
        "underlying_price": underlying,
        "buy_volume": buy,
        "sell_volume": sell,
        "unsigned_volume": 0,
        "imbalance": (buy - sell) / (buy + sell) if buy + sell else 0.0,
    }


def frame(rows):
    return add_bucket_keys(pl.DataFrame(rows))


def test_current_session_is_excluded_and_statistics_match_the_spec():
    # Prior five sessions' buy volume 10, 12, 14, 16, 18; the judged session has 22.
    history = frame(
        [window(d, b, 0) for d, b in zip(DAYS[:5], [10, 12, 14, 16, 18], strict=True)]
        + [window(DAYS[5], 22, 0)]
    )
    p = BaselineParams(std_floor={"buy_volume": 0.0})
    b = build_baselines(history, DAYS[5], DAYS[:5], p)
    row = b["instrument"].row(0, named=True)
    assert row["n"] == 5 and row["has_baseline"]
    assert row["mean_buy_volume"] == pytest.approx(14.0)
    assert row["std_buy_volume"] == pytest.approx(3.1623, abs=1e-4)  # sample std
    judged = score(frame([window(DAYS[5], 22, 0)]), b).row(0, named=True)
    assert judged["instrument_z_buy_volume"] == pytest.approx(2.530, abs=1e-3)
    with pytest.raises(ValueError, match="cannot include"):
        build_baselines(history, DAYS[5], DAYS[:6], p)


def test_fewer_than_min_samples_is_no_baseline():
    history = frame([window(d, 10, 0) for d in DAYS[:4]])
    b = build_baselines(history, DAYS[5], DAYS[:5])
    assert not b["instrument"]["has_baseline"][0]
    judged = score(frame([window(DAYS[5], 100, 0)]), b).row(0, named=True)
    assert judged["instrument_has_baseline"] is False
    assert judged["instrument_z_buy_volume"] is None


def test_std_floor_keeps_a_flat_history_from_exploding():
    history = frame([window(d, 10, 0) for d in DAYS[:5]])
    b = build_baselines(history, DAYS[5], DAYS[:5], BaselineParams(std_floor={"buy_volume": 5.0}))
    judged = score(frame([window(DAYS[5], 12, 0)]), b).row(0, named=True)
    assert judged["instrument_z_buy_volume"] == pytest.approx(0.4)


def test_bucket_follows_moneyness_not_the_strike():
    # The same strike at another underlying is another bucket; another strike at the same
    # moneyness shares it.
    a = frame([window(DAYS[0], 10, 0, iid=1, strike=21000, underlying=21000)])
    b = frame([window(DAYS[0], 10, 0, iid=2, strike=21000, underlying=20000)])
    c = frame([window(DAYS[0], 10, 0, iid=3, strike=22000, underlying=22000)])
    assert a["moneyness_bucket"][0] != b["moneyness_bucket"][0]
    assert a["moneyness_bucket"][0] == c["moneyness_bucket"][0]
    assert a["dte_bucket"][0] == "[2.5, 7.5)"
    assert a["time_bucket"][0] == (9 * 60) // 30  # 14:00 UTC = 09:00 New York (EST)


def test_data_quality_is_sessions_present_over_lookback():
    history = frame([window(d, 10, 1) for d in DAYS[:5]])
    b = build_baselines(history, DAYS[6], DAYS[:6])
    row = b["bucket"].row(0, named=True)
    assert row["data_quality"] == pytest.approx(5 / 6)
    assert row["sessions_used"] == DAYS[:5]
    assert math.isclose(row["mean_log_volume"], math.log1p(11))
