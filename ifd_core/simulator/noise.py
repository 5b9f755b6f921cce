"""Background ("noise") trading: two-sided, balanced on average, with no hidden intent.

This is what planted flows must stand out from, so its rates are explicit functions that the
planting code can query (:func:`option_noise_rates`) to guarantee the ratio of a flow to normal
volume instead of hoping for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ifd_core.simulator.chain import DayChain
from ifd_core.simulator.path import DayPath, Move
from ifd_core.simulator.trades import NOISE, TradePlan

OPTION_TRADES_PER_DAY = 2_400  # whole chain, scale 1
OPTION_SCALE_CAP = 3.0  # option noise grows with scale only up to here (see option_noise_rates)
FUTURE_TRADES_PER_DAY = 9_000  # front month, scale 1; the other month trades a quarter of that
OTHER_MONTH_SHARE = 0.25
EXPIRY_WEIGHTS = (1.0, 0.55, 0.3, 0.2, 0.15)
MONEYNESS_WIDTH = 0.03  # log-moneyness scale of the activity bump around the money
WING_FLOOR = 0.08  # far strikes still trade a little
LARGE_PRINT_SHARE = 0.03
HIDDEN_FILL_SHARE = 0.01
MOVE_AGGRESSOR_TILT = 0.2  # buy share of future noise 0.7 during an up move (0.3 down)
_SMALL_P = 0.35  # geometric parameter of option sizes 1..10


def _mean_option_size() -> float:
    ks = np.arange(1, 10)
    p_small = _SMALL_P * (1 - _SMALL_P) ** (ks - 1)
    small = float((ks * p_small).sum() + 10 * (1 - p_small.sum()))
    return (1 - LARGE_PRINT_SHARE) * small + LARGE_PRINT_SHARE * 60.0


MEAN_OPTION_NOISE_SIZE = _mean_option_size()  # E[size] of :func:`option_sizes`


def _intraday_cdf() -> tuple[np.ndarray, np.ndarray]:
    u = np.linspace(0.0, 1.0, 513)
    density = 1.0 + 1.5 * np.exp(-u / 0.06) + 1.0 * np.exp(-(1.0 - u) / 0.06)
    cdf = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2)])
    return u, cdf / cdf[-1]


_U, _CDF = _intraday_cdf()
_EDGE_NS = 1_000_000_000  # no noise trade in the first and last second of the session


def intraday_times(rng: np.random.Generator, n: int, open_rel: int, close_rel: int) -> np.ndarray:
    """Unsorted event times with the usual U shape: busier after the open and into the close."""
    return intraday_times_from_uniform(rng.random(n), open_rel, close_rel)


def intraday_times_from_uniform(u: np.ndarray, open_rel: int, close_rel: int) -> np.ndarray:
    """Map uniforms to U-shaped session times; monotone, so sorted input gives sorted times."""
    x = np.interp(u, _CDF, _U)
    span = close_rel - open_rel - 2 * _EDGE_NS
    return open_rel + _EDGE_NS + (x * span).astype(np.int64)


def intraday_share(t0: int, t1: int, open_rel: int, close_rel: int) -> float:
    """Expected fraction of a day's noise trades that fall in [t0, t1]."""
    span = close_rel - open_rel - 2 * _EDGE_NS
    u0, u1 = ((np.array([t0, t1]) - open_rel - _EDGE_NS) / span).clip(0.0, 1.0)
    return float(np.interp(u1, _U, _CDF) - np.interp(u0, _U, _CDF))


def option_noise_rates(chain: DayChain, path: DayPath, scale: float) -> np.ndarray:
    """Expected noise trades per session for each instrument (0 for futures).

    Option noise grows with ``scale`` only up to OPTION_SCALE_CAP: planted flows have a fixed
    size (15-40 trades of 10-60 lots), and must stay >= 6x an option's normal volume at any scale.
    The rest of a larger scale goes into future trades and book churn.
    """
    opts = ~chain.is_future
    fwd = np.array(
        [path.open_price(chain.instruments[u].raw_symbol) for u in chain.underlying_index]
    )
    money = np.log(np.where(opts, chain.strike, fwd) / fwd)
    bump = WING_FLOOR + np.exp(-((money / MONEYNESS_WIDTH) ** 2))
    ranks = np.clip(chain.expiry_rank, 0, len(EXPIRY_WEIGHTS) - 1)
    weight = np.where(opts, bump * np.asarray(EXPIRY_WEIGHTS)[ranks], 0.0)
    total = OPTION_TRADES_PER_DAY * min(scale, OPTION_SCALE_CAP)
    return weight / weight.sum() * total


def option_sizes(rng: np.random.Generator, n: int) -> np.ndarray:
    small = np.minimum(rng.geometric(_SMALL_P, n), 10)
    large = rng.integers(20, 101, n)
    return np.where(rng.random(n) < LARGE_PRINT_SHARE, large, small).astype(np.int64)


def option_noise_plan(
    rng: np.random.Generator,
    chain: DayChain,
    path: DayPath,
    open_rel: int,
    close_rel: int,
    scale: float,
    quiet: list[tuple[int, int, int]],
) -> TradePlan:
    """Noise option trades; none on an instrument inside its ``quiet`` (inst, t0, t1) windows."""
    rates = option_noise_rates(chain, path, scale)
    counts = rng.poisson(rates)
    inst = np.repeat(np.arange(chain.n), counts)
    n = len(inst)
    t = intraday_times(rng, n, open_rel, close_rel)
    plan = TradePlan(
        inst=inst,
        t=t,
        aggressor=np.where(rng.random(n) < 0.5, 1, -1),
        qty=option_sizes(rng, n),
        hidden=_hidden(rng, n),
        delay=rng.integers(1_000_000, 15_000_000, n),
        tag=np.full(n, NOISE),
    )
    keep = np.ones(n, dtype=bool)
    for q_inst, t0, t1 in quiet:
        keep &= ~((inst == q_inst) & (t >= t0 - 2_000_000_000) & (t <= t1 + 2_000_000_000))
    return plan.take(np.flatnonzero(keep))


def future_noise_plan(
    rng: np.random.Generator,
    chain: DayChain,
    front_symbol: str,
    open_rel: int,
    close_rel: int,
    scale: float,
    moves: Sequence[Move] = (),
) -> TradePlan:
    """Noise future trades; during a planted move's ramp their aggressors lean its way.

    The move is already in the price path (the books move); the lean (MOVE_AGGRESSOR_TILT) puts it
    in the order flow too, as in a market where someone is buying the future up.
    """
    plans = []
    for i in np.flatnonzero(chain.is_future):
        share = 1.0 if chain.instruments[i].raw_symbol == front_symbol else OTHER_MONTH_SHARE
        n = int(rng.poisson(FUTURE_TRADES_PER_DAY * scale * share))
        small = np.minimum(rng.geometric(0.5, n), 8)
        large = rng.integers(10, 41, n)
        t = intraday_times(rng, n, open_rel, close_rel)
        p_buy = np.full(n, 0.5)
        for m in moves:
            p_buy[(t >= m.start) & (t <= m.end)] += MOVE_AGGRESSOR_TILT * np.sign(m.points)
        plans.append(
            TradePlan(
                inst=np.full(n, i, dtype=np.int64),
                t=t,
                aggressor=np.where(rng.random(n) < np.clip(p_buy, 0.05, 0.95), 1, -1),
                qty=np.where(rng.random(n) < 0.02, large, small).astype(np.int64),
                hidden=_hidden(rng, n),
                delay=rng.integers(500_000, 3_000_000, n),
                tag=np.full(n, NOISE),
            )
        )
    return TradePlan.concat(plans)


def _hidden(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.where(rng.random(n) < HIDDEN_FILL_SHARE, rng.integers(1, 6, n), 0).astype(np.int64)
