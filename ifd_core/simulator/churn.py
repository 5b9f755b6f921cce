"""Book churn: orders that come and go without trading, which is most of real MBO traffic.

Three kinds, all placed only where they cannot interfere with a trade or a re-quote of the same
instrument (the *busy* windows), so the standard ladder that trades are computed against is never
disturbed:

* transient orders: added at or near the touch, maybe resized, then cancelled; some improve the
  quote inside a 2-3 tick spread (only bids in a 2-tick spread, so two improvers cannot cross);
* cancel/replace of a market-maker order (same price and size, new order id);
* size flickers: a market-maker order modified to another size and back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ifd_core.simulator.book import (
    BID,
    BookShape,
    KeySpace,
    QuoteTape,
    level_of_ring,
    level_present,
    price_fixed,
    slot_key,
)
from ifd_core.simulator.chain import DayChain
from ifd_core.simulator.events import (
    ADD,
    CANCEL,
    MODIFY,
    SIDE_ASK,
    SIDE_BID,
    EventBatch,
)
from ifd_core.simulator.noise import intraday_times_from_uniform
from ifd_core.simulator.trades import Executed

# candidates per day at scale 1; roughly 80 % survive the busy-window check
TRANSIENTS_PER_DAY = 48_000
SLOT_REPLACES_PER_DAY = 9_000
SIZE_FLICKERS_PER_DAY = 10_000
FUTURE_CHURN_SHARE = 0.4
MARGIN_NS = 1_000_000
MIN_LIFE_NS = 1_500_000
FUTURE_LIFE_NS = 60e6  # mean life of a transient future order
OPTION_LIFE_NS = 3e9
_DEPTHS = np.array([-1, 0, 1, 2, 3, 4, 5])
_DEPTH_P = np.array([0.08, 0.3, 0.2, 0.15, 0.1, 0.1, 0.07])
_OPTION_SIZES = np.array([1, 1, 2, 3, 5, 5, 10, 10, 20, 25])


@dataclass(frozen=True)
class BusyIndex:
    """Per-instrument windows that churn must avoid (re-quotes and trade-to-refill spans)."""

    start_key: np.ndarray
    end_max_key: np.ndarray

    @staticmethod
    def build(tape: QuoteTape, executed: Executed) -> BusyIndex:
        rq = tape.requote_rows()
        plan = executed.plan
        inst = np.concatenate([tape.inst[rq], plan.inst]).astype(np.int64)
        start = np.concatenate([tape.t[rq] - MARGIN_NS, plan.t - MARGIN_NS])
        end = np.concatenate([tape.t[rq] + MARGIN_NS, plan.t + plan.delay + MARGIN_NS])
        order = np.lexsort((start, inst))
        inst, start, end = inst[order], start[order], end[order]
        end_max = np.maximum.accumulate((inst << 47) | end)
        return BusyIndex(start_key=(inst << 47) | start, end_max_key=end_max)

    def overlaps(self, inst: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        inst = inst.astype(np.int64)
        idx = np.searchsorted(self.start_key, (inst << 47) | hi, side="right") - 1
        idx_c = np.maximum(idx, 0)
        end_key = self.end_max_key[idx_c]
        same = (idx >= 0) & ((end_key >> 47) == inst)
        return same & ((end_key & ((1 << 47) - 1)) >= lo)


def _weights(chain: DayChain, option_rates: np.ndarray) -> np.ndarray:
    fut = chain.is_future.astype(np.float64)
    w_fut = fut / fut.sum() * FUTURE_CHURN_SHARE
    w_opt = option_rates / option_rates.sum() * (1.0 - FUTURE_CHURN_SHARE)
    w = w_fut + w_opt
    return w / w.sum()


def churn_batches(
    rng: np.random.Generator,
    chain: DayChain,
    shape: BookShape,
    tape: QuoteTape,
    busy: BusyIndex,
    keys: KeySpace,
    option_rates: np.ndarray,
    open_rel: int,
    close_rel: int,
    scale: float,
) -> list[EventBatch]:
    weights = _weights(chain, option_rates)
    args = (rng, chain, shape, tape, busy, weights, open_rel, close_rel)
    return [
        _transients(*args, keys, int(round(TRANSIENTS_PER_DAY * scale))),
        _slot_replaces(*args, int(round(SLOT_REPLACES_PER_DAY * scale))),
        _size_flickers(*args, int(round(SIZE_FLICKERS_PER_DAY * scale))),
    ]


def _draw(
    rng: np.random.Generator, n: int, weights: np.ndarray, open_rel: int, close_rel: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` (instrument, time) candidates, sorted by instrument then time.

    Sorted queries make the many tape and busy-window look-ups cache friendly.
    """
    inst = np.repeat(np.arange(len(weights)), rng.multinomial(n, weights))
    t = np.sort(inst * 2.0 + rng.random(n)) - inst * 2.0  # sorted uniforms per instrument
    return inst, intraday_times_from_uniform(t, open_rel, close_rel)


def _single_record_events(
    ts: np.ndarray,
    inst: np.ndarray,
    action: np.ndarray,
    side: np.ndarray,
    price: np.ndarray,
    size: np.ndarray,
    okey: np.ndarray,
    new_id: np.ndarray,
) -> EventBatch:
    n = len(ts)
    return EventBatch(
        ts=ts,
        inst=inst,
        rec_event=np.arange(n),
        action=action.astype(np.uint8),
        side=side.astype(np.uint8),
        price=price,
        size=size,
        okey=okey,
        new_id=new_id,
        flags=np.zeros(n, dtype=np.uint8),
    )


def _transients(
    rng: np.random.Generator,
    chain: DayChain,
    shape: BookShape,
    tape: QuoteTape,
    busy: BusyIndex,
    weights: np.ndarray,
    open_rel: int,
    close_rel: int,
    keys: KeySpace,
    target: int,
) -> EventBatch:
    n = target
    inst, t1 = _draw(rng, n, weights, open_rel, close_rel)
    fut = chain.is_future[inst]
    side = rng.integers(0, 2, n)
    life = rng.exponential(1.0, n) * np.where(fut, FUTURE_LIFE_NS, OPTION_LIFE_NS)
    t2 = t1 + MIN_LIFE_NS + life.astype(np.int64)
    tm = t1 + ((t2 - t1) * rng.uniform(0.3, 0.7, n)).astype(np.int64)
    resize = rng.random(n) < 0.3
    depth = rng.choice(_DEPTHS, n, p=_DEPTH_P)
    rows = tape.row_at(inst, t1)
    bid, ask = tape.bid[rows], tape.ask[rows]
    g = np.where(side == BID, bid - depth, ask + depth)
    size = np.where(fut, np.minimum(rng.geometric(0.5, n), 10), rng.choice(_OPTION_SIZES, n))
    new_size = np.where(
        (rng.random(n) < 0.5) & (size > 1),
        1 + (rng.random(n) * (size - 1)).astype(np.int64),
        size + rng.integers(1, 10, n),
    )
    ok = (
        (t2 < close_rel - MARGIN_NS)
        & ((depth >= 0) | (ask - bid >= 3) | ((ask - bid == 2) & (side == BID)))
        & level_present(fut, g)
        & ~busy.overlaps(inst, t1 - MARGIN_NS, t2 + MARGIN_NS)
    )
    idx = np.flatnonzero(ok)
    inst, side, g, size, new_size = inst[idx], side[idx], g[idx], size[idx], new_size[idx]
    t1, t2, tm, resize = t1[idx], t2[idx], tm[idx], resize[idx]
    m = len(idx)
    key = keys.take(m) + np.arange(m)
    price = price_fixed(chain, inst, g)
    side_char = np.where(side == BID, SIDE_BID, SIDE_ASK)
    r = np.flatnonzero(resize)
    return _single_record_events(
        ts=np.concatenate([t1, tm[r], t2]),
        inst=np.concatenate([inst, inst[r], inst]),
        action=np.concatenate([np.full(m, ADD), np.full(len(r), MODIFY), np.full(m, CANCEL)]),
        side=np.concatenate([side_char, side_char[r], side_char]),
        price=np.concatenate([price, price[r], price]),
        size=np.concatenate([size, new_size[r], np.where(resize, new_size, size)]),
        okey=np.concatenate([key, key[r], key]),
        new_id=np.concatenate([np.ones(m, dtype=bool), np.zeros(len(r) + m, dtype=bool)]),
    )


def _slot_draw(
    rng: np.random.Generator,
    chain: DayChain,
    shape: BookShape,
    tape: QuoteTape,
    weights: np.ndarray,
    n: int,
    open_rel: int,
    close_rel: int,
    k_first: bool,
) -> tuple[np.ndarray, ...]:
    """Random market-maker slots at random times: (inst, side, r, k, g, present, t)."""
    inst, t = _draw(rng, n, weights, open_rel, close_rel)
    side = rng.integers(0, 2, n)
    levels, orders = shape.levels[inst], shape.orders[inst]
    r = (rng.random(n) * levels).astype(np.int64)
    if k_first:
        k = np.zeros(n, dtype=np.int64)
    else:  # k >= 1 only: size flickers own k == 0, so the two never overlap on one order
        k = 1 + (rng.random(n) * (orders - 1)).astype(np.int64)
    rows = tape.row_at(inst, t)
    top = np.where(side == BID, tape.bid[rows], tape.ask[rows])
    g = level_of_ring(side, top, r, levels)
    present = level_present(chain.is_future[inst], g)
    return inst, side, r, k, g, present, t


def _slot_replaces(
    rng: np.random.Generator,
    chain: DayChain,
    shape: BookShape,
    tape: QuoteTape,
    busy: BusyIndex,
    weights: np.ndarray,
    open_rel: int,
    close_rel: int,
    target: int,
) -> EventBatch:
    inst, side, r, k, g, present, t = _slot_draw(
        rng, chain, shape, tape, weights, target, open_rel, close_rel, False
    )
    ok = present & ~busy.overlaps(inst, t - MARGIN_NS, t + MARGIN_NS)
    idx = np.flatnonzero(ok)
    inst, side, r, k, g, t = inst[idx], side[idx], r[idx], k[idx], g[idx], t[idx]
    m = len(idx)
    price = price_fixed(chain, inst, g)
    size = shape.size_of(inst, side, g, k)
    key = slot_key(inst, side, r, k)
    side_char = np.where(side == BID, SIDE_BID, SIDE_ASK).astype(np.uint8)
    return EventBatch(
        ts=t,
        inst=inst,
        rec_event=np.repeat(np.arange(m), 2),
        action=np.tile(np.array([CANCEL, ADD], dtype=np.uint8), m),
        side=np.repeat(side_char, 2),
        price=np.repeat(price, 2),
        size=np.repeat(size, 2),
        okey=np.repeat(key, 2),
        new_id=np.tile(np.array([False, True]), m),
        flags=np.zeros(2 * m, dtype=np.uint8),
    )


def _size_flickers(
    rng: np.random.Generator,
    chain: DayChain,
    shape: BookShape,
    tape: QuoteTape,
    busy: BusyIndex,
    weights: np.ndarray,
    open_rel: int,
    close_rel: int,
    target: int,
) -> EventBatch:
    n = target
    inst, side, r, k, g, present, t1 = _slot_draw(
        rng, chain, shape, tape, weights, n, open_rel, close_rel, True
    )
    fut = chain.is_future[inst]
    life = rng.exponential(1.0, n) * np.where(fut, FUTURE_LIFE_NS, OPTION_LIFE_NS)
    t2 = t1 + MIN_LIFE_NS + life.astype(np.int64)
    size = shape.size_of(inst, side, g, k)
    other = np.where(size > 1, np.maximum(size // 2, 1), size + 1 + rng.integers(0, 5, n))
    ok = (
        present
        & (t2 < close_rel - MARGIN_NS)
        & ~busy.overlaps(inst, t1 - MARGIN_NS, t2 + MARGIN_NS)
    )
    idx = np.flatnonzero(ok)
    inst, side, r, k, g, t1, t2 = inst[idx], side[idx], r[idx], k[idx], g[idx], t1[idx], t2[idx]
    size, other = size[idx], other[idx]
    m = len(idx)
    price = price_fixed(chain, inst, g)
    key = slot_key(inst, side, r, k)
    side_char = np.where(side == BID, SIDE_BID, SIDE_ASK)
    return _single_record_events(
        ts=np.concatenate([t1, t2]),
        inst=np.concatenate([inst, inst]),
        action=np.full(2 * m, MODIFY),
        side=np.concatenate([side_char, side_char]),
        price=np.concatenate([price, price]),
        size=np.concatenate([other, size]),
        okey=np.concatenate([key, key]),
        new_id=np.zeros(2 * m, dtype=bool),
    )
