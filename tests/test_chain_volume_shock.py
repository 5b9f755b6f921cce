"""Volume shock (docs/algorithms.md §9): signed recent flow vs a time-of-day baseline, the dealer hedge in futures
(sign convention tested), hedge share, sweeps, and no recommendation with EV ≤ 0."""

from __future__ import annotations

import datetime as dt
import math

import polars as pl
import pytest

from ifd_core.analysis.chain.expected_value import ExpectedValueParams
from ifd_core.analysis.chain.snapshot import MarketSnapshot
from ifd_core.analysis.chain.volume_shock import (
    VolumeShockParams,
    analyze_volume_shock,
    time_of_day_baseline,
)

NS = 1_000_000_000
T0 = int(dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC).timestamp()) * NS
EXP = T0 + 3 * 86_400 * NS
F = 21000.0


def snap(rows: list[dict], futures_volume: int | None = None) -> MarketSnapshot:
    """Options with recent flow and *given* deltas (so the spec's δ = ±0.5 is exact)."""
    out = []
    for i, r in enumerate(rows, start=1):
        out.append(
            {
                "instrument_id": i,
                "root": "NQ",
                "expiration": r.get("expiration", EXP),
                "strike": r["strike"],
                "right": r["right"],
                "open_interest": 1000,
                "buy_volume": r["buy"],
                "sell_volume": r["sell"],
                "unsigned_volume": 0,
                "recent_buy_volume": r["buy"],
                "recent_sell_volume": r["sell"],
                "premium": 1000.0,
                "last_price": 50.0,
                "settlement": None,
                "tau": 3 / 365.25,
                "iv": 0.20,
                "iv_source": "last",
                "atm_iv": 0.20,
                "atm_strike": F,
                "delta": r["delta"],
                "gamma": 1e-4,
            }
        )
    return MarketSnapshot(T0, 1, F, pl.DataFrame(out), futures_volume=futures_volume)


def baseline(n: int, volume: float, sessions: int = 20) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "instrument_id": list(range(1, n + 1)),
            "baseline_volume": [volume] * n,
            "sessions": [sessions] * n,
        }
    )


def test_customer_buys_atm_puts_dealer_sells_futures():
    # [proposal] customers buy 300 ATM puts (δ −0.5): dealers become long 150 deltas and hedge
    # by selling 150 futures
    s = snap([{"strike": F, "right": "P", "buy": 300, "sell": 0, "delta": -0.5}], 1500)
    r = analyze_volume_shock(s, baseline(1, 25.0))
    assert r.status == "shock" and r.shocked == 1
    assert r.ratio == pytest.approx(12.0)
    assert r.dealer_delta == pytest.approx(150.0)
    assert r.hedge_futures == pytest.approx(-150.0)
    assert r.hedge_direction == "SELL_FUTURES"
    # hedge share vs futures volume in the window, no ×100 equity multiplier
    assert r.hedge_share == pytest.approx(150 / 1500)
    # ratio 12 > 8 and |hedge| 150 > 50 futures
    assert r.flow_type == "GAMMA_EMERGENCY" and r.urgency == "HIGH"
    assert r.response_minutes == 2.0


def test_calls_and_puts_bought_net_out_in_delta():
    # [ref] case 1 in fixed form: 400 calls and 300 puts bought at the money. The reference
    # says Δ = +35,000 (put sign bug, ×100); the hedge is 400×0.5 − 300×0.5 = +50 futures.
    s = snap(
        [
            {"strike": F, "right": "C", "buy": 400, "sell": 0, "delta": 0.5},
            {"strike": F, "right": "P", "buy": 300, "sell": 0, "delta": -0.5},
        ]
    )
    r = analyze_volume_shock(s, baseline(2, 25.0))
    assert r.hedge_futures == pytest.approx(50.0) and r.hedge_direction == "BUY_FUTURES"
    assert r.ratio == pytest.approx(700 / 50)  # 14.0 as in the reference
    assert r.score == pytest.approx(0.95)  # [ref] confidence min(0.95, ratio / 10)
    assert r.flow_type == "AMBIGUOUS_SIGNAL"  # |hedge| 50 is not above 50
    assert (r.urgency, r.response_minutes) == ("MEDIUM", 5.0)  # 50 > 30
    assert r.hedge_share is None
    assert any(f.startswith("futures_volume_missing") for f in r.data_quality)


def test_customers_selling_calls_make_dealers_sell_futures():
    s = snap([{"strike": F, "right": "C", "buy": 0, "sell": 200, "delta": 0.5}])
    r = analyze_volume_shock(s, baseline(1, 10.0))
    assert r.hedge_futures == pytest.approx(-100.0) and r.dealer_delta == pytest.approx(100.0)
    assert r.hedge_direction == "SELL_FUTURES"


def test_small_ratio_is_no_shock():
    # [ref] 40 calls + 25 puts against a baseline of 25 each: ratios 1.6 and 1.0
    s = snap(
        [
            {"strike": F, "right": "C", "buy": 40, "sell": 0, "delta": 0.5},
            {"strike": F, "right": "P", "buy": 25, "sell": 0, "delta": -0.5},
        ]
    )
    r = analyze_volume_shock(s, baseline(2, 25.0))
    assert r.status == "no_shock" and r.hedge_direction == "NONE" and r.recommendation is None
    assert r.options["ratio"].sort().to_list() == pytest.approx([1.0, 1.6])


def test_volume_threshold_and_baseline_floor():
    # ratio uses max(baseline, 1): 101 contracts on a zero baseline is a shock, 100 is not
    assert analyze_volume_shock(
        snap([{"strike": F, "right": "C", "buy": 101, "sell": 0, "delta": 0.5}]), baseline(1, 0.0)
    ).ratio == pytest.approx(101.0)
    r = analyze_volume_shock(
        snap([{"strike": F, "right": "C", "buy": 100, "sell": 0, "delta": 0.5}]), baseline(1, 0.0)
    )
    assert r.status == "no_shock"


def test_missing_or_short_baseline_is_not_guessed():
    s = snap([{"strike": F, "right": "P", "buy": 300, "sell": 0, "delta": -0.5}])
    r = analyze_volume_shock(s, None)
    assert r.status == "no_shock" and any(f.startswith("no_baseline") for f in r.data_quality)
    r = analyze_volume_shock(s, baseline(1, 25.0, sessions=5))  # fewer than 10 sessions
    assert r.status == "no_shock" and r.options["ratio"].to_list() == [None]
    assert any(f.startswith("baseline_missing:1") for f in r.data_quality)


def test_no_recent_flow_is_no_data():
    s = snap([{"strike": F, "right": "C", "buy": 0, "sell": 0, "delta": 0.5}])
    r = analyze_volume_shock(s, baseline(1, 10.0))
    assert r.status == "no_data" and any(f.startswith("no_data") for f in r.data_quality)


THREE = [
    {"strike": k, "right": "C", "buy": 150, "sell": 0, "delta": 0.1}
    for k in (21000.0, 21050.0, 21100.0)
]  # |hedge| = 45 futures: below the emergency threshold


def trades(offsets_s: list[float], ids: list[int], side: str = "B") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts_event": [T0 - 100 * NS + int(o * NS) for o in offsets_s],
            "instrument_id": ids,
            "size": [150] * len(ids),
            "aggressor": [side] * len(ids),
        }
    )


def test_sweep_three_strikes_within_a_second():
    r = analyze_volume_shock(
        snap(THREE), baseline(3, 10.0), trades=trades([0, 0.3, 0.6], [1, 2, 3])
    )
    assert r.sweep.basis == "trades" and r.sweep.is_sweep
    assert (r.sweep.strikes, r.sweep.expiries, r.sweep.side) == (3, 1, "B")
    assert r.flow_type == "INSTITUTIONAL_SWEEP"
    assert r.hedge_futures == pytest.approx(45.0)


def test_spread_out_prints_are_not_a_sweep():
    r = analyze_volume_shock(snap(THREE), baseline(3, 10.0), trades=trades([0, 5, 10], [1, 2, 3]))
    assert not r.sweep.is_sweep and r.sweep.strikes == 1
    assert r.flow_type == "AMBIGUOUS_SIGNAL"
    # trades after as_of never count (no look-ahead)
    late = trades([0, 0.3, 100.5], [1, 2, 3])  # the third print is 0.5 s after as_of
    r = analyze_volume_shock(snap(THREE), baseline(3, 10.0), trades=late)
    assert r.sweep.strikes == 2 and not r.sweep.is_sweep


def test_one_strike_across_three_expiries_is_a_sweep_too():
    day = 86_400 * NS
    rows = [{**THREE[0], "expiration": EXP + i * day} for i in range(3)]
    r = analyze_volume_shock(snap(rows), baseline(3, 10.0), trades=trades([0, 0.2, 0.4], [1, 2, 3]))
    assert (r.sweep.strikes, r.sweep.expiries, r.sweep.series) == (1, 3, 3)
    assert r.sweep.is_sweep and r.flow_type == "INSTITUTIONAL_SWEEP"


def test_sweep_fallback_counts_shocked_strikes_in_the_window():
    r = analyze_volume_shock(snap(THREE), baseline(3, 10.0))
    assert r.sweep.basis == "window" and r.sweep.strikes == 3 and r.sweep.is_sweep


def test_recommendations_need_positive_ev():
    s = snap([{"strike": F, "right": "P", "buy": 300, "sell": 0, "delta": -0.5}], 1500)
    loose = ExpectedValueParams(min_ev=-1e9, min_probability=0.0)
    r = analyze_volume_shock(s, baseline(1, 25.0), ev_params=loose)
    # uncalibrated: the driftless EV of every plan is −costs, so nothing is recommended
    assert r.recommendation is None
    assert any(f.startswith("recommendation_dropped") for f in r.data_quality)
    tilted = ExpectedValueParams(coefficients={"volume_shock": 1.0}, min_ev=0.0, min_probability=0)
    r = analyze_volume_shock(
        s, baseline(1, 25.0), ev_params=tilted, features={"volume_shock": -0.95}
    )
    rec = r.recommendation
    assert rec is not None and rec.direction == "SHORT" and rec.calibrated
    assert rec.ev_net > 0 and rec.target < F < rec.stop
    assert rec.horizon_s == 120.0  # the expected hedge response time when none is configured


def test_time_of_day_baseline_is_the_median_over_earlier_sessions():
    day = 86_400 * NS
    instants = [T0 - i * day for i in (1, 2, 3)]
    w = pl.DataFrame(
        {
            "instrument_id": [1, 1, 1, 2, 1],
            "window_end": [
                instants[0],
                instants[1],
                instants[2],
                instants[0],
                instants[0] - 600 * NS,
            ],
            "buy_volume": [6, 20, 15, 6, 1000],  # the last window is outside (t − 300 s, t]
            "sell_volume": [4, 10, 5, 0, 0],
        }
    )
    b = time_of_day_baseline(w, instants, as_of_ns=T0)
    got = {r["instrument_id"]: r for r in b.iter_rows(named=True)}
    assert got[1]["baseline_volume"] == 20.0  # median(10, 30, 20)
    assert got[2]["baseline_volume"] == 0.0  # median(6, 0, 0): absent sessions traded 0
    assert got[1]["sessions"] == 3
    with pytest.raises(ValueError, match="look-ahead"):
        time_of_day_baseline(w, [T0], as_of_ns=T0)


def test_thresholds_are_named_params_with_spec_defaults():
    p = VolumeShockParams()
    assert (p.volume_ratio_threshold, p.min_volume_threshold) == (4.0, 100)
    assert (p.high_delta_threshold, p.emergency_delta_threshold) == (30.0, 50.0)
    assert p.sweep_min_strikes == 3 and not math.isnan(p.sweep_window_s)
