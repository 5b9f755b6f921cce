"""Extended-test pooling and verdict (docs/algorithms.md §15)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from ifd_core.trading.extended import (
    Criteria,
    Verdict,
    edge_pvalue,
    final,
    pool,
    required_per_arm,
    verdict,
    weekly,
)


def row(date: dt.date, algo: str = "v3", **kw) -> dict:
    base = {
        "date": date,
        "algo": algo,
        "signals": 0,
        "resolved": 0,
        "correct": 0,
        "incorrect": 0,
        "neutral": 0,
        "trades": 0,
        "wins": 0,
        "losses": 0,
        "gross_win": 0.0,
        "gross_loss": 0.0,
        "net_pnl": 0.0,
        "data_cost": 0.0,
        "latency_p95_ms": None,
        "uptime_rth": 1.0,
        "tick_coverage": 1.0,
        "critical_incidents_open": 0,
    }
    base.update(kw)
    # Unless a test says otherwise each signal is its own episode (the counts below are episodes).
    base.setdefault("episodes", base["signals"])
    return base


def frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema_overrides={
            "date": pl.Date,
            "latency_p95_ms": pl.Float64,
            "uptime_rth": pl.Float64,
            "tick_coverage": pl.Float64,
        },
    )


SESSIONS = [dt.date(2026, 3, 2) + dt.timedelta(days=d) for d in (0, 1, 2, 3, 4, 7, 8, 9, 10, 11)]


def good_day(date: dt.date, algo: str = "v3", correct: int = 33, incorrect: int = 7, **kw) -> dict:
    """A v3 day that meets every criterion on its own; 10 of them pass the window."""
    values = {
        "signals": correct + incorrect + 5,
        "resolved": correct + incorrect,
        "correct": correct,
        "incorrect": incorrect,
        "neutral": 5,
        "trades": 30,
        "wins": 20,
        "losses": 10,
        "gross_win": 3_000.0,
        "gross_loss": -1_000.0,
        "net_pnl": 2_000.0,
        "data_cost": 8.0,
        "latency_p95_ms": 60.0,
        "uptime_rth": 1.0,
        "tick_coverage": 0.99,
    }
    values.update(kw)
    return row(date, algo, **values)


def window(v3: dict | None = None, v1: dict | None = None) -> pl.DataFrame:
    """10 sessions: v3 330/400 correct, v1 260/400 unless overridden per day."""
    rows = [good_day(d, "v3", **(v3 or {})) for d in SESSIONS]
    rows += [good_day(d, "v1", **{"correct": 26, "incorrect": 14, **(v1 or {})}) for d in SESSIONS]
    return frame(rows)


# --- pooling -----------------------------------------------------------------------------------


def test_two_sessions_pool_to_hand_computed_values():
    daily = frame(
        [
            row(
                dt.date(2026, 3, 2),
                signals=5,
                resolved=4,
                correct=3,
                incorrect=1,
                neutral=1,
                trades=3,
                wins=2,
                losses=1,
                gross_win=300.0,
                gross_loss=-100.0,
                net_pnl=200.0,
                data_cost=10.0,
                latency_p95_ms=40.0,
                uptime_rth=1.0,
                tick_coverage=0.98,
            ),
            row(
                dt.date(2026, 3, 3),
                signals=10,
                resolved=6,
                correct=4,
                incorrect=2,
                neutral=3,
                trades=4,
                wins=1,
                losses=3,
                gross_win=50.0,
                gross_loss=-150.0,
                net_pnl=-100.0,
                data_cost=12.0,
                latency_p95_ms=80.0,
                uptime_rth=0.999,
                tick_coverage=0.96,
                critical_incidents_open=1,
            ),
        ]
    )
    r = final(daily).row(0, named=True)
    assert (r["signals"], r["resolved"], r["correct"], r["incorrect"], r["neutral"]) == (
        15,
        10,
        7,
        3,
        4,
    )
    assert (r["trades"], r["wins"], r["losses"], r["days"]) == (7, 3, 4, 2)
    # 7 / 10 pooled, not the mean of 0.75 and 0.667 (= 0.708).
    assert r["accuracy"] == pytest.approx(0.70)
    # docs/algorithms.md §12: 7 correct of 10 -> Wilson ~[0.40, 0.89].
    assert r["accuracy_ci_low"] == pytest.approx(0.3968, abs=1e-3)
    assert r["accuracy_ci_high"] == pytest.approx(0.8922, abs=1e-3)
    assert r["neutral_share"] == pytest.approx(4 / 14)
    assert r["win_rate"] == pytest.approx(3 / 7)
    assert r["payoff"] == pytest.approx((350 / 3) / (250 / 4))
    assert r["count_wl"] == pytest.approx(0.75)
    assert r["gross_win"] == 350.0 and r["gross_loss"] == -250.0 and r["net_pnl"] == 100.0
    assert r["cost_per_signal"] == pytest.approx(22 / 15)
    assert r["latency_p95_ms"] == 80.0  # worst day
    assert r["uptime_rth"] == 0.999 and r["tick_coverage"] == 0.96  # worst day
    assert r["critical_incidents_open"] == 1
    assert r["first_date"] == dt.date(2026, 3, 2) and r["last_date"] == dt.date(2026, 3, 3)


def test_session_without_signals_adds_zero_and_divides_by_nothing():
    quiet = frame([row(dt.date(2026, 3, 4))])
    r = final(quiet).row(0, named=True)
    assert r["signals"] == 0 and r["days"] == 1
    for col in (
        "accuracy",
        "accuracy_ci_low",
        "win_rate",
        "payoff",
        "count_wl",
        "cost_per_signal",
        "neutral_share",
    ):
        assert r[col] is None, col
    assert r["latency_missing_days"] == 0  # nothing to time on a day without signals

    busy = row(
        dt.date(2026, 3, 5),
        signals=4,
        resolved=4,
        correct=3,
        incorrect=1,
        data_cost=8.0,
        latency_p95_ms=50.0,
    )
    both = final(frame([row(dt.date(2026, 3, 4), data_cost=2.0), busy])).row(0, named=True)
    assert both["signals"] == 4 and both["days"] == 2
    assert both["accuracy"] == pytest.approx(0.75)
    assert both["cost_per_signal"] == pytest.approx(10.0 / 4)  # the quiet day's cost still counts


def test_pool_by_nothing_gives_one_total_row_and_by_algo_separates():
    daily = window()
    total = pool(daily, [])
    assert total.height == 1 and total["resolved"][0] == 800 and total["days"][0] == 10
    per_algo = pool(daily, ["algo"])
    assert per_algo["algo"].to_list() == ["v1", "v3"]
    assert per_algo["correct"].to_list() == [260, 330]


def test_thanksgiving_week_counts_only_trading_sessions():
    # 2026-11-26 is Thanksgiving: there is no row for it. 2026-11-30 starts the next week.
    dates = [dt.date(2026, 11, d) for d in (23, 24, 25, 27, 30)]
    daily = frame(
        [row(d, signals=2, resolved=2, correct=1, incorrect=1, latency_p95_ms=10.0) for d in dates]
    )
    w = weekly(daily)
    assert w["week_start"].to_list() == [dt.date(2026, 11, 23), dt.date(2026, 11, 30)]
    assert w["days"].to_list() == [4, 1]
    assert w["signals"].to_list() == [8, 2]
    assert w["first_date"][0] == dt.date(2026, 11, 23) and w["last_date"][0] == dt.date(
        2026, 11, 27
    )


def test_weeks_start_on_monday_across_the_new_year():
    dates = [dt.date(2025, 12, 29), dt.date(2026, 1, 2), dt.date(2026, 1, 5)]
    w = weekly(frame([row(d, algo=a) for d in dates for a in ("v1", "v3")]))
    assert w.select("algo", "week_start", "days").rows() == [
        ("v1", dt.date(2025, 12, 29), 2),
        ("v1", dt.date(2026, 1, 5), 1),
        ("v3", dt.date(2025, 12, 29), 2),
        ("v3", dt.date(2026, 1, 5), 1),
    ]


@pytest.mark.parametrize(
    "bad",
    [
        {"resolved": 3, "correct": 1, "incorrect": 1, "signals": 5},  # resolved != c + i
        {"resolved": 2, "correct": 1, "incorrect": 1, "neutral": 2, "signals": 3},
        {"trades": 1, "wins": 1, "losses": 1},
        {"gross_loss": 5.0},
        {"uptime_rth": 1.5},
        {"signals": -1},
        {"signals": 2, "episodes": 3},  # an episode holds at least one signal
        {"signals": 12, "episodes": 3, "resolved": 4, "correct": 2, "incorrect": 2},
    ],
)
def test_inconsistent_daily_rows_are_rejected(bad):
    with pytest.raises(ValueError):
        final(frame([row(dt.date(2026, 3, 2), **bad)]))


def test_duplicate_day_is_rejected_not_double_counted():
    d = dt.date(2026, 3, 2)
    with pytest.raises(ValueError, match="more than one row"):
        final(frame([row(d, signals=1), row(d, signals=1)]))


# --- statistics helpers ------------------------------------------------------------------------


def test_sample_size_for_65_vs_75_is_about_260_per_arm():
    assert required_per_arm(0.65, 0.75) == 259
    assert required_per_arm(0.65, 0.75, power=0.9) > 259


def test_edge_test_uses_fisher_for_small_cells_and_z_otherwise():
    p, test = edge_pvalue(330, 70, 260, 140)
    assert test == "z" and p < 1e-5
    p, test = edge_pvalue(20, 2, 12, 8)
    assert test == "fisher" and 0.01 < p < 0.1
    p, test = edge_pvalue(50, 50, 50, 50)
    assert test == "z" and p == pytest.approx(0.5)


# --- verdict -----------------------------------------------------------------------------------


def test_pass():
    v = verdict(window())
    assert v == Verdict("PASS", [])
    assert str(v) == "PASS"


def test_forty_resolved_is_inconclusive():
    daily = frame(
        [
            good_day(SESSIONS[0], correct=32, incorrect=8),
            good_day(SESSIONS[0], "v1", correct=26, incorrect=14),
        ]
    )
    v = verdict(daily)
    assert v.status == "INCONCLUSIVE"
    why = "resolved episodes 40 < 100 (need 60 more resolved episodes; 45 signals in 45 episodes)"
    assert v.reasons == [why]
    assert str(v) == f"INCONCLUSIVE({why})"


def test_fail_lists_every_failed_criterion_with_number_and_threshold():
    daily = window().with_columns(
        pl.when((pl.col("algo") == "v3") & (pl.col("date") == SESSIONS[3]))
        .then(150.0)
        .otherwise(pl.col("latency_p95_ms"))
        .alias("latency_p95_ms"),
        pl.when(pl.col("algo") == "v3")
        .then(300.0)
        .otherwise(pl.col("data_cost"))
        .alias("data_cost"),
    )
    v = verdict(daily)
    assert v.status == "FAIL"
    assert v.reasons == ["cost per signal $6.67 >= $5.00", "latency p95 150.0 ms >= 100 ms"]
    assert str(v) == "FAIL(cost per signal $6.67 >= $5.00; latency p95 150.0 ms >= 100 ms)"


def test_accuracy_and_trade_ratio_failures():
    v = verdict(
        window(
            v3={
                "correct": 29,
                "incorrect": 11,
                "wins": 15,
                "losses": 15,
                "gross_win": 1_200.0,
                "gross_loss": -1_500.0,
            }
        )
    )
    assert v.status == "FAIL"
    text = str(v)
    assert "accuracy 0.725 < 0.75" in text
    assert "count W/L 1.00 < 1.8" in text
    assert "payoff 0.80 < 1.0" in text
    # 290/400 vs 260/400 is significant but only +7.5 pp: the edge itself passes.
    assert "edge" not in text


def test_edge_below_margin_or_behind_fails_with_adequate_sample():
    # v3 330/400 vs v1 320/400: +2.5 pp, not significant, 400 per arm is enough power -> FAIL.
    v = verdict(window(v1={"correct": 32, "incorrect": 8}))
    assert v.status == "FAIL"
    assert len(v.reasons) == 1 and v.reasons[0].startswith("edge over v1 +2.5 pp")
    assert "not significant at 0.05" in v.reasons[0]


def test_underpowered_edge_is_inconclusive():
    # 3 sessions x 40: v3 96/120 (0.80), v1 88/120 (0.733) -> not significant, ahead, 120 < 259.
    rows = [good_day(d, "v3", correct=32, incorrect=8, data_cost=1.0) for d in SESSIONS[:3]]
    rows += [good_day(d, "v1", correct=29, incorrect=11) for d in SESSIONS[:3]]
    rows[3]["correct"], rows[3]["incorrect"] = 30, 10
    v = verdict(frame(rows))
    assert v.status == "INCONCLUSIVE", str(v)
    assert len(v.reasons) == 1
    assert "underpowered: 120/120 resolved episodes, need 259 per arm" in v.reasons[0]


def test_missing_operational_metrics_are_inconclusive_never_passed():
    daily = window().with_columns(
        pl.when(pl.col("algo") == "v3")
        .then(None)
        .otherwise(pl.col("latency_p95_ms"))
        .alias("latency_p95_ms"),
        pl.when((pl.col("algo") == "v3") & (pl.col("date") == SESSIONS[0]))
        .then(None)
        .otherwise(pl.col("uptime_rth"))
        .alias("uptime_rth"),
    )
    v = verdict(daily)
    assert v.status == "INCONCLUSIVE"
    assert v.reasons == ["no latency measured", "RTH uptime not measured on 1 of 10 days"]


def test_statistics_only_verdict_ignores_what_a_replay_cannot_measure():
    daily = window().with_columns(
        pl.lit(None, pl.Float64).alias("latency_p95_ms"),
        pl.lit(None, pl.Float64).alias("uptime_rth"),
    )
    assert verdict(daily).status == "INCONCLUSIVE"
    assert verdict(daily, operational=False).status == "PASS"
    worse = window(v3={"correct": 26, "incorrect": 14}).with_columns(
        pl.lit(None, pl.Float64).alias("latency_p95_ms")
    )
    assert verdict(worse, operational=False).status == "FAIL"


def test_open_critical_incident_and_low_uptime_fail():
    daily = window().with_columns(
        pl.when((pl.col("algo") == "v3") & (pl.col("date") == SESSIONS[9]))
        .then(pl.lit(1, dtype=pl.Int64))
        .otherwise(pl.col("critical_incidents_open"))
        .alias("critical_incidents_open"),
        pl.when((pl.col("algo") == "v3") & (pl.col("date") == SESSIONS[2]))
        .then(0.99)
        .otherwise(pl.col("uptime_rth"))
        .alias("uptime_rth"),
    )
    v = verdict(daily)
    assert v.reasons == ["RTH uptime 0.9900 < 0.999", "open CRITICAL incidents 1 > 0"]


def test_criteria_are_configurable():
    assert Criteria().min_resolved == 100 and Criteria().max_cost_per_signal == 5.0
    v = verdict(window(), Criteria(max_cost_per_signal=0.10))
    assert v.status == "FAIL" and v.reasons == ["cost per signal $0.18 >= $0.10"]


def test_missing_candidate_or_incumbent():
    only_v1 = window().filter(pl.col("algo") == "v1")
    assert verdict(only_v1).status == "INCONCLUSIVE"
    only_v3 = window().filter(pl.col("algo") == "v3")
    v = verdict(only_v3)
    assert v == Verdict("INCONCLUSIVE", ["no resolved v1 signals to compare against"])


def test_criteria_count_episodes_and_say_so():
    # 12 signals in 3 episodes: min_resolved counts the 3, not the 12.
    daily = frame([row(SESSIONS[0], signals=12, episodes=3, resolved=3, correct=2, incorrect=1)])
    r = final(daily).row(0, named=True)
    assert (r["signals"], r["episodes"], r["resolved"]) == (12, 3, 3)
    v = verdict(daily, Criteria(min_resolved=10))
    assert v.status == "INCONCLUSIVE"
    assert v.reasons == [
        "resolved episodes 3 < 10 (need 7 more resolved episodes; 12 signals in 3 episodes)"
    ]


# ---------------------------------------------------------------- the cross-asset weight's effect
D1, D2 = dt.date(2026, 3, 2), dt.date(2026, 3, 3)


def _coverage(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "date": pl.Date,
            "episodes": pl.Int64,
            "stored": pl.Int64,
            "confirmed": pl.Int64,
            "gained": pl.Int64,
            "lost": pl.Int64,
        },
        orient="row",
    )


def _pair(extra_trade: bool) -> pl.DataFrame:
    """SYNTHETIC daily rows: v3 with 120 resolved episodes (96 correct) over two days; with the
    weight one more winning trade on D2 (+300) when ``extra_trade``; v1 70 of 120."""
    w = 1 if extra_trade else 0
    return frame(
        [
            row(D1, signals=60, resolved=60, correct=48, incorrect=12, trades=10, wins=7,
                losses=3, gross_win=650.0, gross_loss=-300.0, net_pnl=350.0, latency_p95_ms=5.0),
            row(D2, signals=60, resolved=60, correct=48, incorrect=12, trades=10 + w,
                wins=7 + w, losses=3, gross_win=650.0 + 300 * w, gross_loss=-300.0,
                net_pnl=350.0 + 300 * w, latency_p95_ms=5.0),
            row(D1, "v1", signals=60, resolved=60, correct=35, incorrect=25, latency_p95_ms=5.0),
            row(D2, "v1", signals=60, resolved=60, correct=35, incorrect=25, latency_p95_ms=5.0),
        ]
    )  # fmt: skip


def test_the_weights_effect_is_measured_from_both_sets_of_rows():
    from ifd_core.trading.extended import weight_effect

    cov = _coverage([(D1, 60, 0, 0, 0, 0), (D2, 60, 5, 4, 1, 0)])
    eff = weight_effect(_pair(True), _pair(False), cov, 0.5)
    assert eff["status"] == "measured" and eff["unit"] == "episodes"
    assert (eff["days"], eff["days_with_confirmations"]) == (2, 1)
    assert (eff["episodes"], eff["episodes_stored"], eff["episodes_confirmed"]) == (120, 5, 4)
    assert (eff["episodes_gained"], eff["episodes_lost"]) == (1, 0)
    w, wo = eff["with_weight"], eff["without_weight"]
    # By hand: 21 trades, 15 wins, 6 losses vs 20, 14, 6; net 1000 vs 700.
    assert (w["trades"], w["wins"], w["losses"], w["net_pnl"]) == (21, 15, 6, 1000.0)
    assert (wo["trades"], wo["wins"], wo["losses"], wo["net_pnl"]) == (20, 14, 6, 700.0)
    assert eff["difference"] == {"trades": 1, "wins": 1, "losses": 0, "net_pnl": 300.0}
    # count W/L 15/6 = 2.5 vs 14/6 = 2.33; payoff (1600/15)/(600/6) = 1.067 vs (1300/14)/100.
    assert w["count_wl"] == pytest.approx(2.5) and wo["count_wl"] == pytest.approx(14 / 6)
    assert w["payoff"] == pytest.approx(1600 / 15 / 100)
    assert wo["payoff"] == pytest.approx(1300 / 14 / 100)
    # Accuracy counts labels, not trades: 96 / 120 both ways.
    assert w["accuracy"] == wo["accuracy"] == pytest.approx(0.8)
    # Everything else met (accuracy 0.8, edge +21.7 pp over v1's 70/120, W/L above 1.8): the
    # payoff decides, 1.07 passes and 0.93 < 1.0 fails.
    assert (w["status"], w["reasons"]) == ("PASS", [])
    assert wo["status"] == "FAIL" and wo["reasons"] == ["payoff 0.93 < 1.0"]


def test_without_a_confirmed_episode_the_effect_is_not_measured():
    from ifd_core.trading.extended import NOT_MEASURED, weight_effect

    # Stored rows whose confirmation is null (nothing signed traded) do not count as data.
    cov = _coverage([(D1, 60, 3, 0, 0, 0), (D2, 60, 0, 0, 0, 0)])
    eff = weight_effect(_pair(False), _pair(False), cov, 0.5)
    assert eff["status"] == NOT_MEASURED == "not measured: no cross-asset data"
    assert "with_weight" not in eff and eff["episodes_stored"] == 3
    empty = weight_effect(_pair(False), _pair(False), _coverage([]), 0.5)
    assert empty["status"] == NOT_MEASURED and empty["days"] == 0
