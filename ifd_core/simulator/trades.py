"""Trades against the market makers' ladder, and the replenishment that follows each one.

A trade event is ``T`` (aggressor side, price, size) then one ``F`` per resting order filled, per
price level swept, then ``C`` (filled) or ``M`` (partly filled) for each of those orders. A few
milliseconds later a separate event restores the ladder (``A`` for a filled order, ``M`` back to
full size for a partial one), so the next trade meets the standard ladder again. Because of that,
all trades of a day are computed at once from the quote tape.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from ifd_core.simulator.book import (
    ASK,
    BID,
    KMAX,
    LMAX,
    BookShape,
    KeySpace,
    QuoteTape,
    level_present,
    price_fixed,
    slot_key,
)
from ifd_core.simulator.chain import DayChain
from ifd_core.simulator.events import (
    ADD,
    CANCEL,
    FILL,
    MODIFY,
    NO_ORDER,
    SIDE_ASK,
    SIDE_BID,
    TRADE,
    EventBatch,
)

NOISE = -1  # tag of trades that belong to no planted event
GUARD_NS = 2_000_000  # no other book event of the instrument within 2 ms of a trade's window
TRADE_CHUNK = 25_000  # trades per vectorised pass; small passes keep temporaries in cache


@dataclass
class TradePlan:
    """Trades to execute; ``aggressor`` is +1 (buy, lifts offers) or -1 (sell, hits bids).

    ``qty`` is the visible size wanted; ``hidden`` adds an iceberg fill at the best level;
    ``delay`` is the time until the market maker replenishes; ``tag`` links planted trades to
    their ground-truth event (``NOISE`` otherwise).
    """

    inst: np.ndarray
    t: np.ndarray
    aggressor: np.ndarray
    qty: np.ndarray
    hidden: np.ndarray
    delay: np.ndarray
    tag: np.ndarray

    @staticmethod
    def concat(plans: list[TradePlan]) -> TradePlan:
        return TradePlan(**{f: np.concatenate([getattr(p, f) for p in plans]) for f in _FIELDS})

    def take(self, idx: np.ndarray) -> TradePlan:
        return TradePlan(**{f: getattr(self, f)[idx] for f in _FIELDS})

    def with_times(self, t: np.ndarray) -> TradePlan:
        return replace(self, t=t)

    def __len__(self) -> int:
        return len(self.t)


_FIELDS = tuple(f.name for f in fields(TradePlan))


@dataclass
class Executed:
    """What actually traded: total size (all T records) and T-record count per trade."""

    plan: TradePlan
    size: np.ndarray
    prints: np.ndarray


def _tape_conflict(tape: QuoteTape, inst: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """True where the instrument re-quotes inside [lo, hi]."""
    key = tape.key
    row = np.searchsorted(key, (inst.astype(np.int64) << 47) | lo, side="left")
    row_c = np.minimum(row, len(key) - 1)
    return (row < len(key)) & (tape.inst[row_c] == inst) & (tape.t[row_c] <= hi)


def space_out(plan: TradePlan, tape: QuoteTape, keep_tags: bool) -> TradePlan:
    """Make every trade's window [t, t + delay] free of other book events of its instrument.

    Noise trades that would collide are dropped; planted trades (``keep_tags``) are nudged later
    by 5 ms until they are clear, so the ground truth never loses a trade.
    """
    if keep_tags:
        t = plan.t.copy()
        for _ in range(200):
            bad = _tape_conflict(tape, plan.inst, t - GUARD_NS, t + plan.delay + GUARD_NS)
            if not bad.any():
                break
            t[bad] += 5_000_000
        plan = plan.with_times(t)
        plan = plan.take(np.lexsort((plan.t, plan.inst)))
        same = plan.inst[1:] == plan.inst[:-1]
        if np.any(same & (plan.t[1:] - (plan.t[:-1] + plan.delay[:-1]) < 2 * GUARD_NS)):
            raise AssertionError("planted trades of one instrument collide after nudging")
        return plan
    plan = plan.take(np.lexsort((plan.t, plan.inst)))
    clash = _tape_conflict(tape, plan.inst, plan.t - GUARD_NS, plan.t + plan.delay + GUARD_NS)
    same = np.zeros(len(plan), dtype=bool)
    same[1:] = plan.inst[1:] == plan.inst[:-1]
    too_close = np.zeros(len(plan), dtype=bool)
    too_close[1:] = same[1:] & (plan.t[1:] - (plan.t[:-1] + plan.delay[:-1]) < 2 * GUARD_NS)
    return plan.take(np.flatnonzero(~clash & ~too_close))


def execute(
    plan: TradePlan,
    chain: DayChain,
    shape: BookShape,
    tape: QuoteTape,
    keys: KeySpace,
) -> tuple[list[EventBatch], Executed]:
    """Trade and replenishment events for every trade of ``plan`` (in chunks to bound memory)."""
    batches: list[EventBatch] = []
    sizes, prints, kept = [], [], []
    for start in range(0, len(plan), TRADE_CHUNK):
        idx = np.arange(start, min(start + TRADE_CHUNK, len(plan)))
        b_trade, b_fill, size, n_prints, ok = _execute_chunk(
            plan.take(idx), chain, shape, tape, keys
        )
        batches += [b_trade, b_fill]
        sizes.append(size)
        prints.append(n_prints)
        kept.append(idx[ok])
    if not len(plan):
        empty = np.zeros(0, dtype=np.int64)
        return [], Executed(plan, empty, empty)
    kept_idx = np.concatenate(kept)
    return batches, Executed(plan.take(kept_idx), np.concatenate(sizes), np.concatenate(prints))


def _execute_chunk(
    plan: TradePlan,
    chain: DayChain,
    shape: BookShape,
    tape: QuoteTape,
    keys: KeySpace,
) -> tuple[EventBatch, EventBatch, np.ndarray, np.ndarray, np.ndarray]:
    rows = tape.row_at(plan.inst, plan.t)
    buy = plan.aggressor > 0
    top = np.where(buy, tape.ask[rows], tape.bid[rows])
    rest_side = np.where(buy, ASK, BID)
    inst = plan.inst
    j = np.arange(LMAX)
    k = np.arange(KMAX)
    g = top[:, None] + np.where(buy, 1, -1)[:, None] * j[None, :]
    present = (j[None, :] < shape.levels[inst][:, None]) & level_present(
        chain.is_future[inst][:, None], g
    )
    valid = present[:, :, None] & (k[None, None, :] < shape.orders[inst][:, None, None])
    sizes = shape.size_of(inst[:, None, None], rest_side[:, None, None], g[:, :, None], k)
    sizes = np.where(valid, sizes, 0).reshape(len(plan), LMAX * KMAX)
    cum = np.cumsum(sizes, axis=1)
    depth = cum[:, -1]
    qty = np.minimum(plan.qty, depth - 1)
    ok = qty >= 1
    plan, rows, buy, top, rest_side, g = (
        plan.take(np.flatnonzero(ok)),
        rows[ok],
        buy[ok],
        top[ok],
        rest_side[ok],
        g[ok],
    )
    sizes, cum, qty, inst = sizes[ok], cum[ok], qty[ok], plan.inst
    n = len(plan)
    fill = np.clip(qty[:, None] - (cum - sizes), 0, sizes)
    level_fill = fill.reshape(n, LMAX, KMAX).sum(axis=2)
    hidden = plan.hidden
    aggr_char = np.where(buy, SIDE_BID, SIDE_ASK).astype(np.uint8)
    rest_char = np.where(buy, SIDE_ASK, SIDE_BID).astype(np.uint8)
    block = KMAX + 2  # T, F x KMAX, hidden F

    # T records, one per price level swept
    tn, tj = np.nonzero(level_fill)
    t_size = level_fill[tn, tj] + np.where(tj == 0, hidden[tn], 0)
    # F records of visible resting orders
    fn, fc = np.nonzero(fill)
    fj, fk = fc // KMAX, fc % KMAX
    f_size = fill[fn, fc]
    f_full = f_size == sizes[fn, fc]
    f_g = g[fn, fj]
    f_price = price_fixed(chain, inst[fn], f_g)
    f_key = slot_key(inst[fn], rest_side[fn], f_g % shape.levels[inst[fn]], fk)
    # hidden (iceberg) fills: an order id never seen before, never added or cancelled
    hn = np.flatnonzero(hidden > 0)
    h_key = keys.take(len(hn)) + np.arange(len(hn))

    trade_batch = EventBatch.from_cells(
        plan.t,
        inst,
        np.concatenate([tn, fn, hn, fn]),
        np.concatenate(
            [
                tj * block,
                fj * block + 1 + fk,
                np.full(len(hn), KMAX + 1),
                LMAX * block + fc,
            ]
        ),
        action=np.concatenate(
            [
                np.full(len(tn), TRADE),
                np.full(len(fn), FILL),
                np.full(len(hn), FILL),
                np.where(f_full, CANCEL, MODIFY),
            ]
        ).astype(np.uint8),
        side=np.concatenate([aggr_char[tn], rest_char[fn], rest_char[hn], rest_char[fn]]),
        price=np.concatenate(
            [
                price_fixed(chain, inst[tn], g[tn, tj]),
                f_price,
                price_fixed(chain, inst[hn], g[hn, 0]),
                f_price,
            ]
        ),
        size=np.concatenate(
            [t_size, f_size, hidden[hn], np.where(f_full, f_size, sizes[fn, fc] - f_size)]
        ),
        okey=np.concatenate([np.full(len(tn), NO_ORDER), f_key, h_key, f_key]),
        new_id=np.concatenate(
            [
                np.zeros(len(tn) + len(fn), dtype=bool),
                np.ones(len(hn), dtype=bool),
                np.zeros(len(fn), dtype=bool),
            ]
        ),
    )
    refill_batch = EventBatch.from_cells(
        plan.t + plan.delay,
        inst,
        fn,
        fc,
        action=np.where(f_full, ADD, MODIFY).astype(np.uint8),
        side=rest_char[fn],
        price=f_price,
        size=sizes[fn, fc],
        okey=f_key,
        new_id=f_full,
    )
    total = qty + hidden
    n_prints = (level_fill > 0).sum(axis=1)
    return trade_batch, refill_batch, total, n_prints, ok
