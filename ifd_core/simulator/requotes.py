"""Opening snapshots and market-maker re-quotes, generated from the quote tape."""

from __future__ import annotations

import numpy as np

from ifd_core.simulator.book import (
    ASK,
    BID,
    KMAX,
    LMAX,
    BookShape,
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
    CLEAR,
    F_SNAPSHOT,
    MODIFY,
    NO_ORDER,
    SIDE_ASK,
    SIDE_BID,
    SIDE_NONE,
    EventBatch,
)
from ifd_core.units import UNDEF_PRICE

SNAPSHOT_LEAD_NS = 5_000_000  # the snapshot is stamped 5 ms before the open
CANCEL_REPLACE_SHARE = 0.2  # share of moved levels re-quoted by cancel+add instead of modify
REQUOTE_CHUNK = 40_000


def _grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    side, r, k = np.meshgrid(np.arange(2), np.arange(LMAX), np.arange(KMAX), indexing="ij")
    return side.ravel(), r.ravel(), k.ravel()


def snapshot_batch(chain: DayChain, shape: BookShape, tape: QuoteTape, open_rel: int) -> EventBatch:
    """One event per instrument: R, then every resting order as A with F_SNAPSHOT."""
    n = chain.n
    rows = tape.first
    side, r, k = _grid()
    inst = np.repeat(np.arange(n), len(side))
    side, r, k = np.tile(side, n), np.tile(r, n), np.tile(k, n)
    top = np.where(side == BID, tape.bid[rows][inst], tape.ask[rows][inst])
    levels = shape.levels[inst]
    g = level_of_ring(side, top, r, levels)
    valid = (r < levels) & (k < shape.orders[inst]) & level_present(chain.is_future[inst], g)
    inst, side, r, k, g, top = inst[valid], side[valid], r[valid], k[valid], g[valid], top[valid]
    depth = np.abs(g - top)
    m = len(inst)
    ev_ts = np.full(n, open_rel - SNAPSHOT_LEAD_NS, dtype=np.int64)
    ev_inst = np.arange(n, dtype=np.int64)
    cell_event = np.concatenate([ev_inst, inst])
    cell_order = np.concatenate([np.zeros(n, dtype=np.int64), 1 + side * 1000 + depth * KMAX + k])
    batch = EventBatch.from_cells(
        ev_ts,
        ev_inst,
        cell_event,
        cell_order,
        action=np.concatenate([np.full(n, CLEAR), np.full(m, ADD)]).astype(np.uint8),
        side=np.concatenate(
            [np.full(n, SIDE_NONE), np.where(side == BID, SIDE_BID, SIDE_ASK)]
        ).astype(np.uint8),
        price=np.concatenate([np.full(n, UNDEF_PRICE), price_fixed(chain, inst, g)]),
        size=np.concatenate([np.zeros(n, dtype=np.int64), shape.size_of(inst, side, g, k)]),
        okey=np.concatenate([np.full(n, NO_ORDER), slot_key(inst, side, r, k)]),
        new_id=np.concatenate([np.zeros(n, dtype=bool), np.ones(m, dtype=bool)]),
        flags=np.full(n + m, F_SNAPSHOT, dtype=np.uint8),
    )
    batch.zero_latency = True
    return batch


def requote_batches(
    rng: np.random.Generator, chain: DayChain, shape: BookShape, tape: QuoteTape
) -> list[EventBatch]:
    """One event per tape change: levels that leave are moved (M) or cancelled and replaced.

    Within an event the side moving away from the other is processed first (asks first when the
    ask rises), so even record-by-record the book never crosses.
    """
    rows_all = tape.requote_rows()
    out = []
    for start in range(0, len(rows_all), REQUOTE_CHUNK):
        rows = rows_all[start : start + REQUOTE_CHUNK]
        out.append(_requote_chunk(rng, chain, shape, tape, rows))
    return out


def _requote_chunk(
    rng: np.random.Generator,
    chain: DayChain,
    shape: BookShape,
    tape: QuoteTape,
    rows: np.ndarray,
) -> EventBatch:
    """Level-wise first (event x side x ring position), then expanded to the orders of each level.

    Records come out already in event order: first side, ring position, then cancels before adds.
    """
    e = len(rows)
    inst = tape.inst[rows]
    levels = shape.levels[inst][:, None, None]
    orders = shape.orders[inst][:, None, None]
    fut = chain.is_future[inst][:, None, None]
    asks_first = (tape.ask[rows] > tape.ask[rows - 1])[:, None, None]
    rank = np.arange(2)[None, :, None]
    side = np.where(asks_first, ASK - rank, BID + rank)  # processing order of the two sides
    r = np.arange(LMAX)[None, None, :]
    old_top = np.where(
        side == BID, tape.bid[rows - 1][:, None, None], tape.ask[rows - 1][:, None, None]
    )
    new_top = np.where(side == BID, tape.bid[rows][:, None, None], tape.ask[rows][:, None, None])
    g_old = level_of_ring(side, old_top, r, levels)
    g_new = level_of_ring(side, new_top, r, levels)
    used = r < levels
    had = used & level_present(fut, g_old)
    has = used & level_present(fut, g_new)
    moved = had & has & (g_old != g_new)
    replace = rng.random((e, 2, LMAX)) < CANCEL_REPLACE_SHARE  # a level moves as a whole
    cancel = ((had & ~has) | (moved & replace)).ravel()
    add = ((has & ~had) | (moved & replace)).ravel()
    modify = (moved & ~replace).ravel()

    shape3 = (e, 2, LMAX)
    k_per_level = np.broadcast_to(orders, shape3).ravel()
    n_cancel = k_per_level * cancel
    n_level = n_cancel + k_per_level * (add | modify)
    level = np.repeat(np.arange(n_level.size), n_level)
    j = np.arange(len(level)) - (np.cumsum(n_level) - n_level)[level]
    is_cancel = j < n_cancel[level]
    k = np.where(is_cancel, j, j - n_cancel[level])
    ev = level // (2 * LMAX)
    lv_side = np.broadcast_to(side, shape3).ravel()[level]
    lv_inst = inst[ev]
    g = np.where(is_cancel, g_old.ravel()[level], g_new.ravel()[level])
    action = np.where(is_cancel, CANCEL, np.where(add[level], ADD, MODIFY)).astype(np.uint8)

    counts = np.bincount(ev, minlength=e)
    keep = counts > 0  # a re-quote can be invisible (an option bid moving below zero)
    remap = np.cumsum(keep) - 1
    return EventBatch(
        ts=tape.t[rows][keep],
        inst=inst[keep],
        rec_event=remap[ev],
        action=action,
        side=np.where(lv_side == BID, SIDE_BID, SIDE_ASK).astype(np.uint8),
        price=price_fixed(chain, lv_inst, g),
        size=shape.size_of(lv_inst, lv_side, g, k),
        okey=slot_key(lv_inst, lv_side, np.broadcast_to(r, shape3).ravel()[level], k),
        new_id=action == ADD,
        flags=np.zeros(len(level), dtype=np.uint8),
    )
