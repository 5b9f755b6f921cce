"""Block bootstrap Monte Carlo of daily P&L (docs/algorithms.md §13)."""

from __future__ import annotations

import numpy as np
import pytest

from ifd_core.trading.monte_carlo import MonteCarloResult, block_bootstrap


def test_all_days_up_one_percent_never_lose_nor_draw_down():
    r = block_bootstrap([1_000.0] * 20, capital=100_000, paths=500, seed=3)
    assert r.prob_loss == 0.0
    assert r.worst5_drawdown == 0.0
    assert r.prob_ruin == 0.0
    assert r.terminal_return_p5 == pytest.approx(0.20)
    assert r.terminal_return_mean == pytest.approx(0.20)
    assert np.all(r.max_drawdowns == 0.0)


def test_all_losses_always_lose_and_draw_down_to_the_bottom():
    r = block_bootstrap([-100.0, -50.0, -25.0], capital=1_000, paths=200, horizon_days=4, seed=1)
    assert r.prob_loss == 1.0
    assert r.terminal_return_p50 < 0
    # Every path only goes down from the starting capital: max drawdown == terminal return.
    np.testing.assert_allclose(r.max_drawdowns, r.terminal_returns)
    # Worst case is four -100 days: -40 %; the 5th percentile is at least that bad as a tail.
    assert -0.40 <= r.worst5_drawdown < -0.10


def test_ruin_when_a_constant_loss_touches_the_floor():
    # 1 000 - 5 x 100 = 500 = the 50 % floor on day 5: touching is ruin.
    touched = block_bootstrap([-100.0], capital=1_000, paths=50, horizon_days=5, seed=0)
    assert touched.equity_floor == 500.0
    assert touched.prob_ruin == 1.0
    # One day short of the floor: no path is ruined although every path loses.
    short = block_bootstrap([-100.0], capital=1_000, paths=50, horizon_days=4, seed=0)
    assert short.prob_ruin == 0.0
    assert short.prob_loss == 1.0
    # A floor at 0 is not reached by a 40 % loss.
    zero = block_bootstrap(
        [-100.0], capital=1_000, paths=50, horizon_days=4, seed=0, equity_floor_fraction=0.0
    )
    assert zero.prob_ruin == 0.0


def test_same_seed_same_paths_other_seed_other_paths():
    pnl = np.random.default_rng(9).normal(50, 800, 60)
    a = block_bootstrap(pnl, capital=50_000, paths=2_000, block_days=3, seed=42)
    b = block_bootstrap(pnl, capital=50_000, paths=2_000, block_days=3, seed=42)
    c = block_bootstrap(pnl, capital=50_000, paths=2_000, block_days=3, seed=43)
    assert a == b  # seconds and arrays are excluded from equality; arrays checked next
    np.testing.assert_array_equal(a.terminal_returns, b.terminal_returns)
    np.testing.assert_array_equal(a.max_drawdowns, b.max_drawdowns)
    assert not np.array_equal(a.terminal_returns, c.terminal_returns)


def test_blocks_keep_consecutive_days_together():
    # +x / -x alternating: every circular block of 2 consecutive days is (+x, -x) or (-x, +x) and
    # sums to 0, so with an even horizon every path ends flat. Single days do not.
    pnl = [100.0, -100.0] * 10
    paired = block_bootstrap(pnl, capital=10_000, paths=1_000, block_days=2, seed=5)
    assert paired.horizon_days == 20
    np.testing.assert_allclose(paired.terminal_returns, 0.0, atol=1e-12)
    # Equity is back at capital after every block, so it stays within capital +/- x: the deepest
    # possible drawdown is from capital + x down to capital - x.
    assert paired.max_drawdowns.min() >= -200.0 / 10_100 - 1e-12
    single = block_bootstrap(pnl, capital=10_000, paths=1_000, block_days=1, seed=5)
    assert single.terminal_returns.std() > 0.01
    assert single.max_drawdowns.min() < -0.02


def test_circular_block_wraps_to_the_start():
    # Block of 3 starting at the last day takes days (2, 0, 1): with a series [0, 0, 1] every block
    # contains the 1 exactly once, wherever it starts, so each 3-day block sums to 1.
    r = block_bootstrap(
        [0.0, 0.0, 1.0], capital=100, paths=300, horizon_days=9, block_days=3, seed=2
    )
    np.testing.assert_allclose(r.terminal_returns, 0.03)


def test_percentiles_on_a_hand_checkable_case():
    # Days -10 / +10 with equal chance, two days, capital 1 000:
    # terminal -20 (p=.25), 0 (p=.5), +20 (p=.25) -> p5 = -2 %, median 0, mean ~0, P(loss) ~.25.
    # Max drawdowns: (-,-) -2 %, (-,+) -1 %, (+,-) -10/1010, (+,+) 0 -> 5th percentile -2 %.
    # Ruin at 98.5 %: only (-,-) reaches 980.
    r = block_bootstrap(
        [-10.0, 10.0], capital=1_000, paths=20_000, seed=11, equity_floor_fraction=0.985
    )
    assert r.horizon_days == 2
    assert r.terminal_return_p5 == pytest.approx(-0.02)
    assert r.terminal_return_p50 == pytest.approx(0.0)
    assert r.terminal_return_mean == pytest.approx(0.0, abs=0.001)
    assert r.prob_loss == pytest.approx(0.25, abs=0.015)
    assert r.prob_ruin == pytest.approx(0.25, abs=0.015)
    assert r.worst5_drawdown == pytest.approx(-0.02)
    assert set(np.round(r.max_drawdowns, 9)) == {-0.02, -0.01, round(-10 / 1010, 9), 0.0}


def test_worst5_is_the_bad_tail_not_the_mild_one():
    pnl = np.random.default_rng(4).normal(0, 1_000, 100)
    r = block_bootstrap(pnl, capital=100_000, paths=5_000, seed=0)
    assert r.worst5_drawdown == pytest.approx(np.percentile(r.max_drawdowns, 5))
    assert r.worst5_drawdown < np.median(r.max_drawdowns) < 0


def test_large_run_is_vectorised_and_chunking_does_not_change_results(monkeypatch):
    pnl = np.random.default_rng(8).normal(100, 1_500, 250)
    whole = block_bootstrap(pnl, capital=100_000, paths=10_000, block_days=5, seed=7)
    assert whole.paths == 10_000 and whole.terminal_returns.shape == (10_000,)
    monkeypatch.setattr("ifd_core.trading.monte_carlo._CELLS_PER_CHUNK", 10_000)
    chunked = block_bootstrap(pnl, capital=100_000, paths=10_000, block_days=5, seed=7)
    np.testing.assert_array_equal(whole.terminal_returns, chunked.terminal_returns)
    np.testing.assert_array_equal(whole.max_drawdowns, chunked.max_drawdowns)


def test_to_dict_has_the_scalars_only():
    r = block_bootstrap([5.0, -3.0, 1.0], capital=1_000, paths=10, seed=0)
    d = r.to_dict()
    assert d["paths"] == 10 and d["seed"] == 0 and d["equity_floor"] == 500.0
    assert "terminal_returns" not in d and "max_drawdowns" not in d
    assert all(isinstance(v, int | float) for v in d.values())
    assert isinstance(r, MonteCarloResult)
    with pytest.raises(ValueError):
        r.terminal_returns[0] = 1.0  # read-only: the frozen result stays what was computed


@pytest.mark.parametrize(
    "kwargs",
    [
        {"daily_pnl": [], "capital": 1_000},
        {"daily_pnl": [1.0], "capital": 1_000, "paths": 0},
        {"daily_pnl": [1.0], "capital": 0},
        {"daily_pnl": [1.0], "capital": -5},
        {"daily_pnl": [1.0], "capital": 1_000, "block_days": 0},
        {"daily_pnl": [1.0], "capital": 1_000, "horizon_days": 0},
        {"daily_pnl": [1.0, float("nan")], "capital": 1_000},
        {"daily_pnl": [1.0], "capital": 1_000, "equity_floor_fraction": 1.5},
    ],
)
def test_bad_input_is_rejected(kwargs):
    pnl = kwargs.pop("daily_pnl")
    with pytest.raises(ValueError):
        block_bootstrap(pnl, **kwargs)
