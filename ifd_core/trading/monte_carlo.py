"""Monte Carlo of an equity curve by block bootstrap of trading days (docs/algorithms.md §13).

The reference resampled closed-trade returns one at a time, which treats trades of the same session
as independent although they share the day's regime, and it read the drawdown tail from the wrong
end (the 95th percentile of negative numbers is the *mildest* drawdown). Here the unit of resampling
is the trading day: a day's P&L already contains whatever correlation its trades had, and blocks of
``block_days`` consecutive days keep short runs of good or bad days together when that matters.
Blocks are circular (a block starting near the end wraps to the first days) so every day is drawn
equally often; without wrapping the first and last days would be under-sampled.

Randomness comes only from ``numpy.random.default_rng(seed)``: the same inputs and seed give the
same paths, whatever machine runs them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

# Rows of paths processed at once: bounds the memory of the (paths x horizon) matrices to a few
# tens of MB for any path count. All block starts are drawn before the chunking, so the result does
# not depend on this number.
_CELLS_PER_CHUNK = 4_000_000


@dataclass(frozen=True)
class MonteCarloResult:
    """Summary of the bootstrap; the per-path arrays are kept for charts, not for comparison.

    Returns are fractions of ``capital``. ``worst5_drawdown`` is the 5th percentile of each path's
    maximum drawdown, a drawdown being ``equity / running peak - 1`` (<= 0, the starting capital
    counts as the first peak): the bad tail, as in "5 % of paths draw down at least this much".
    """

    paths: int
    horizon_days: int
    block_days: int
    seed: int
    capital: float
    equity_floor: float
    terminal_return_p5: float
    terminal_return_p50: float
    terminal_return_mean: float
    worst5_drawdown: float
    prob_loss: float
    prob_ruin: float
    seconds: float = field(compare=False)
    terminal_returns: np.ndarray = field(repr=False, compare=False)
    max_drawdowns: np.ndarray = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, float | int]:
        """Scalars only: the arrays are 10 000 numbers each and belong in a chart, not a report."""
        return {
            "paths": self.paths,
            "horizon_days": self.horizon_days,
            "block_days": self.block_days,
            "seed": self.seed,
            "capital": self.capital,
            "equity_floor": self.equity_floor,
            "terminal_return_p5": self.terminal_return_p5,
            "terminal_return_p50": self.terminal_return_p50,
            "terminal_return_mean": self.terminal_return_mean,
            "worst5_drawdown": self.worst5_drawdown,
            "prob_loss": self.prob_loss,
            "prob_ruin": self.prob_ruin,
            "seconds": self.seconds,
        }


def block_bootstrap(
    daily_pnl: Sequence[float] | np.ndarray,
    *,
    capital: float,
    paths: int = 10_000,
    horizon_days: int | None = None,
    block_days: int = 1,
    equity_floor_fraction: float = 0.5,
    seed: int = 0,
) -> MonteCarloResult:
    """Resample the observed daily net P&L (dollars) into ``paths`` equity curves.

    Each path draws ``ceil(horizon / block_days)`` circular blocks of consecutive days, joins them
    and keeps the first ``horizon_days`` (default: as many days as were observed, so the paths are
    "another window like the one we saw"). Equity is ``capital + cumsum(pnl)``. Ruin means the
    equity touches or goes below ``capital * equity_floor_fraction`` on any day of the path; the
    starting day itself is not a day of the path, so a floor at 100 % of capital is not ruin by
    construction.
    """
    pnl = np.asarray(daily_pnl, dtype=np.float64)
    if pnl.ndim != 1:
        raise ValueError(f"daily_pnl must be one-dimensional, got shape {pnl.shape}")
    n = pnl.size
    if n == 0:
        raise ValueError("daily_pnl is empty: there is nothing to resample")
    if not np.all(np.isfinite(pnl)):
        raise ValueError("daily_pnl contains NaN or infinite values")
    if paths < 1:
        raise ValueError(f"paths must be >= 1, got {paths}")
    if not capital > 0:  # also rejects NaN
        raise ValueError(f"capital must be > 0, got {capital}")
    horizon = n if horizon_days is None else int(horizon_days)
    if horizon < 1:
        raise ValueError(f"horizon_days must be >= 1, got {horizon_days}")
    if block_days < 1:
        raise ValueError(f"block_days must be >= 1, got {block_days}")
    if not 0.0 <= equity_floor_fraction <= 1.0:
        raise ValueError(f"equity_floor_fraction must be in [0, 1], got {equity_floor_fraction}")

    t0 = time.perf_counter()
    floor = float(capital) * float(equity_floor_fraction)
    n_blocks = math.ceil(horizon / block_days)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n, size=(paths, n_blocks))
    offsets = np.arange(block_days)

    terminal = np.empty(paths, dtype=np.float64)
    max_dd = np.empty(paths, dtype=np.float64)
    ruined = np.empty(paths, dtype=bool)
    rows = max(1, _CELLS_PER_CHUNK // (n_blocks * block_days))
    for lo in range(0, paths, rows):
        hi = min(paths, lo + rows)
        idx = (starts[lo:hi, :, None] + offsets).reshape(hi - lo, -1)[:, :horizon] % n
        equity = float(capital) + np.cumsum(pnl[idx], axis=1)
        # The starting capital is the first peak: a path that loses on day one is in drawdown.
        peak = np.maximum(np.maximum.accumulate(equity, axis=1), float(capital))
        max_dd[lo:hi] = np.min(equity / peak - 1.0, axis=1)
        terminal[lo:hi] = equity[:, -1]
        ruined[lo:hi] = np.min(equity, axis=1) <= floor

    returns = terminal / float(capital) - 1.0
    returns.setflags(write=False)
    max_dd.setflags(write=False)
    p5, p50 = np.percentile(returns, [5.0, 50.0])
    return MonteCarloResult(
        paths=int(paths),
        horizon_days=horizon,
        block_days=int(block_days),
        seed=int(seed),
        capital=float(capital),
        equity_floor=floor,
        terminal_return_p5=float(p5),
        terminal_return_p50=float(p50),
        terminal_return_mean=float(returns.mean()),
        worst5_drawdown=float(np.percentile(max_dd, 5.0)),
        prob_loss=float(np.mean(terminal < float(capital))),
        prob_ruin=float(np.mean(ruined)),
        seconds=time.perf_counter() - t0,
        terminal_returns=returns,
        max_drawdowns=max_dd,
    )
