"""IFD v3 scoring: views, gates, the market-making filter, 'no baseline', a reachable EXTREME."""

from __future__ import annotations

import polars as pl
import pytest

from ifd_core.analysis.ifd_v3 import V3Params, score_v3

T0 = 1_772_460_000_000_000_000
W = 300_000_000_000
EXP = T0 + 5 * 86_400_000_000_000


def win(
    iid,
    right,
    buy,
    sell,
    *,
    strike=21000.0,
    k=0,
    z=4.0,
    unsigned=0,
    base=True,
    price=10.0,
    delta=None,
):
    vol = buy + sell + unsigned
    imb = (buy - sell) / (buy + sell) if buy + sell else 0.0
    row = {
        "instrument_id": iid,
        "right": right,
        "strike": strike,
        "expiration": EXP,
        "window_start": T0 + k * W,
        "underlying_price": 21000.0,
        "buy_volume": buy,
        "sell_volume": sell,
        "unsigned_volume": unsigned,
        "volume": vol,
        "trades": 20,
        "imbalance": imb,
        "buy_premium": buy * price * 20.0,
        "sell_premium": sell * price * 20.0,
        "instrument_has_baseline": base,
        "bucket_has_baseline": base,
        "instrument_data_quality": 1.0 if base else None,
        "bucket_data_quality": 1.0 if base else None,
    }
    for kind in ("instrument", "bucket"):
        row[f"{kind}_z_log_volume"] = z if base else None
        row[f"{kind}_z_imbalance"] = (z if imb >= 0 else -z) if base else None
        # the dominant side's volume is z standard deviations above its baseline
        row[f"{kind}_z_buy_volume"] = (z if buy >= sell else 0.0) if base else None
        row[f"{kind}_z_sell_volume"] = (z if sell > buy else 0.0) if base else None
    if delta is not None:
        row["delta_volume"] = (buy - sell) * delta
    return row


def run(rows, **kw):
    return score_v3(pl.DataFrame(rows), V3Params(**kw))


def test_views_follow_aggressor_side_and_right():
    out = run(
        [win(1, "P", 500, 0), win(2, "C", 500, 0, strike=21500), win(3, "P", 0, 500, strike=20500)]
    )
    views = dict(zip(out["instrument_id"], out["view"], strict=True))
    assert views == {1: "BEARISH", 2: "BULLISH", 3: "BULLISH"}
    assert dict(zip(out["instrument_id"], out["direction"], strict=True)) == {
        1: "BUY",
        2: "BUY",
        3: "SELL",
    }


def test_view_is_the_sign_of_delta_signed_volume():
    # algorithms.md §4.5 [proposal]: 500 puts bought (delta −0.4) → BEARISH; the same on calls
    # (+0.4) → BULLISH; 500 puts sold → BULLISH.
    out = run(
        [
            win(1, "P", 500, 0, delta=-0.4),
            win(2, "C", 500, 0, strike=21500, delta=0.4),
            win(3, "P", 0, 500, strike=20500, delta=-0.4),
        ]
    )
    assert dict(zip(out["instrument_id"], out["view"], strict=True)) == {
        1: "BEARISH",
        2: "BULLISH",
        3: "BULLISH",
    }
    assert out.sort("instrument_id")["delta_volume"].to_list() == [-200.0, 200.0, 200.0]


def test_constructed_extreme_case_reaches_the_top_tier():
    rows = []
    for i, strike in enumerate([20950.0, 21000.0, 21050.0, 21100.0]):
        for k, (b, s) in enumerate([(400, 100), (450, 50), (500, 0)]):  # imbalance 0.6, 0.8, 1.0
            rows.append(win(10 + i, "C", b, s, strike=strike, k=k))
    out = run(rows).filter(pl.col("window_start") == T0 + 2 * W)
    top = out.sort("confidence", descending=True).row(0, named=True)
    assert top["f_persistence"] == 1.0 and top["f_trend"] == pytest.approx(1.0)
    assert top["mm_likelihood"] == 0.0
    assert top["coordinated_strikes"] == 3
    assert top["tier"] == "EXTREME" and top["signal"] and top["view"] == "BULLISH"


def test_straddle_is_market_making_not_a_signal():
    out = run([win(1, "C", 500, 0), win(2, "P", 480, 0)])
    assert (out["straddle_likelihood"] > 0.9).all()
    assert not out["signal"].any()


def test_two_sided_churn_fails_the_imbalance_gate():
    out = run([win(1, "C", 260, 240)])
    assert not out["passes_gates"][0] and not out["signal"][0]


def test_no_baseline_is_neutral_and_lowers_quality():
    out = run([win(1, "C", 500, 0, base=False)]).row(0, named=True)
    assert out["f_size"] == 0.5 and out["f_imbalance"] == 0.5 and out["data_quality"] == 0.5
    assert not out["signal"]


def test_small_window_fails_volume_gate():
    assert not run([win(1, "C", 50, 0)])["passes_gates"][0]


def test_weights_must_sum_to_one():
    with pytest.raises(ValueError, match="sum to 1"):
        run([win(1, "C", 500, 0)], weights={"size": 0.5, "imbalance": 0.2})


def test_deterministic():
    rows = [win(1, "C", 500, 0), win(2, "P", 300, 20, strike=20900)]
    assert run(rows).equals(run(list(reversed(rows))))


def test_min_data_quality_gates_signals():
    row = win(1, "C", 500, 0)
    row["bucket_data_quality"] = 0.8
    assert run([row], min_confidence=0.5)["signal"][0]
    assert not run([row], min_confidence=0.5, min_data_quality=0.9)["signal"][0]
