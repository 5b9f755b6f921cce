"""The A/B test (docs/operations.md §Backtest, A/B and extended test): v1 and v3 on the same record
stream, each with its own paper account, their signals paired, accuracy compared with the right
test, the daily P&L difference bootstrapped by trading day, and a verdict that says "inconclusive:
need N more resolved episodes" rather than naming a winner when the sample cannot tell.

The unit is the signal episode (``analysis/episodes.py``): accuracy, the test and the pairing
use one outcome per episode (its first signal, the one the executor acted on), so a flow seen
in four windows is one observation, not four.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from ifd_core.analysis.episodes import first_per_episode
from ifd_core.settings import ABSettings, Settings
from ifd_core.trading.ab_stats import (
    agreement,
    bootstrap_diff_ci,
    compare_accuracy,
    decide,
    pair_signals,
)
from ifd_core.trading.metrics import accuracy_stats
from jobs.backtest import BacktestResult, run_backtest
from jobs.fanout import Mapper, inline_map
from warehouse.lake import Lake

PAIR_COLS = ["signal_id", "underlying_id", "view", "strike", "decision_ts"]


@dataclass
class ABResult:
    backtest: BacktestResult
    accuracy: dict[str, dict]
    test: dict
    pnl_diff_ci: tuple[float, float, float] | None
    pairs: int
    agreement: float | None
    verdict: object  # ab_stats.ABVerdict
    n_signals: dict[str, int]
    n_episodes: dict[str, int]

    def to_dict(self) -> dict:
        v = self.verdict
        return {
            "run_id": self.backtest.run_id,
            "data": "SYNTHETIC" if self.backtest.synthetic else "real",
            "days": [d.isoformat() for d in self.backtest.days],
            "unit": "episodes",
            "n_episodes": self.n_episodes,
            "n_signals": self.n_signals,
            "accuracy": self.accuracy,
            "accuracy_test": self.test,
            "daily_pnl_diff_v3_minus_v1": (
                dict(zip(("mean", "ci_low", "ci_high"), self.pnl_diff_ci, strict=True))
                if self.pnl_diff_ci
                else None
            ),
            "paired_episodes": self.pairs,
            "agreement": self.agreement,
            "recommendation": v.recommendation,
            "verdict": v.text,
            "reasons": list(v.reasons),
        }


def run_ab(
    lake: Lake,
    settings: Settings,
    start: dt.date,
    end: dt.date,
    progress: Callable[[str], None] | None = None,
    days_done: Callable[[int, int], None] | None = None,
    mapper: Mapper = inline_map,
) -> ABResult:
    """Both algorithms backtested on the same days (``mapper``: the days' detection pass side
    by side, jobs/fanout.py), then the paired comparison."""
    bt = run_backtest(
        lake,
        settings,
        start,
        end,
        ("v3", "v1"),
        mode="ab",
        progress=progress,
        days_done=days_done,
        mapper=mapper,
    )
    return ab_of(bt, settings)


def decision_rule(ab: ABSettings) -> dict:
    """The bars of ``ab_stats.decide`` from the ``ab`` settings."""
    return {
        "min_accuracy_point": ab.min_accuracy,
        "min_accuracy_lower": ab.min_accuracy_lower,
        "alpha": ab.alpha,
        "noninferiority_margin": ab.noninferiority_margin,
    }


def ab_of(bt: BacktestResult, settings: Settings) -> ABResult:
    """The A/B statistics of a finished v3 + v1 backtest (pure: no lake)."""
    stats, n_episodes, n_signals = {}, {}, {}
    for algo in ("v3", "v1"):
        rows = bt.outcomes.filter(pl.col("algo") == algo) if bt.outcomes.height else None
        firsts = first_per_episode(rows) if rows is not None and rows.height else None
        stats[algo] = accuracy_stats(firsts["label"].to_list() if firsts is not None else [])
        sig = bt.signals.filter(pl.col("algo") == algo) if bt.signals.height else None
        n_signals[algo] = sig.height if sig is not None else 0
        n_episodes[algo] = sig["episode_id"].n_unique() if sig is not None else 0
    v3, v1 = stats["v3"], stats["v1"]
    test = compare_accuracy(v3.correct, v3.resolved, v1.correct, v1.resolved)
    daily = bt.daily.pivot(on="algo", index="date", values="net_pnl").sort("date").fill_null(0.0)
    diff = (
        bootstrap_diff_ci(
            daily["v3"].to_list(),
            daily["v1"].to_list(),
            resamples=settings.backtest.bootstrap_resamples,
            seed=settings.backtest.mc_seed,
        )
        if {"v3", "v1"} <= set(daily.columns)
        else None
    )
    sig = first_per_episode(bt.signals) if bt.signals.height else bt.signals
    if sig.height:  # episodes pair with episodes: their first signals
        a = sig.filter(pl.col("algo") == "v3").select(PAIR_COLS)
        b = sig.filter(pl.col("algo") == "v1").select(PAIR_COLS)
        pairs = pair_signals(a, b)
        agree = agreement(a, b, pairs)
        n_pairs = pairs.height
    else:
        n_pairs, agree = 0, None
    verdict = decide(v3, v1, pnl_diff_ci=diff, **decision_rule(settings.ab))
    return ABResult(
        backtest=bt,
        accuracy={k: s.to_dict() for k, s in stats.items()},
        test=test,
        pnl_diff_ci=diff,
        pairs=n_pairs,
        agreement=agree,
        verdict=verdict,
        n_signals=n_signals,
        n_episodes=n_episodes,
    )
