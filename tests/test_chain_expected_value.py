"""Expected value (docs/algorithms.md §9): touch-TP-before-SL probabilities of driftless Brownian motion,
tilts, costs, the grid, and the reliability curve. References are computed here independently:
the gambler's-ruin ratio, the reflection principle, and the Fourier series of the exit problem."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
from scipy.stats import norm

from ifd_core.analysis.chain.expected_value import (
    ExpectedValueParams,
    analyze_expected_value,
    barrier_probabilities,
    candidate_grid,
    evaluate,
    reliability_curve,
)
from ifd_core.analysis.chain.snapshot import MarketSnapshot

NS = 1_000_000_000
T0 = int(dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC).timestamp()) * NS
YEAR_S = 365.25 * 86_400


def fourier_exit_up(up: float, down: float, sd: float, terms: int = 20_000) -> float:
    """P(exit (−down, up) at the top by the horizon), eigenfunction series (independent)."""
    width, x = up + down, down
    n = np.arange(1, terms + 1)
    series = 2 * (-1.0) ** n / (n * np.pi) * np.sin(n * np.pi * x / width)
    return x / width + float(np.sum(series * np.exp(-0.5 * (n * np.pi * sd / width) ** 2)))


def test_driftless_base_probability_without_horizon():
    # [proposal] reward 100 / risk 100 → 0.5; reward 200 / risk 100 → 1/3
    assert barrier_probabilities(100, 100, None) == (0.5, 0.5, 0.0)
    p_up, p_down, p_none = barrier_probabilities(200, 100, None)
    assert p_up == pytest.approx(1 / 3) and p_down == pytest.approx(2 / 3) and p_none == 0.0


def test_horizon_one_far_barrier_is_the_reflection_principle():
    sd = 50.0
    p_up, _, _ = barrier_probabilities(100, 1e7, sd)
    assert p_up == pytest.approx(2 * norm.sf(100 / sd), rel=1e-9)


@pytest.mark.parametrize(
    ("up", "down", "sd"), [(100, 100, 60), (200, 100, 80), (30, 120, 200), (50, 50, 5)]
)
def test_horizon_probabilities_match_the_fourier_series(up, down, sd):
    p_up, p_down, p_none = barrier_probabilities(up, down, sd)
    assert p_up == pytest.approx(fourier_exit_up(up, down, sd), abs=1e-9)
    assert p_down == pytest.approx(fourier_exit_up(down, up, sd), abs=1e-9)
    assert p_none == pytest.approx(1 - p_up - p_down, abs=1e-12)
    assert p_none > 0


def test_untilted_ev_is_minus_costs_so_the_farthest_target_is_not_preferred():
    p = ExpectedValueParams(horizon_s=None)
    # [ref] case 1 in fixed form: long TP 21100 / SL 20900 at 21000 → p = 0.5, EV = −costs
    e = evaluate("LONG", 21000.0, 100, 100, None, {}, p)
    assert (e.target, e.stop, e.p_target) == (21100.0, 20900.0, 0.5)
    assert e.ev_gross == 0.0 and e.ev_net == pytest.approx(-0.5)  # 2 × 0.25 slippage
    assert not e.calibrated
    # DEFECT fixed (the reference's EV 429.29 for the farthest target): every candidate has
    # the same EV, far or near, with or without a horizon
    far = evaluate("LONG", 21000.0, 500, 50, 40.0, {}, p)
    near = evaluate("SHORT", 21000.0, 10, 10, 40.0, {}, p)
    assert far.ev_net == near.ev_net == pytest.approx(-0.5)


def test_tilt_shifts_log_odds_by_direction():
    p = ExpectedValueParams(coefficients={"ifd": 1.0})
    long = evaluate("LONG", 21000.0, 100, 100, None, {"ifd": 0.5, "unused": 9.0}, p)
    q = 1 / (1 + math.exp(-0.5))  # logit(0.5) + 1.0 × 0.5
    assert long.p_target == pytest.approx(q)
    assert long.ev_gross == pytest.approx(q * 100 - (1 - q) * 100)
    assert long.ev_net == pytest.approx(q * 100 - (1 - q) * 100 - 0.5)
    assert long.calibrated
    short = evaluate("SHORT", 21000.0, 100, 100, None, {"ifd": 0.5}, p)
    assert short.p_target == pytest.approx(1 - q) and short.target == 20900.0


def test_costs_are_a_round_trip_in_points():
    p = ExpectedValueParams(slippage_points=0.25, commission_usd=2.5)
    assert p.cost_points == pytest.approx(2 * (0.25 + 2.5 / 20))


def test_grid_respects_max_risk_and_min_risk_reward():
    grid = candidate_grid(ExpectedValueParams())
    assert all(s <= 150 and r >= s for r, s in grid)
    # risk 10·i for i ≤ 15, reward 10·j for i ≤ j ≤ 20: Σ (21 − i) = 195
    assert len(grid) == 195
    assert (200.0, 150.0) in grid and (100.0, 160.0) not in grid


def snapshot(iv: float | None) -> MarketSnapshot:
    exp = T0 + 86_400 * NS
    chain = pl.DataFrame(
        {
            "instrument_id": [1],
            "root": ["NQ"],
            "expiration": [exp],
            "strike": [21000.0],
            "right": ["C"],
            "open_interest": [10],
            "buy_volume": [0],
            "sell_volume": [0],
            "unsigned_volume": [0],
            "recent_buy_volume": [0],
            "recent_sell_volume": [0],
            "premium": [0.0],
            "last_price": [None],
            "settlement": [None],
            "tau": [1 / 365.25],
            "iv": [iv if iv is not None else float("nan")],
            "iv_source": ["last" if iv else None],
            "atm_iv": [iv],
            "atm_strike": [21000.0],
            "delta": [0.5],
            "gamma": [1e-4],
        }
    )
    return MarketSnapshot(T0, 1, 21000.0, chain)


def test_analyze_uncalibrated_recommends_nothing_and_says_why():
    r = analyze_expected_value(snapshot(0.2), params=ExpectedValueParams(horizon_s=3600))
    assert r.status == "no_edge" and r.plans == () and not r.calibrated
    assert r.sd_points == pytest.approx(21000 * 0.2 * math.sqrt(3600 / YEAR_S))
    assert r.best_rejected is not None and r.best_rejected.ev_net == pytest.approx(-0.5)
    # equal EVs: the tie-break is the smallest risk and reward, long first
    assert (r.best_rejected.risk, r.best_rejected.reward) == (10.0, 10.0)
    assert any(f.startswith("uncalibrated") for f in r.data_quality)


def test_analyze_with_coefficients_is_marked_calibrated():
    p = ExpectedValueParams(coefficients={"flow": 2.0}, horizon_s=None)
    r = analyze_expected_value(snapshot(0.2), {"flow": 1.0}, p)
    assert r.status == "ok" and r.calibrated
    best = r.plans[0]
    assert best.direction == "LONG" and best.ev_net >= 15 and best.p_target >= 0.6
    assert all(a.ev_net >= b.ev_net for a, b in zip(r.plans, r.plans[1:], strict=False))


def test_horizon_without_iv_is_an_explicit_no_iv():
    r = analyze_expected_value(snapshot(None), params=ExpectedValueParams(horizon_s=600))
    assert r.status == "no_iv" and r.plans == () and r.sd_points is None


def test_reliability_curve_bins_predicted_against_realized():
    curve = reliability_curve([0.05, 0.15, 0.12, 0.95, 1.0], [0, 1, 0, 1, 1], n_bins=10)
    assert curve.height == 10
    rows = {r["bin"]: r for r in curve.iter_rows(named=True)}
    assert (rows[0]["count"], rows[0]["mean_predicted"], rows[0]["realized_rate"]) == (
        1,
        0.05,
        0.0,
    )
    assert rows[1]["count"] == 2 and rows[1]["mean_predicted"] == pytest.approx(0.135)
    assert rows[1]["realized_rate"] == 0.5
    assert rows[9]["count"] == 2 and rows[9]["realized_rate"] == 1.0  # 1.0 is in the last bin
    assert rows[5]["count"] == 0 and rows[5]["realized_rate"] is None
    with pytest.raises(ValueError):
        reliability_curve([1.2], [1])
