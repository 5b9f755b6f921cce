"""The market makers' resting book as a deterministic function of time.

Each instrument's resting liquidity is a *ladder* (``L`` levels per side, ``K`` orders per level,
sizes a fixed function of the slot) whose position is a step function of time, the
:class:`QuoteTape`; trades, replenishment and churn always return the ladder to that standard
state, so trades are computed in bulk from the tape and every record is consistent with a real
book. Orders are *slots* (instrument, side, ring position ``g mod L``, ``k``), so a level that
moves can be modified in place. Why this shape: docs/simulator.md §How it is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ifd_core.simulator.chain import DayChain
from ifd_core.simulator.path import DayPath
from ifd_core.simulator.pricing import (
    FUTURE_TICK_FIXED,
    YEAR_NS,
    black76,
    option_grid_position,
    option_grid_price_fixed,
)

LMAX = 4  # most price levels per side of any ladder (array dimension)
KMAX = 3  # most orders per level
SIZE_TABLE = 32
BID, ASK = 0, 1

OPTION_QUOTE_CHECK_MINUTES = 20.0  # mean interval between a market maker's quote reviews (scale 1)
ATM_QUOTE_CHECK_FACTOR = 0.5  # near-the-money books are reviewed twice as often
NEAR_MONEY = 0.02  # |log-moneyness| of "near the money" books: reviewed more often
WING_MONEY = 0.03  # beyond this, books are thinner (3 levels of 2 orders)
FUTURE_LEVELS = 4
_OPTION_ORDER_SIZES = np.array([1, 2, 3, 5, 5, 5, 10, 10, 10, 15, 20, 20, 25, 30, 50])
_FUTURE_ORDER_SIZES = np.array([1, 1, 1, 2, 2, 3, 3, 4, 5, 6, 8, 10])


@dataclass(frozen=True)
class BookShape:
    """Per-instrument ladder geometry and order sizes for one day."""

    levels: np.ndarray  # L, int64
    orders: np.ndarray  # K, int64
    spread: np.ndarray  # ticks between best bid and best ask, int64
    sizes: np.ndarray  # (n, 2, SIZE_TABLE) int64

    def size_of(
        self, inst: np.ndarray, side: np.ndarray, g: np.ndarray, k: np.ndarray
    ) -> np.ndarray:
        """Standard size of order k at grid level g (works on broadcast arrays)."""
        slot = (np.abs(g) * 5 + k * 11) % SIZE_TABLE
        return self.sizes[inst, side, slot]

    def min_depth(self, inst: int) -> int:
        """Least resting size on either side of a full (untruncated) ladder, over all positions.

        Sizes depend on the level only through ``g mod SIZE_TABLE``, so trying every residue of
        the best price gives the exact minimum.
        """
        top = SIZE_TABLE + np.arange(SIZE_TABLE)[:, None, None]  # every residue, all g - j >= 0
        j = np.arange(int(self.levels[inst]))[None, :, None]
        k = np.arange(int(self.orders[inst]))[None, None, :]
        bid = self.size_of(inst, BID, top - j, k).sum(axis=(1, 2))
        ask = self.size_of(inst, ASK, top + j, k).sum(axis=(1, 2))
        return int(min(bid.min(), ask.min()))


def make_shape(rng: np.random.Generator, chain: DayChain, path: DayPath) -> BookShape:
    """Ladder geometry: futures 4 levels, options 3-4 near the money, 3 x 2 orders in the wings.

    Thin wings keep the record count in budget: every re-quote of a deep in-the-money option moves
    its whole ladder.
    """
    n = chain.n
    fut = chain.is_future
    wing = np.abs(_log_moneyness(chain, path)) > WING_MONEY
    levels = np.where(fut, FUTURE_LEVELS, np.where(wing, 3, rng.integers(3, 5, n)))
    orders = np.where(wing & ~fut, 2, rng.integers(2, 4, n))
    spread = np.where(fut, 1, rng.choice([1, 1, 2, 2, 3], n))
    opt_sizes = rng.choice(_OPTION_ORDER_SIZES, (n, 2, SIZE_TABLE))
    fut_sizes = rng.choice(_FUTURE_ORDER_SIZES, (n, 2, SIZE_TABLE))
    sizes = np.where(fut[:, None, None], fut_sizes, opt_sizes).astype(np.int64)
    return BookShape(levels=levels, orders=orders, spread=spread, sizes=sizes)


def _log_moneyness(chain: DayChain, path: DayPath) -> np.ndarray:
    """log(strike / underlying at the open); 0 for futures."""
    fwd = np.array(
        [path.open_price(chain.instruments[u].raw_symbol) for u in chain.underlying_index]
    )
    return np.log(np.where(chain.is_future, fwd, chain.strike) / fwd)


def price_fixed(chain: DayChain, inst: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Fixed-point price of grid level ``g`` of instrument ``inst`` (g >= 0 for options)."""
    g = np.asarray(g, dtype=np.int64)
    return np.where(
        chain.is_future[inst], g * FUTURE_TICK_FIXED, option_grid_price_fixed(np.maximum(g, 0))
    )


def level_of_ring(
    side: np.ndarray, top: np.ndarray, r: np.ndarray, levels: np.ndarray
) -> np.ndarray:
    """Grid level held by ring position ``r`` of a ladder whose best price is ``top``."""
    return np.where(side == BID, top - (top - r) % levels, top + (r - top) % levels)


def level_present(chain_is_future: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Options have no level at or below a premium of zero (grid index < 0)."""
    return chain_is_future | (g >= 0)


@dataclass(frozen=True)
class QuoteTape:
    """Best bid/ask grid indices of every instrument as step functions of time.

    Rows are sorted by (instrument, time). Row ``first[i]`` is instrument i's state at the open;
    later rows are re-quotes, each a real change of (bid, ask).
    """

    inst: np.ndarray
    t: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    first: np.ndarray  # row of each instrument's opening state

    @cached_property
    def key(self) -> np.ndarray:
        """Sorted search key: instrument in the high bits, time (< 2**47 ns) in the low ones."""
        return (self.inst.astype(np.int64) << 47) | self.t

    def row_at(self, inst: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Row of the state in force at ``t`` (a re-quote at exactly ``t`` already applies)."""
        key = (np.asarray(inst, dtype=np.int64) << 47) | np.asarray(t, dtype=np.int64)
        rows = np.searchsorted(self.key, key, side="right") - 1
        return np.maximum(rows, self.first[inst])

    def requote_rows(self) -> np.ndarray:
        mask = np.ones(len(self.t), dtype=bool)
        mask[self.first] = False
        return np.flatnonzero(mask)


def _option_quotes(
    chain: DayChain,
    shape: BookShape,
    path: DayPath,
    inst: np.ndarray,
    t: np.ndarray,
    day_start_ns: int,
) -> tuple[np.ndarray, np.ndarray]:
    under = chain.underlying_index[inst]
    forward = np.empty(len(inst), dtype=np.float64)
    for u in np.unique(under):
        sel = under == u
        forward[sel] = path.ticks_at(chain.instruments[u].raw_symbol, t[sel]) * 0.25
    tau = (chain.expiration_ns[inst] - (day_start_ns + t)) / YEAR_NS
    fair = black76(forward, chain.strike[inst], tau, chain.is_call[inst])
    x = option_grid_position(fair)
    spread = shape.spread[inst]
    bid = np.maximum(np.rint(x - spread / 2.0).astype(np.int64), 0)  # two-sided, >= 0.05
    ask = bid + spread
    return bid, ask


def build_tape(
    rng: np.random.Generator,
    chain: DayChain,
    shape: BookShape,
    path: DayPath,
    day_start_ns: int,
    open_rel: int,
    close_rel: int,
    scale: float,
) -> QuoteTape:
    """Futures follow every step of the path; option books are reviewed on Poisson clocks.

    Option market makers re-price from the underlying at each review (every few minutes at scale
    1, more often at larger scale), which is what makes their quotes lag a fast future a little.
    """
    parts_inst, parts_t, parts_bid, parts_ask = [], [], [], []
    for i in np.flatnonzero(chain.is_future):
        ticks = path.ticks[chain.instruments[i].raw_symbol]
        parts_inst.append(np.full(len(ticks), i, dtype=np.int64))
        parts_t.append(path.times.astype(np.int64))
        parts_bid.append(ticks)
        parts_ask.append(ticks + shape.spread[i])
    opts = np.flatnonzero(~chain.is_future)
    session = close_rel - open_rel
    near = np.abs(_log_moneyness(chain, path)[opts]) < NEAR_MONEY
    mean_gap = OPTION_QUOTE_CHECK_MINUTES * 60e9 / max(scale, 1e-6)
    mean_gap = np.where(near, mean_gap * ATM_QUOTE_CHECK_FACTOR, mean_gap)
    counts = rng.poisson(session / mean_gap)
    check_inst = np.repeat(opts, counts)
    check_t = open_rel + rng.integers(1, session - 1_000_000, len(check_inst))
    all_inst = np.concatenate([opts, check_inst])
    all_t = np.concatenate([np.full(len(opts), open_rel, dtype=np.int64), check_t])
    order = np.lexsort((all_t, all_inst))
    all_inst, all_t = all_inst[order], all_t[order]
    bid, ask = _option_quotes(chain, shape, path, all_inst, all_t, day_start_ns)
    parts_inst.append(all_inst)
    parts_t.append(all_t)
    parts_bid.append(bid)
    parts_ask.append(ask)
    inst = np.concatenate(parts_inst)
    t = np.concatenate(parts_t)
    bid = np.concatenate(parts_bid)
    ask = np.concatenate(parts_ask)
    order = np.lexsort((t, inst))
    inst, t, bid, ask = inst[order], t[order], bid[order], ask[order]
    # keep the first row of each instrument and every real change at least 3 ms after the last
    new_inst = np.ones(len(inst), dtype=bool)
    new_inst[1:] = inst[1:] != inst[:-1]
    changed = np.ones(len(inst), dtype=bool)
    changed[1:] = (bid[1:] != bid[:-1]) | (ask[1:] != ask[:-1])
    keep = new_inst | changed
    inst, t, bid, ask, new_inst = inst[keep], t[keep], bid[keep], ask[keep], new_inst[keep]
    too_close = np.zeros(len(t), dtype=bool)
    too_close[1:] = (~new_inst[1:]) & (t[1:] - t[:-1] < 3_000_000)
    keep = ~too_close
    inst, t, bid, ask = inst[keep], t[keep], bid[keep], ask[keep]
    # dropping a row can leave two equal states adjacent; drop those too
    same = np.zeros(len(t), dtype=bool)
    same[1:] = (inst[1:] == inst[:-1]) & (bid[1:] == bid[:-1]) & (ask[1:] == ask[:-1])
    keep = ~same
    inst, t, bid, ask = inst[keep], t[keep], bid[keep], ask[keep]
    first = np.searchsorted(inst, np.arange(chain.n))
    return QuoteTape(inst=inst, t=t, bid=bid, ask=ask, first=first)


def slot_key(inst: np.ndarray, side: np.ndarray, r: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Order key of a market-maker slot; see the module docstring."""
    return ((np.asarray(inst, dtype=np.int64) * 2 + side) * LMAX + r) * KMAX + k


def slot_key_space(n_instruments: int) -> int:
    """First key not used by slots; transient orders and hidden fills are numbered from here."""
    return n_instruments * 2 * LMAX * KMAX


class KeySpace:
    """Hands out disjoint ranges of order keys to the generators."""

    def __init__(self, start: int) -> None:
        self._next = start

    def take(self, n: int) -> int:
        base = self._next
        self._next += int(n)
        return base
