"""Outcome metrics (docs/algorithms.md §12, docs/operations.md §Costs TEST): hand-computed numbers, empty inputs."""

from __future__ import annotations

import math
from datetime import date

import polars as pl
import pytest

from ifd_core.trading.metrics import (
    accuracy_stats,
    cost_per_signal,
    daily_sharpe,
    max_drawdown,
    metrics_table,
    trade_stats,
    wilson_interval,
)

D1, D2, D3 = date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 4)


# --- accuracy ---------------------------------------------------------------------------------


def test_spec_accuracy_7_3_2_wilson():
    s = accuracy_stats(["correct"] * 7 + ["incorrect"] * 3 + ["neutral"] * 2)
    assert (s.correct, s.incorrect, s.neutral, s.unresolved, s.resolved) == (7, 3, 2, 0, 10)
    assert s.accuracy == pytest.approx(0.70)
    # Wilson: (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n), z = 1.96 → [0.397, 0.892]
    assert s.ci_low == pytest.approx(0.397, abs=0.005)
    assert s.ci_high == pytest.approx(0.892, abs=0.005)
    assert round(s.ci_low, 2) == 0.40 and round(s.ci_high, 2) == 0.89
    assert s.neutral_share == pytest.approx(2 / 12)


def test_wilson_matches_closed_form():
    z = 1.959963984540054
    n, p = 10, 0.7
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    s = accuracy_stats(["correct"] * 7 + ["incorrect"] * 3)
    assert s.ci_low == pytest.approx(centre - half, rel=1e-9)
    assert s.ci_high == pytest.approx(centre + half, rel=1e-9)


def test_unresolved_counted_but_not_in_accuracy_or_neutral_share():
    s = accuracy_stats(["correct", "incorrect", "incorrect", "unresolved", "unresolved"])
    assert s.unresolved == 2 and s.resolved == 3
    assert s.accuracy == pytest.approx(1 / 3)
    assert s.neutral_share == 0.0


def test_unknown_label_is_named():
    with pytest.raises(ValueError, match="'Correct'"):
        accuracy_stats(["correct", "Correct"])


def test_empty_and_neutral_only_labels_do_not_divide_by_zero():
    e = accuracy_stats([])
    assert e.resolved == 0
    assert e.accuracy is None and e.ci_low is None and e.ci_high is None
    assert e.neutral_share is None
    n = accuracy_stats(["neutral", "neutral", "unresolved"])
    assert n.accuracy is None and n.ci_low is None
    assert n.neutral_share == 1.0
    assert n.to_dict()["neutral"] == 2


# --- trades -----------------------------------------------------------------------------------


def test_spec_trades():
    t = trade_stats([100.0, 50.0, -40.0, -60.0])
    assert (t.trades, t.wins, t.losses, t.scratches) == (4, 2, 2, 0)
    assert t.win_rate == 0.5
    assert t.avg_win == 75.0 and t.avg_loss == -50.0
    assert t.payoff_ratio == pytest.approx(1.5)
    assert t.count_wl_ratio == 1.0
    assert t.profit_factor == pytest.approx(1.5)
    assert t.net_pnl == 50.0
    assert t.max_drawdown == 100.0  # equity 100, 150, 110, 50: peak 150 → trough 50


def test_trades_empty_and_no_losses():
    e = trade_stats([])
    assert e.trades == 0 and e.win_rate is None
    assert e.avg_win is None and e.avg_loss is None
    assert e.payoff_ratio is None and e.count_wl_ratio is None and e.profit_factor is None
    assert e.net_pnl == 0.0 and e.max_drawdown == 0.0
    w = trade_stats([10.0, 20.0])
    assert w.win_rate == 1.0 and w.losses == 0
    assert w.payoff_ratio is None and w.count_wl_ratio is None and w.profit_factor is None
    assert w.max_drawdown == 0.0


def test_scratch_is_a_trade_not_a_win_or_loss():
    t = trade_stats([30.0, 0.0, -10.0])
    assert (t.trades, t.wins, t.losses, t.scratches) == (3, 1, 1, 1)
    assert t.win_rate == pytest.approx(1 / 3)
    assert t.payoff_ratio == pytest.approx(3.0)
    assert t.to_dict()["scratches"] == 1


def test_max_drawdown_curve_starts_at_zero():
    assert max_drawdown([]) == 0.0
    assert max_drawdown([5.0, 5.0]) == 0.0
    assert max_drawdown([-10.0, -20.0]) == 30.0  # first losses count
    # equity 0, 50, -30, -10, -40: peak 50, trough -40
    assert max_drawdown([50.0, -80.0, 20.0, -30.0]) == 90.0


def test_daily_sharpe():
    # mean 2, sample std 1 → 2·√252
    assert daily_sharpe([1.0, 2.0, 3.0]) == pytest.approx(2 * math.sqrt(252))
    assert daily_sharpe([-1.0, -3.0]) == pytest.approx(-2 / math.sqrt(2) * math.sqrt(252))
    assert daily_sharpe([]) is None
    assert daily_sharpe([5.0]) is None
    assert daily_sharpe([0.1, 0.1, 0.1]) is None


def test_spec_cost_per_signal():
    assert cost_per_signal(179 + 6, 40) == pytest.approx(4.625)
    assert cost_per_signal(185, 30) == pytest.approx(6.1667, abs=1e-4)
    assert cost_per_signal(185, 0) is None


# --- table ------------------------------------------------------------------------------------


def outcomes_frame(rows: list[tuple[str, date, str]]) -> pl.DataFrame:
    """One signal per row, each its own episode (an episode of several signals: see below)."""
    return pl.DataFrame(
        rows, schema={"algo": pl.String, "date": pl.Date, "label": pl.String}, orient="row"
    ).with_columns(pl.format("ep-{}", pl.int_range(pl.len())).alias("episode_id"))


def trades_frame(rows: list[tuple[str, date, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows, schema={"algo": pl.String, "date": pl.Date, "net_pnl": pl.Float64}, orient="row"
    )


OUTCOMES = outcomes_frame(
    [("v3", D1, "correct")] * 4
    + [("v3", D1, "incorrect")]
    + [("v3", D2, "correct")] * 3
    + [("v3", D2, "neutral")] * 2
    + [("v1", D1, "correct"), ("v1", D1, "incorrect"), ("v1", D2, "unresolved")]
)
TRADES = trades_frame([("v3", D1, 100.0), ("v3", D1, 50.0), ("v3", D2, -40.0), ("v3", D2, -60.0)])


def test_metrics_table_by_algo_with_signals_but_no_trades():
    t = metrics_table(OUTCOMES, TRADES, data_cost=65.0)
    assert t["algo"].to_list() == ["v1", "v3"]
    v1, v3 = t.row(0, named=True), t.row(1, named=True)

    assert v3["signals"] == 10 and v3["resolved"] == 8 and v3["correct"] == 7
    assert v3["accuracy"] == pytest.approx(7 / 8)
    assert v3["neutral_share"] == pytest.approx(0.2)
    assert v3["trades"] == 4 and v3["win_rate"] == 0.5
    assert v3["payoff_ratio"] == pytest.approx(1.5) and v3["profit_factor"] == pytest.approx(1.5)
    assert v3["max_drawdown"] == 100.0 and v3["net_pnl"] == 50.0
    # daily P&L 150, -100: mean 25, sd 176.777 → 25 / 176.777 · √252
    assert v3["daily_sharpe"] == pytest.approx(25 / (250 / math.sqrt(2)) * math.sqrt(252))
    # $65 over 13 signals: v3 carries 10/13, v1 3/13 → $5 per signal each
    assert v3["cost_per_signal"] == pytest.approx(5.0)

    assert v1["signals"] == 3 and v1["resolved"] == 2 and v1["accuracy"] == 0.5
    assert v1["trades"] == 0 and v1["wins"] == 0 and v1["net_pnl"] == 0.0
    for col in ("win_rate", "payoff_ratio", "count_wl_ratio", "profit_factor", "daily_sharpe"):
        assert v1[col] is None, col
    assert v1["max_drawdown"] == 0.0
    assert v1["cost_per_signal"] == pytest.approx(5.0)
    assert t.schema["win_rate"] == pl.Float64 and t.schema["trades"] == pl.Int64


def test_metrics_table_by_algo_and_date_and_trades_without_signals():
    trades = pl.concat([TRADES, trades_frame([("v1", D3, -20.0)])])
    t = metrics_table(OUTCOMES, trades, by=("algo", "date"))
    keys = list(zip(t["algo"].to_list(), t["date"].to_list(), strict=True))
    assert keys == [("v1", D1), ("v1", D2), ("v1", D3), ("v3", D1), ("v3", D2)]
    v1d3 = t.filter((pl.col("algo") == "v1") & (pl.col("date") == D3)).row(0, named=True)
    assert v1d3["signals"] == 0 and v1d3["accuracy"] is None and v1d3["trades"] == 1
    assert v1d3["losses"] == 1 and v1d3["max_drawdown"] == 20.0
    v3d2 = t.filter((pl.col("algo") == "v3") & (pl.col("date") == D2)).row(0, named=True)
    assert v3d2["accuracy"] == 1.0 and v3d2["net_pnl"] == -100.0
    assert v3d2["max_drawdown"] == 100.0
    assert t["daily_sharpe"].null_count() == t.height  # one day per group
    assert t["cost_per_signal"].null_count() == t.height  # no data cost given


def test_metrics_table_empty_inputs():
    empty_t = trades_frame([])
    t = metrics_table(OUTCOMES, empty_t)
    assert t["trades"].to_list() == [0, 0]
    assert t["win_rate"].null_count() == 2
    e = metrics_table(outcomes_frame([]), empty_t, data_cost=100.0)
    assert e.height == 0
    assert e.schema["accuracy"] == pl.Float64 and "algo" in e.columns


def test_metrics_table_drawdown_follows_trade_order_by_date():
    # stored out of order: by date the curve is -50 then +80 → drawdown 50 (not 0)
    trades = trades_frame([("v3", D2, 80.0), ("v3", D1, -50.0)])
    t = metrics_table(outcomes_frame([("v3", D1, "correct")]), trades)
    assert t["max_drawdown"].item() == 50.0


def test_metrics_table_missing_group_column():
    with pytest.raises(ValueError, match="session"):
        metrics_table(OUTCOMES, TRADES, by=("algo", "session"))


def test_metrics_table_counts_episodes_not_the_windows_of_one_flow():
    # 12 signals of v3 in 3 episodes (4 windows each); each episode's outcome is its first
    # signal's label: correct, correct, incorrect — whatever the later windows say.
    firsts = ["correct", "correct", "incorrect"]
    rows = []
    for e, first in enumerate(firsts):
        for k in range(4):
            label = first if k == 0 else ("incorrect" if first == "correct" else "correct")
            rows.append(("v3", D1, label, f"ep-{e}", f"s-{e}-{k}", 1_000 * e + k))
    outcomes = pl.DataFrame(
        rows,
        schema={
            "algo": pl.String,
            "date": pl.Date,
            "label": pl.String,
            "episode_id": pl.String,
            "signal_id": pl.String,
            "decision_ts": pl.UInt64,
        },
        orient="row",
    ).sample(fraction=1.0, shuffle=True, seed=3)  # stored order does not choose the first
    t = metrics_table(outcomes, trades_frame([])).row(0, named=True)
    assert (t["signals"], t["episodes"], t["resolved"], t["correct"]) == (12, 3, 3, 2)
    assert t["accuracy"] == pytest.approx(2 / 3)
    assert (t["ci_low"], t["ci_high"]) == pytest.approx(wilson_interval(2, 3))


def test_metrics_table_refuses_outcomes_without_episodes():
    with pytest.raises(ValueError, match="episode"):
        metrics_table(OUTCOMES.drop("episode_id"), TRADES)
