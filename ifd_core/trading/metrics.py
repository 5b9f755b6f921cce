"""Outcome metrics per algorithm and period — pure functions, no I/O.

Every number comes from labelled outcomes and closed paper trades: accuracy over episodes with
its Wilson interval, neutral and unresolved shares, win rate, payoff and count W/L, profit factor,
drawdown, daily Sharpe, cost per signal; an empty denominator is ``None``, never 0 or infinity.
Definitions and hand cases: docs/algorithms.md §12. Comparing algorithms is ``ab_stats``'s job.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import binomtest

from ifd_core.analysis.episodes import first_per_episode

LABELS = ("correct", "incorrect", "neutral", "unresolved")
TRADING_DAYS = 252


@dataclass(frozen=True)
class AccuracyStats:
    correct: int
    incorrect: int
    neutral: int
    unresolved: int
    resolved: int
    accuracy: float | None
    ci_low: float | None
    ci_high: float | None
    neutral_share: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of ``k`` successes in ``n`` (scipy); None when ``n`` is 0."""
    if n <= 0:
        return None
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def accuracy_stats(labels: Iterable[str], confidence: float = 0.95) -> AccuracyStats:
    """Accuracy over resolved directional labels with its Wilson interval.

    An unknown label raises rather than being skipped: a typo ("Correct") would otherwise
    silently shrink the sample and bias the estimate.
    """
    counts = dict.fromkeys(LABELS, 0)
    for lab in labels:
        if lab not in counts:
            raise ValueError(f"unknown outcome label {lab!r}; expected one of {LABELS}")
        counts[lab] += 1
    correct, incorrect = counts["correct"], counts["incorrect"]
    neutral, unresolved = counts["neutral"], counts["unresolved"]
    resolved = correct + incorrect
    accuracy = ci_low = ci_high = None
    if resolved > 0:
        accuracy = correct / resolved
        ci_low, ci_high = wilson_interval(correct, resolved, confidence)
    decided = resolved + neutral
    return AccuracyStats(
        correct=correct,
        incorrect=incorrect,
        neutral=neutral,
        unresolved=unresolved,
        resolved=resolved,
        accuracy=accuracy,
        ci_low=ci_low,
        ci_high=ci_high,
        neutral_share=neutral / decided if decided else None,
    )


@dataclass(frozen=True)
class TradeStats:
    trades: int
    wins: int
    losses: int
    scratches: int
    win_rate: float | None
    avg_win: float | None
    avg_loss: float | None
    payoff_ratio: float | None
    count_wl_ratio: float | None
    profit_factor: float | None
    net_pnl: float
    max_drawdown: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def max_drawdown(pnls: Sequence[float]) -> float:
    """Largest peak-to-trough fall of the cumulative equity curve, in positive dollars.

    The curve starts at 0 so that a first losing trade counts as drawdown (the reference only
    measured drawdown once a loss followed a gain).
    """
    if len(pnls) == 0:
        return 0.0
    equity = np.concatenate(([0.0], np.cumsum(np.asarray(pnls, dtype=np.float64))))
    peak = np.maximum.accumulate(equity)
    return float(np.max(peak - equity))


def trade_stats(net_pnls: Sequence[float]) -> TradeStats:
    """Win/loss statistics of closed trades in the order they closed (order matters for drawdown).

    A scratch (P&L exactly 0) is a trade but neither a win nor a loss, so it lowers the win rate
    without entering the payoff or count ratios.
    """
    x = np.asarray(net_pnls, dtype=np.float64)
    n = int(x.size)
    win_vals, loss_vals = x[x > 0], x[x < 0]
    wins, losses = int(win_vals.size), int(loss_vals.size)
    gross_win = float(win_vals.sum())
    gross_loss = float(loss_vals.sum())  # <= 0
    avg_win = gross_win / wins if wins else None
    avg_loss = gross_loss / losses if losses else None
    payoff = avg_win / abs(avg_loss) if avg_win is not None and avg_loss is not None else None
    return TradeStats(
        trades=n,
        wins=wins,
        losses=losses,
        scratches=n - wins - losses,
        win_rate=wins / n if n else None,
        avg_win=avg_win,
        avg_loss=avg_loss,
        payoff_ratio=payoff,
        count_wl_ratio=wins / losses if losses else None,
        profit_factor=gross_win / abs(gross_loss) if losses else None,
        net_pnl=float(x.sum()),
        max_drawdown=max_drawdown(x),
    )


def daily_sharpe(daily_pnl: Sequence[float]) -> float | None:
    """Annualised Sharpe of daily P&L (risk-free 0, ddof=1, √252).

    ``None`` when it is not estimable (fewer than 2 days, or no variation): a constant series
    would give an infinite or rounding-noise ratio that means nothing.
    """
    x = np.asarray(daily_pnl, dtype=np.float64)
    if x.size < 2:
        return None
    sd = float(np.std(x, ddof=1))
    if not math.isfinite(sd) or sd <= 1e-12 * max(1.0, float(np.max(np.abs(x)))):
        return None
    return float(np.mean(x)) / sd * math.sqrt(TRADING_DAYS)


def cost_per_signal(data_cost: float, actionable_signals: int) -> float | None:
    """Data cost divided by actionable signals (docs/operations.md §Costs); ``None`` rather than ∞
    with no signals."""
    if actionable_signals <= 0:
        return None
    return data_cost / actionable_signals


UNIT = "episodes"  # what accuracy, its interval and the resolved counts count

TABLE_METRICS: dict[str, pl.DataType] = {
    "signals": pl.Int64(),
    "episodes": pl.Int64(),
    "resolved": pl.Int64(),
    "correct": pl.Int64(),
    "incorrect": pl.Int64(),
    "neutral": pl.Int64(),
    "accuracy": pl.Float64(),
    "ci_low": pl.Float64(),
    "ci_high": pl.Float64(),
    "neutral_share": pl.Float64(),
    "trades": pl.Int64(),
    "wins": pl.Int64(),
    "losses": pl.Int64(),
    "win_rate": pl.Float64(),
    "payoff_ratio": pl.Float64(),
    "count_wl_ratio": pl.Float64(),
    "profit_factor": pl.Float64(),
    "net_pnl": pl.Float64(),
    "max_drawdown": pl.Float64(),
    "daily_sharpe": pl.Float64(),
    "cost_per_signal": pl.Float64(),
}
# The counts of a metrics table: zero (not null) for an algorithm that raised nothing.
COUNT_COLUMNS = tuple(c for c, t in TABLE_METRICS.items() if t == pl.Int64())


def _partition(df: pl.DataFrame, by: list[str]) -> dict[tuple, pl.DataFrame]:
    if df.height == 0:
        return {}
    return {tuple(k): g for k, g in df.partition_by(by, as_dict=True, maintain_order=True).items()}


def metrics_table(
    outcomes: pl.DataFrame,
    trades: pl.DataFrame,
    *,
    by: Sequence[str] = ("algo",),
    data_cost: float | None = None,
) -> pl.DataFrame:
    """One row of docs/algorithms.md §12 metrics per group (e.g. per algorithm, or per algorithm and
    day).

    ``outcomes`` has one row per signal with its ``label`` and ``episode_id`` (plus ``decision_ts``
    and ``signal_id`` to find each episode's first signal; without them the frame's order decides).
    ``signals`` counts rows, ``episodes`` distinct episodes, and resolved / correct / incorrect /
    neutral / accuracy / the Wilson interval count episodes, each by its first signal's label. A
    group present in only one frame still gets a row — an algorithm that signalled but never traded
    must show ``trades = 0`` rather than vanish. Trades are ordered by ``date`` (then ``exit_ts``
    when present) so the drawdown follows the order in which P&L was realised. ``data_cost`` is
    split across groups by their share of signals (docs/operations.md §Costs allocation), which
    makes the per-signal cost the same for every group that has signals.
    """
    keys = list(by)
    if "episode_id" not in outcomes.columns:
        raise ValueError(
            "outcomes lack episode_id: accuracy counts signal episodes, not correlated windows"
        )
    for name, df in (("outcomes", outcomes), ("trades", trades)):
        missing = [k for k in keys if k not in df.columns]
        if missing:
            raise ValueError(f"{name} lacks group column(s) {missing}")
    if "exit_ts" in trades.columns:
        trades = trades.sort(["date", "exit_ts"], maintain_order=True, nulls_last=True)
    elif trades.height:
        trades = trades.sort("date", maintain_order=True)

    out_groups = _partition(outcomes, keys)
    trade_groups = _partition(trades, keys)
    group_keys = list(out_groups)
    group_keys += [k for k in trade_groups if k not in out_groups]
    group_keys.sort(key=lambda k: tuple((v is None, v) for v in k))
    total_signals = outcomes.height

    rows: list[dict[str, Any]] = []
    for key in group_keys:
        og = out_groups.get(key)
        tg = trade_groups.get(key)
        firsts = first_per_episode(og) if og is not None else None
        acc = accuracy_stats(firsts["label"].to_list() if firsts is not None else [])
        pnl = tg["net_pnl"].to_list() if tg is not None else []
        ts = trade_stats(pnl)
        daily = (
            tg.group_by("date").agg(pl.col("net_pnl").sum())["net_pnl"].to_list()
            if tg is not None
            else []
        )
        n_sig = og.height if og is not None else 0
        cps = None
        if data_cost is not None and total_signals:
            cps = cost_per_signal(data_cost * n_sig / total_signals, n_sig)
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        row.update(
            signals=n_sig,
            episodes=firsts.height if firsts is not None else 0,
            resolved=acc.resolved,
            correct=acc.correct,
            incorrect=acc.incorrect,
            neutral=acc.neutral,
            accuracy=acc.accuracy,
            ci_low=acc.ci_low,
            ci_high=acc.ci_high,
            neutral_share=acc.neutral_share,
            trades=ts.trades,
            wins=ts.wins,
            losses=ts.losses,
            win_rate=ts.win_rate,
            payoff_ratio=ts.payoff_ratio,
            count_wl_ratio=ts.count_wl_ratio,
            profit_factor=ts.profit_factor,
            net_pnl=ts.net_pnl,
            max_drawdown=ts.max_drawdown,
            daily_sharpe=daily_sharpe(daily),
            cost_per_signal=cps,
        )
        rows.append(row)

    schema: dict[str, pl.DataType] = {
        k: outcomes.schema[k] if outcomes.height or not trades.height else trades.schema[k]
        for k in keys
    }
    schema.update(TABLE_METRICS)
    return pl.DataFrame(rows, schema=schema)
