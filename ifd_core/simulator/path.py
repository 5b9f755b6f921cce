"""The underlying price path: one index level, and every listed NQ future priced off it.

A single driver keeps all futures consistent during roll week (the back month trades at the front
plus carry) and keeps each contract's own price continuous across the roll, which a path defined
directly on "the front future" would not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ifd_core.simulator.contracts import FutureContract
from ifd_core.simulator.pricing import YEAR_NS, future_ticks

START_PRICE = 21_000.0  # the front future's first opening price
DAILY_VOL = 0.012
OVERNIGHT_GAP_VOL = 0.002
CARRY = 0.03  # r - dividend yield: the back month trades this much per year above the front
STEP_MEAN_SECONDS = 8.0  # mean spacing of price changes; coarse on purpose (record budget)


@dataclass(frozen=True)
class DayPath:
    """Price path of one session.

    ``times`` are ns since the day's 00:00 UTC; the first is the session open. The price of future
    ``s`` is ``ticks[s][k] * 0.25`` from ``times[k]`` until the next step.
    """

    times: np.ndarray
    index_level: np.ndarray
    ticks: dict[str, np.ndarray]

    def ticks_at(self, symbol: str, t_rel: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self.times, t_rel, side="right") - 1
        return self.ticks[symbol][np.clip(pos, 0, None)]

    def open_price(self, symbol: str) -> float:
        return float(self.ticks[symbol][0]) * 0.25

    def close_price(self, symbol: str) -> float:
        return float(self.ticks[symbol][-1]) * 0.25


def initial_index_level(front: FutureContract, open_ns: int) -> float:
    """Index level at which the front future opens at exactly START_PRICE."""
    return START_PRICE / math.exp(CARRY * (front.expiration_ns - open_ns) / YEAR_NS)


def simulate_day_path(
    rng: np.random.Generator,
    prior_close_level: float,
    day_start_ns: int,
    open_rel: int,
    close_rel: int,
    futures: list[FutureContract],
    first_day: bool,
) -> DayPath:
    """Random walk (log-normal steps at Poisson times) from the prior close plus a small gap."""
    session_s = (close_rel - open_rel) / 1e9
    n_guess = int(session_s / STEP_MEAN_SECONDS * 1.5) + 16
    gaps = rng.exponential(STEP_MEAN_SECONDS, n_guess)
    offsets = np.cumsum(gaps)
    offsets = offsets[offsets < session_s - 0.5]
    step_times = open_rel + np.rint(offsets * 1e9).astype(np.int64)
    times = np.concatenate([[open_rel], step_times])
    dt_frac = np.diff(np.concatenate([[0.0], offsets])) / session_s
    shocks = rng.standard_normal(len(offsets)) * DAILY_VOL * np.sqrt(dt_frac)
    gap = 0.0 if first_day else rng.standard_normal() * OVERNIGHT_GAP_VOL
    level0 = prior_close_level * math.exp(gap)
    level = level0 * np.exp(np.concatenate([[0.0], np.cumsum(shocks)]))
    return _priced(times, level, day_start_ns, futures)


def _priced(
    times: np.ndarray, level: np.ndarray, day_start_ns: int, futures: list[FutureContract]
) -> DayPath:
    abs_times = day_start_ns + times
    ticks = {}
    for fut in futures:
        tau = (fut.expiration_ns - abs_times) / YEAR_NS
        ticks[fut.raw_symbol] = future_ticks(level * np.exp(CARRY * tau))
    return DayPath(times=times, index_level=level, ticks=ticks)


@dataclass(frozen=True)
class Move:
    """A planted shift of the index level: linear from ``start`` to ``end`` (ns since the day's
    00:00 UTC), then held. ``points`` is signed, in index points."""

    start: int
    end: int
    points: float


def with_moves(
    path: DayPath, moves: list[Move], day_start_ns: int, futures: list[FutureContract]
) -> DayPath:
    """The path plus every move, re-priced for every future.

    The ramp is sampled at the path's own step times (plus its start and end, so that the level
    reaches the full shift exactly at ``end``); the random steps of the walk are kept, so the move
    is added to the noise rather than replacing it.
    """
    if not moves:
        return path
    edges = np.array([t for m in moves for t in (m.start, m.end)], dtype=np.int64)
    edges = edges[(edges > path.times[0]) & (edges <= path.times[-1] + 1)]
    times = np.union1d(path.times, edges)
    pos = np.searchsorted(path.times, times, side="right") - 1
    level = path.index_level[pos].astype(np.float64)
    for m in moves:
        frac = np.clip((times - m.start) / max(m.end - m.start, 1), 0.0, 1.0)
        level = level + m.points * frac
    return _priced(times, level, day_start_ns, futures)
