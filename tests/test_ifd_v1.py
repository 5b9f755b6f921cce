"""Dead Simple v1 with the spec's hand cases (docs/algorithms.md §7), PROPOSAL semantics."""

from __future__ import annotations

import math

import polars as pl
import pytest

from ifd_core.analysis.ifd_v1 import detect_v1


def option(strike, right, buy, oi, last, sell=0, unsigned=0, underlying=21870.0):
    volume = buy + sell + unsigned
    return {
        "strike": float(strike),
        "right": right,
        "buy_volume": buy,
        "sell_volume": sell,
        "unsigned_volume": unsigned,
        "premium": volume * last * 20.0,
        "open_interest": oi,
        "underlying_price": underlying,
    }


def run(*rows):
    return detect_v1(pl.DataFrame(list(rows)))


def test_put_buying_is_an_extreme_bearish_signal_with_a_plan():
    s = run(option(21840, "P", 2750, 50, 35.5)).row(0, named=True)
    assert s["vol_oi_ratio"] == pytest.approx(55.0)
    assert s["premium"] == pytest.approx(1_952_500)
    assert (s["tier"], s["view"], s["trade_side"]) == ("EXTREME", "BEARISH", "SHORT")
    assert s["target_price"] == 21840 and s["stop_price"] == pytest.approx(21885.0)
    assert s["distance_percent"] == pytest.approx(0.137, abs=1e-3) and s["actionable"]


def test_call_buying_is_moderate_bullish_and_c_means_call():
    s = run(option(21900, "C", 1200, 100, 42.0)).row(0, named=True)
    assert (s["vol_oi_ratio"], s["premium"], s["tier"]) == (12.0, 1_008_000, "MODERATE")
    assert (s["view"], s["trade_side"], s["stop_price"]) == ("BULLISH", "LONG", 21855.0)


def test_sold_calls_are_bearish_and_sold_puts_bullish():
    assert run(option(21900, "C", 0, 100, 42.0, sell=1200))["view"].to_list() == ["BEARISH"]
    assert run(option(21840, "P", 0, 50, 35.5, sell=2750))["view"].to_list() == ["BULLISH"]


def test_signals_are_ordered_by_strike():
    out = run(option(21900, "C", 1200, 100, 42.0), option(21840, "P", 2750, 50, 35.5))
    assert out["strike"].to_list() == [21840.0, 21900.0]


def test_thresholds_are_inclusive():
    # ratio exactly 10, volume exactly 500, premium exactly $100,000
    assert run(option(21900, "C", 500, 50, 10.0)).height == 1
    assert run(option(21900, "C", 499, 49.9, 10.03)).height == 0  # volume below 500


def test_strike_far_from_the_market_is_not_actionable():
    s = run(option(22400, "C", 1200, 100, 42.0)).row(0, named=True)
    assert s["distance_percent"] == pytest.approx(2.42, abs=0.01) and not s["actionable"]


def test_new_strike_with_no_open_interest_is_flagged_not_skipped():
    s = run(option(21900, "C", 1200, 0, 42.0)).row(0, named=True)
    assert math.isinf(s["vol_oi_ratio"]) and s["new_strike"] and s["tier"] == "EXTREME"


def test_no_plan_when_the_strike_is_on_the_wrong_side():
    s = run(option(21800, "C", 1200, 100, 42.0)).row(0, named=True)  # ITM call bought: LONG
    assert s["target_price"] is None and s["stop_price"] is None
