"""Reports count episodes: a hand-built ledger whose 12 signals per algorithm form 3 episodes is
n = 3 in the backtest summary, the A/B statistics and the extended test's daily rows and
verdict — and each says which unit it counts. The later signals of each episode carry the
opposite label, so counting signals instead would change every number checked here."""

from __future__ import annotations

import polars as pl
import pytest

from ifd_core.analysis.episodes import assign_episodes
from ifd_core.settings import Settings
from ifd_core.trading.extended import Criteria, final, verdict
from ifd_core.trading.paper import DayLedger, ExecConfig, PaperExecutor
from ifd_core.trading.risk import RiskLimits
from jobs.ab import ab_of
from jobs.backtest import BacktestResult, daily_row, metrics_of
from tests.test_episodes import DAY, frame, sig


def twelve_signals(algo: str) -> pl.DataFrame:
    """3 flows, 12 signals: the QN2J6 put in 4 windows; two coordinated strikes in 2 windows;
    a call bought in 4 windows."""
    rows = [sig(k, algo=algo) for k in range(4)]
    rows += [
        sig(k, algo=algo, iid=7200 + j, strike=19300.0 + 25 * j, right="C", view="BULLISH")
        for k in (5, 6)
        for j in (0, 1)
    ]
    rows += [
        sig(k, algo=algo, iid=7300, strike=19500.0, right="C", view="BULLISH")
        for k in range(10, 14)
    ]
    return assign_episodes(frame(rows)).with_columns(pl.lit("cfg").alias("config_version"))


FIRST_LABELS = {
    "v3": ["correct", "correct", "incorrect"],
    "v1": ["correct", "incorrect", "incorrect"],
}


def outcomes(signals: pl.DataFrame, algo: str) -> pl.DataFrame:
    ordered = signals.sort("decision_ts", "signal_id")
    eps = list(dict.fromkeys(ordered["episode_id"].to_list()))
    firsts = set(ordered.unique("episode_id", keep="first", maintain_order=True)["signal_id"])
    labels = []
    for r in ordered.iter_rows(named=True):
        first = FIRST_LABELS[algo][eps.index(r["episode_id"])]
        other = "incorrect" if first == "correct" else "correct"
        labels.append(first if r["signal_id"] in firsts else other)
    return ordered.select("date", "algo", "signal_id", "episode_id", "decision_ts").with_columns(
        pl.Series("label", labels)
    )


def hand_built_result() -> BacktestResult:
    sigs = {a: twelve_signals(a) for a in ("v3", "v1")}
    outs = {a: outcomes(sigs[a], a) for a in sigs}
    daily, positions = [], []
    for algo, s in sigs.items():
        ex = PaperExecutor(algo, ExecConfig(), RiskLimits(), capital=100_000.0)
        firsts = s.sort("decision_ts", "signal_id").unique("episode_id", keep="first")
        led = DayLedger()
        for k, r in enumerate(s.sort("decision_ts", "signal_id").iter_rows(named=True)):
            acted = r["signal_id"] in set(firsts["signal_id"])
            led.orders.append(
                {
                    "purpose": "entry",
                    "signal_id": r["signal_id"],
                    "status": "filled" if acted else "skipped",
                    "reason": "" if acted else "same_episode",
                }
            )
            if acted:
                pnl = 100.0 if k % 2 == 0 else -40.0
                led.positions.append(
                    {
                        "algo": algo,
                        "date": DAY,
                        "exit_ts": r["decision_ts"],
                        "net_pnl": pnl,
                        "gross_pnl": pnl + 4,
                        "fees": 4.0,
                    }
                )
                ex.equity += pnl
        positions += led.positions
        daily.append(daily_row(DAY, algo, ex, 100_000.0, s, led, outs[algo]))
    return BacktestResult(
        run_id="bt-hand",
        mode="backtest",
        algos=("v3", "v1"),
        days=[DAY],
        capital=100_000.0,
        synthetic=True,
        daily=pl.DataFrame(daily),
        outcomes=pl.concat(outs.values()),
        signals=pl.concat(sigs.values()),
        positions=pl.DataFrame(positions),
        orders=pl.DataFrame(),
        fills=pl.DataFrame(),
        seconds=0.0,
        records=0,
    )


def test_twelve_signals_are_three_episodes():
    s = twelve_signals("v3")
    assert s.height == 12 and s["episode_id"].n_unique() == 3


def test_the_backtest_summary_counts_three_episodes():
    m = {r["algo"]: r for r in metrics_of(hand_built_result()).to_dicts()}
    v3 = m["v3"]
    assert (v3["signals"], v3["episodes"], v3["resolved"], v3["correct"]) == (12, 3, 3, 2)
    assert v3["accuracy"] == pytest.approx(2 / 3)
    assert v3["trades"] == 3  # one position per episode
    assert (m["v1"]["episodes"], m["v1"]["resolved"], m["v1"]["correct"]) == (3, 3, 1)


def test_the_backtest_daily_row_counts_episodes_and_skips():
    row = hand_built_result().daily.filter(pl.col("algo") == "v3").row(0, named=True)
    assert (row["signals"], row["episodes"], row["resolved"], row["correct"]) == (12, 3, 3, 2)
    assert (row["orders"], row["skipped_same_episode"]) == (3, 9)


def test_the_ab_test_counts_three_episodes_per_arm_and_says_so():
    res = ab_of(hand_built_result(), Settings(backtest={"bootstrap_resamples": 200}))
    doc = res.to_dict()
    assert doc["unit"] == "episodes"
    assert doc["n_episodes"] == {"v3": 3, "v1": 3} and doc["n_signals"] == {"v3": 12, "v1": 12}
    assert doc["accuracy"]["v3"]["resolved"] == 3 and doc["accuracy"]["v3"]["correct"] == 2
    assert doc["accuracy_test"]["n_a"] == 3 and doc["accuracy_test"]["n_b"] == 3
    assert doc["paired_episodes"] == 3  # same flows in both arms: their first signals pair
    assert doc["verdict"].startswith("inconclusive: need 256 more resolved episodes")


def test_the_extended_test_counts_three_episodes():
    daily = hand_built_result().daily.with_columns(
        pl.lit(0.0).alias("data_cost"),
        pl.lit(None, pl.Float64).alias("latency_p95_ms"),
        pl.lit(1.0).alias("uptime_rth"),
        pl.lit(1.0).alias("tick_coverage"),
        pl.lit(0).alias("critical_incidents_open"),
    )
    v3 = final(daily).filter(pl.col("algo") == "v3").row(0, named=True)
    assert (v3["signals"], v3["episodes"], v3["resolved"], v3["correct"]) == (12, 3, 3, 2)
    assert v3["accuracy"] == pytest.approx(2 / 3)
    v = verdict(daily, Criteria(min_resolved=5))
    assert v.reasons == [
        "resolved episodes 3 < 5 (need 2 more resolved episodes; 12 signals in 3 episodes)"
    ]
