"""A/B statistics (docs/algorithms.md §14): pairing, accuracy tests, bootstrap, power, decision."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from ifd_core.trading.ab_stats import (
    agreement,
    bootstrap_diff_ci,
    compare_accuracy,
    decide,
    pair_signals,
    required_per_arm,
)
from ifd_core.trading.metrics import accuracy_stats

NS = 1_000_000_000
T0 = 1_774_882_800_000_000_000
NQ = 42


def sigs(*rows: tuple) -> pl.DataFrame:
    """(signal_id, seconds after T0, strike[, view[, underlying_id]])."""
    full = [(r + ("BULLISH", NQ)[len(r) - 3 :]) if len(r) < 5 else r for r in rows]
    return pl.DataFrame(
        {
            "signal_id": [r[0] for r in full],
            "underlying_id": [r[4] for r in full],
            "view": [r[3] for r in full],
            "strike": [float(r[2]) for r in full],
            "decision_ts": [T0 + int(r[1] * NS) for r in full],
        },
        schema={
            "signal_id": pl.String,
            "underlying_id": pl.UInt32,
            "view": pl.String,
            "strike": pl.Float64,
            "decision_ts": pl.UInt64,
        },
    )


def labels(correct: int, n: int) -> list[str]:
    return ["correct"] * correct + ["incorrect"] * (n - correct)


# --- pairing ----------------------------------------------------------------------------------


def test_pairing_limits_inclusive_and_exclusive():
    a = sigs(("a1", 0, 21000), ("a2", 1000, 21000), ("a3", 2000, 21000), ("a4", 3000, 21000))
    b = sigs(
        ("b1", 300, 21050),  # exactly 300 s and 50 points → paired with a1
        ("b2", 1301, 21000),  # 301 s after a2 → no
        ("b3", 2000, 21050.25),  # 50.25 points from a3 → no
        ("b4", 3000, 21000, "BEARISH"),  # other view → no
        ("b5", 3000, 21000, "BULLISH", 43),  # other underlying → no
    )
    p = pair_signals(a, b)
    assert p.rows() == [("a1", "b1", 300.0, 50.0)]
    assert p.schema["dt_s"] == pl.Float64
    assert pair_signals(a, b, strike_points=60.0, window_s=301.0)[
        "signal_id_b"
    ].sort().to_list() == [
        "b1",
        "b2",
        "b3",
    ]


def test_pairing_is_one_to_one_greedy_by_time_and_signed():
    # candidates: a2-b1 40 s, a1-b1 60 s, a2-b2 100 s, a1-b2 200 s
    a = sigs(("a1", 0, 21000), ("a2", 100, 21000))
    b = sigs(("b1", 60, 21000), ("b2", 200, 21025))
    p = pair_signals(a, b)
    assert p.rows() == [("a2", "b1", -40.0, 0.0), ("a1", "b2", 200.0, 25.0)]
    assert p["signal_id_a"].n_unique() == p.height == p["signal_id_b"].n_unique()


def test_pairing_ties_resolved_by_strike_then_id():
    b = sigs(("b1", 0, 21000))
    # same |dt|; a_far is 25 points away, a_near 10 → a_near wins
    a = sigs(("a_far", 30, 21025), ("a_near", -30, 20990))
    assert pair_signals(a, b)["signal_id_a"].to_list() == ["a_near"]
    # complete tie → smallest signal_id
    a = sigs(("z", 30, 21000), ("m", -30, 21000))
    assert pair_signals(a, b)["signal_id_a"].to_list() == ["m"]
    assert pair_signals(a, b).equals(pair_signals(a.reverse(), b))


def test_pairing_empty_and_duplicates():
    a = sigs(("a1", 0, 21000))
    empty = a.clear()
    p = pair_signals(a, empty)
    assert p.height == 0 and p.columns == ["signal_id_a", "signal_id_b", "dt_s", "dstrike"]
    assert agreement(empty, empty, pair_signals(empty, empty)) is None
    assert agreement(a, empty, p) == 0.0
    with pytest.raises(ValueError, match="duplicate"):
        pair_signals(pl.concat([a, a]), a)


def test_agreement_partial():
    a = sigs(("a1", 0, 21000), ("a2", 5000, 21000))
    b = sigs(("b1", 10, 21000), ("b2", 9000, 21000), ("b3", 20000, 21000))
    p = pair_signals(a, b)
    assert p.height == 1
    assert agreement(a, b, p) == pytest.approx(2 / 5)


def test_spec_identical_algorithms():
    a = sigs(*[(f"s{i:03d}", 400 * i, 21000 + 25 * (i % 3)) for i in range(50)])
    p = pair_signals(a, a)
    assert agreement(a, a, p) == 1.0
    assert (p["signal_id_a"] == p["signal_id_b"]).all() and (p["dt_s"] == 0).all()
    two = compare_accuracy(260, 400, 260, 400, alternative="two-sided")
    assert two["test"] == "z" and two["p_value"] == pytest.approx(1.0)
    assert two["diff"] == 0.0
    one = compare_accuracy(260, 400, 260, 400)
    assert one["p_value"] >= 0.5
    small = compare_accuracy(7, 10, 7, 10, alternative="two-sided")
    assert small["test"] == "fisher" and small["p_value"] == pytest.approx(1.0)
    assert compare_accuracy(7, 10, 7, 10)["p_value"] >= 0.5


# --- accuracy comparison ----------------------------------------------------------------------


def test_spec_400_each_80_vs_65_z_test():
    r = compare_accuracy(320, 400, 260, 400)
    assert r["test"] == "z" and r["n_a"] == 400 and r["n_b"] == 400
    # pooled 0.725; se = sqrt(.725·.275·2/400) = 0.031573; z = 0.15/se = 4.7509
    z = 0.15 / math.sqrt(0.725 * 0.275 * 2 / 400)
    assert z == pytest.approx(4.7509, abs=1e-4)
    assert r["p_value"] == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)), rel=1e-9)
    assert r["p_value"] < 0.01
    assert r["diff"] == pytest.approx(0.15)
    assert r["diff_ci_low"] < 0.15 < r["diff_ci_high"] and r["diff_ci_low"] > 0
    rev = compare_accuracy(260, 400, 320, 400)
    assert rev["p_value"] == pytest.approx(1 - r["p_value"])
    two = compare_accuracy(320, 400, 260, 400, alternative="two-sided")
    assert two["p_value"] == pytest.approx(2 * r["p_value"])


def test_fisher_when_a_cell_is_small():
    # [[9, 1], [5, 5]]: P(X >= 9) = (C(14,9)·C(6,1) + C(14,10)) / C(20,10) = 13013 / 184756
    r = compare_accuracy(9, 10, 5, 10)
    assert r["test"] == "fisher"
    assert r["p_value"] == pytest.approx(13013 / 184756, rel=1e-9)
    assert r["diff"] == pytest.approx(0.4)


def test_newcombe_interval_matches_published_example():
    # Newcombe (1998) Stat Med 17:873, example 56/70 vs 48/80, method 10: 0.0524 to 0.3339
    r = compare_accuracy(56, 70, 48, 80)
    assert r["diff_ci_low"] == pytest.approx(0.0524, abs=1e-4)
    assert r["diff_ci_high"] == pytest.approx(0.3339, abs=1e-4)


def test_compare_accuracy_zeros_and_bad_input():
    r = compare_accuracy(0, 0, 5, 10)
    assert r["test"] == "none" and r["p_value"] is None and r["diff"] is None
    all_right = compare_accuracy(10, 10, 10, 10, alternative="two-sided")
    assert all_right["test"] == "fisher" and all_right["p_value"] == pytest.approx(1.0)
    assert all_right["diff_ci_low"] <= 0 <= all_right["diff_ci_high"]
    with pytest.raises(ValueError):
        compare_accuracy(11, 10, 5, 10)
    with pytest.raises(ValueError, match="alternative"):
        compare_accuracy(5, 10, 5, 10, alternative="bigger")


# --- bootstrap --------------------------------------------------------------------------------


def test_bootstrap_deterministic_and_covers_true_difference():
    # per-day difference 10 ± k for k = 1..10: true mean difference exactly 10
    dev = [s * k for k in range(1, 11) for s in (1.0, -1.0)]
    b = [float(x) for x in range(-30, 30, 3)]  # 20 days of an arbitrary v1 P&L path
    a = [x + 10.0 + e for x, e in zip(b, dev, strict=True)]
    r1 = bootstrap_diff_ci(a, b, seed=7)
    assert r1 == bootstrap_diff_ci(a, b, seed=7)
    assert r1 != bootstrap_diff_ci(a, b, seed=8)
    point, low, high = r1
    assert point == pytest.approx(10.0)
    assert 5.0 < low < 10.0 < high < 15.0
    # bootstrap se of the mean = sqrt(Σ2k²/20)/√20 = sqrt(38.5/20) = 1.387 → half-width ≈ 2.72
    assert high - low == pytest.approx(2 * 1.96 * math.sqrt(38.5 / 20), rel=0.1)


def test_bootstrap_resamples_whole_days_with_the_percentile_method():
    # The same interval computed by hand: n days drawn with replacement from default_rng(seed)
    # (one index per day, so a day's two arms stay together), the mean of each resample, and the
    # 2.5th / 97.5th percentiles. A change of method (scipy's default BCa) or of resampling unit
    # fails here.
    a = np.array([120.0, -40.0, 15.0, 300.0, -220.0, 5.0, 60.0, -10.0, 45.0, 90.0])
    b = np.array([100.0, -60.0, 40.0, 150.0, -200.0, 0.0, 20.0, -30.0, 50.0, 10.0])
    d = a - b
    idx = np.random.default_rng(3).integers(0, d.size, size=(2_000, d.size))
    low, high = np.percentile(d[idx].mean(axis=1), [2.5, 97.5])
    point, got_low, got_high = bootstrap_diff_ci(a, b, resamples=2_000, seed=3)
    assert point == pytest.approx(d.mean())
    assert (got_low, got_high) == pytest.approx((low, high), rel=1e-12)


def test_bootstrap_constant_difference_and_short_series():
    assert bootstrap_diff_ci([3.0, 4.0, 5.0], [1.0, 2.0, 3.0], resamples=100) == (2.0, 2.0, 2.0)
    assert bootstrap_diff_ci([1.0], [0.0]) is None
    assert bootstrap_diff_ci([], []) is None
    with pytest.raises(ValueError, match="equal length"):
        bootstrap_diff_ci([1.0, 2.0], [1.0, 2.0, 3.0])


# --- sample size ------------------------------------------------------------------------------


def test_spec_required_per_arm():
    one = required_per_arm()
    two = required_per_arm(one_sided=False)
    assert abs(one - 260) <= 5 and abs(two - 330) <= 5
    assert (one, two) == (259, 329)  # Fleiss, no continuity correction
    assert required_per_arm(0.65, 0.80) < one  # bigger effect → fewer signals
    assert required_per_arm(power=0.9) > one
    with pytest.raises(ValueError):
        required_per_arm(0.7, 0.7)


# --- decision rule ----------------------------------------------------------------------------


def test_spec_decide_recommends_v3_at_400_each():
    v3, v1 = accuracy_stats(labels(320, 400)), accuracy_stats(labels(260, 400))
    days_v1 = np.linspace(-200.0, 200.0, 20)
    days_v3 = days_v1 + 50.0 + 20.0 * np.cos(np.arange(20))
    ci = bootstrap_diff_ci(days_v3, days_v1, seed=1)
    assert ci[1] > 0
    v = decide(v3, v1, pnl_diff_ci=ci)
    assert v.recommendation == "v3"
    assert v.p_value < 0.01 and v.test == "z"
    assert v.text.startswith("recommend v3")
    assert v.required_per_arm == 259 and v.need_more == 0


def test_spec_decide_inconclusive_at_30_each():
    v3, v1 = accuracy_stats(labels(24, 30)), accuracy_stats(labels(20, 30))
    v = decide(v3, v1, pnl_diff_ci=(10.0, 5.0, 15.0))
    assert v.recommendation == "inconclusive"
    assert v.need_more == 259 - 30
    assert v.text.startswith("inconclusive: need 229 more resolved episodes")
    assert v.p_value is None


def test_decide_inconclusive_uses_smaller_arm():
    v = decide(accuracy_stats(labels(320, 400)), accuracy_stats(labels(60, 100)), pnl_diff_ci=None)
    assert v.recommendation == "inconclusive" and v.need_more == 159
    assert "need 159 more" in v.text


def test_decide_v3_via_noninferiority_and_positive_pnl():
    # 81.5 % vs 80 % on 2000 each: z = 1.20, p = 0.115 (not significant); 90 % Newcombe lower
    # bound ≈ −0.005 > −0.02 (non-inferior)
    v3, v1 = accuracy_stats(labels(1630, 2000)), accuracy_stats(labels(1600, 2000))
    v = decide(v3, v1, pnl_diff_ci=(8.0, 2.0, 14.0))
    assert v.p_value > 0.05
    assert -0.02 < v.noninferiority_low < 0
    assert v.recommendation == "v3"
    no = decide(v3, v1, pnl_diff_ci=(8.0, -2.0, 18.0))
    assert no.recommendation == "no difference"
    assert any("P&L" in r for r in no.reasons)
    assert decide(v3, v1, pnl_diff_ci=None).recommendation == "no difference"
    # the same 1.5 pp edge on 400 each is too imprecise to show non-inferiority within 2 pp
    small3, small1 = accuracy_stats(labels(326, 400)), accuracy_stats(labels(320, 400))
    ni = decide(small3, small1, pnl_diff_ci=(8.0, 2.0, 14.0))
    assert ni.recommendation == "no difference"
    assert any("non-inferior" in r for r in ni.reasons)


def test_decide_accuracy_floor_blocks_v3():
    # v3 72 % beats v1 60 % significantly but is below the 75 % point target
    v3, v1 = accuracy_stats(labels(288, 400)), accuracy_stats(labels(240, 400))
    v = decide(v3, v1, pnl_diff_ci=(10.0, 5.0, 15.0))
    assert v.p_value < 0.05
    assert v.recommendation == "no difference"
    assert any("below 0.75" in r for r in v.reasons)
    # lower bound check: 0.75 point estimate passes, but demand a lower bound of 0.72
    v3b = accuracy_stats(labels(300, 400))  # Wilson lower ≈ 0.705
    vb = decide(v3b, v1, pnl_diff_ci=None, min_accuracy_lower=0.72)
    assert vb.recommendation == "no difference"
    assert any("lower bound" in r for r in vb.reasons)
    assert decide(v3b, v1, pnl_diff_ci=None).recommendation == "v3"


def test_decide_operational_gate():
    v3, v1 = accuracy_stats(labels(320, 400)), accuracy_stats(labels(260, 400))
    v = decide(v3, v1, pnl_diff_ci=(10.0, 5.0, 15.0), operational_ok=False)
    assert v.recommendation == "no difference"
    assert v.reasons == ["an operational gate failed"]


def test_decide_v1_significantly_better():
    v3, v1 = accuracy_stats(labels(260, 400)), accuracy_stats(labels(320, 400))
    v = decide(v3, v1, pnl_diff_ci=(-10.0, -15.0, -5.0))
    assert v.recommendation == "v1"
    assert v.p_value_v1_better < 0.01 and v.p_value > 0.99
    assert v.text.startswith("keep v1")
