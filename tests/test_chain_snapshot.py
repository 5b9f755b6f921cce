"""MarketSnapshot: the column contract, no look-ahead, point-in-time OI, and greeks."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import polars as pl
import pytest
from scipy.stats import norm

from ifd_core.analysis.black76 import RATE
from ifd_core.analysis.chain.snapshot import (
    CHAIN_SCHEMA,
    MarketSnapshot,
    build_snapshot,
    with_greeks,
)

NS = 1_000_000_000
T0 = int(dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC).timestamp()) * NS  # a window boundary
W = 300 * NS
EXP = T0 + 7 * 86_400 * NS
YEAR_S = 365.25 * 86_400


def b76(f, k, tau, vol, call, r=RATE):
    """Independent Black-76 price (not the module under test)."""
    sd = vol * math.sqrt(tau)
    d1 = (math.log(f / k) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    disc = math.exp(-r * tau)
    if call:
        return disc * (f * norm.cdf(d1) - k * norm.cdf(d2))
    return disc * (k * norm.cdf(-d2) - f * norm.cdf(-d1))


def window(iid, end, buy, sell, unsigned=0, vwap=10.0, strike=21000.0, right="C", uid=7):
    return {
        "instrument_id": iid,
        "raw_symbol": f"X{iid}",
        "root": "NQ",
        "right": right,
        "strike": strike,
        "expiration": EXP,
        "underlying_id": uid,
        "window_start": end - W,
        "window_end": end,
        "buy_volume": buy,
        "sell_volume": sell,
        "unsigned_volume": unsigned,
        "buy_premium": 0.0,
        "sell_premium": 0.0,
        "vwap": vwap,
    }


def frame(rows):
    return pl.DataFrame(rows).with_columns(
        pl.col("instrument_id").cast(pl.UInt32),
        pl.col("underlying_id").cast(pl.UInt32),
        pl.col(["expiration", "window_start", "window_end"]).cast(pl.UInt64),
    )


OI = pl.DataFrame({"instrument_id": [1, 2], "open_interest": [500, 700]})


def test_volumes_recent_premium_and_last_price():
    w = frame(
        [
            window(1, T0 + W, 10, 4, 1, vwap=10.0),
            window(1, T0 + 2 * W, 20, 5, 0, vwap=12.0),
            window(2, T0 + W, 3, 0, 0, vwap=8.0, strike=20900.0, right="P"),
        ]
    )
    s = build_snapshot(w, OI, None, T0 + 2 * W, underlying_price=21000.0)
    c = {r["instrument_id"]: r for r in s.chain.iter_rows(named=True)}
    assert (c[1]["buy_volume"], c[1]["sell_volume"], c[1]["unsigned_volume"]) == (30, 9, 1)
    # recent = windows closed in (as_of − 300 s, as_of]: only the second window
    assert (c[1]["recent_buy_volume"], c[1]["recent_sell_volume"]) == (20, 5)
    assert (c[2]["recent_buy_volume"], c[2]["recent_sell_volume"]) == (0, 0)
    # premium = Σ vwap × volume × $20 = 10×15×20 + 12×25×20
    assert c[1]["premium"] == pytest.approx(3000 + 6000)
    assert c[1]["last_price"] == 12.0
    assert c[1]["open_interest"] == 500 and c[2]["open_interest"] == 700
    assert s.underlying_id == 7
    assert {k: s.chain.schema[k] for k in CHAIN_SCHEMA} == CHAIN_SCHEMA


def test_no_look_ahead_windows_ending_after_as_of_are_ignored():
    w = frame([window(1, T0 + W, 10, 0, vwap=10.0), window(1, T0 + 2 * W, 99, 99, vwap=50.0)])
    at_end = build_snapshot(w, OI, None, T0 + W, underlying_price=21000.0)
    row = at_end.chain.row(0, named=True)
    assert (row["buy_volume"], row["sell_volume"], row["last_price"]) == (10, 0, 10.0)
    # one nanosecond before the first window's end: nothing has closed yet
    before = build_snapshot(w, OI, None, T0 + W - 1, underlying_price=21000.0)
    assert before.chain.height == 0
    assert any(f.startswith("no_data") for f in before.data_quality)


def test_open_interest_and_settlement_are_point_in_time():
    w = frame([window(1, T0 + W, 10, 0)])
    oi = pl.DataFrame(
        {"instrument_id": [1, 1], "open_interest": [500, 900], "ts_recv": [T0, T0 + 10 * W]}
    )
    st = pl.DataFrame(
        {"instrument_id": [1, 1], "settlement": [11.0, 99.0], "ts_recv": [T0 - 1, T0 + 10 * W]}
    )
    s = build_snapshot(w, oi, st, T0 + W, underlying_price=21000.0)
    row = s.chain.row(0, named=True)
    assert row["open_interest"] == 500 and row["settlement"] == 11.0
    dup = pl.DataFrame({"instrument_id": [1, 1], "open_interest": [1, 2]})
    with pytest.raises(ValueError, match="ts_recv"):
        build_snapshot(w, dup, None, T0 + W, underlying_price=21000.0)


def test_instruments_add_untraded_options_with_zero_volume():
    w = frame([window(1, T0 + W, 10, 0), window(5, T0 + W, 2, 0, strike=21100.0)])
    inst = pl.DataFrame(
        {
            "instrument_id": [1, 2, 3],
            "root": ["NQ", "NQ", "NQ"],
            "right": ["C", "P", "C"],
            "strike": [21000.0, 20900.0, 21000.0],
            "expiration": [EXP, EXP, EXP],
            "underlying_id": [7, 7, 8],  # instrument 3 is on another future
        }
    )
    s = build_snapshot(w, OI, None, T0 + W, underlying_price=21000.0, instruments=inst)
    # 2 did not trade; 5 traded but is missing from the master: kept, not dropped
    assert s.chain["instrument_id"].sort().to_list() == [1, 2, 5]
    put = s.chain.filter(pl.col("instrument_id") == 2).row(0, named=True)
    assert (put["buy_volume"], put["premium"], put["open_interest"]) == (0, 0.0, 700)
    assert put["last_price"] is None


def test_underlying_must_be_unambiguous_and_price_real():
    w = frame([window(1, T0 + W, 1, 0, uid=7), window(2, T0 + W, 1, 0, uid=8)])
    with pytest.raises(ValueError, match="underlying_id"):
        build_snapshot(w, OI, None, T0 + W, underlying_price=21000.0)
    s = build_snapshot(w, OI, None, T0 + W, underlying_price=21000.0, underlying_id=8)
    assert s.chain["instrument_id"].to_list() == [2]
    empty = build_snapshot(w.clear(), OI, None, T0, underlying_price=21000.0, underlying_id=7)
    assert empty.is_empty
    for bad in (0.0, float("nan"), -1.0):
        with pytest.raises(ValueError, match="underlying_price"):
            build_snapshot(w, OI, None, T0 + W, underlying_price=bad, underlying_id=7)


def test_snapshot_is_immutable_and_validated():
    s = build_snapshot(frame([window(1, T0 + W, 1, 0)]), OI, None, T0 + W, underlying_price=1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.underlying_price = 2.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="lacks columns"):
        MarketSnapshot(T0, 7, 21000.0, pl.DataFrame({"instrument_id": [1]}))


def greeks_case():
    """Four options of one expiry: priced by last trade, by settlement, by nothing (→ ATM IV),
    and one expiry without any price at all."""
    f, vol = 21010.0, 0.25
    tau = (EXP - (T0 + W)) / NS / YEAR_S
    atm_call = b76(f, 21000.0, tau, vol, True)
    put_settle = b76(f, 20900.0, tau, 0.30, False)
    rows = [
        window(1, T0 + W, 5, 0, vwap=atm_call, strike=21000.0, right="C"),
        window(2, T0 + W, 0, 0, 0, vwap=None, strike=20900.0, right="P"),
        window(3, T0 + W, 0, 0, 0, vwap=None, strike=21500.0, right="C"),
        {**window(4, T0 + W, 0, 0, 0, vwap=None, strike=21000.0), "expiration": EXP + 86400 * NS},
    ]
    w = frame(rows)
    st = pl.DataFrame({"instrument_id": [2], "settlement": [put_settle]})
    oi = pl.DataFrame({"instrument_id": [1, 2, 3, 4], "open_interest": [1, 1, 1, 1]})
    return build_snapshot(w, oi, st, T0 + W, underlying_price=f), f, tau


def test_with_greeks_implies_iv_and_falls_back_explicitly():
    snap, f, tau = greeks_case()
    g = with_greeks(snap)
    c = {r["instrument_id"]: r for r in g.chain.iter_rows(named=True)}
    assert c[1]["iv_source"] == "last" and c[1]["iv"] == pytest.approx(0.25, abs=1e-9)
    assert c[2]["iv_source"] == "settlement" and c[2]["iv"] == pytest.approx(0.30, abs=1e-9)
    # no price: the expiry's ATM IV (strike 21000 is nearest the future at 21010)
    assert c[3]["iv_source"] == "atm" and c[3]["iv"] == pytest.approx(0.25, abs=1e-9)
    assert c[3]["atm_strike"] == 21000.0
    # an expiry with no price anywhere: NaN and a flag, never a default vol
    assert c[4]["iv_source"] is None and math.isnan(c[4]["iv"]) and math.isnan(c[4]["delta"])
    assert any(f.startswith("iv_missing:1") for f in g.data_quality)
    assert any(f.startswith("iv_from_atm_fallback:1") for f in g.data_quality)
    # delta and gamma against the textbook formulas
    sd = 0.25 * math.sqrt(tau)
    d1 = (math.log(f / 21000.0) + 0.5 * sd * sd) / sd
    assert c[1]["delta"] == pytest.approx(math.exp(-RATE * tau) * norm.cdf(d1), rel=1e-7)
    gamma = math.exp(-RATE * tau) * norm.pdf(d1) / (f * sd)
    assert c[1]["gamma"] == pytest.approx(gamma, rel=1e-7)
    d1p = (math.log(f / 20900.0) + 0.5 * 0.09 * tau) / (0.30 * math.sqrt(tau))
    assert c[2]["delta"] == pytest.approx(-math.exp(-RATE * tau) * norm.cdf(-d1p), rel=1e-7)


def test_with_greeks_on_empty_snapshot_keeps_the_contract():
    w = frame([window(1, T0 + W, 1, 0)]).clear()
    s = with_greeks(build_snapshot(w, OI, None, T0, underlying_price=21000.0, underlying_id=7))
    assert s.has_greeks and s.chain.height == 0
