"""The L3 books of ``order_book.BookSet``, compiled with numba: the same numbers, ~15x faster.

``FastBookSet`` replaces ``BookSet`` where the engine uses it: ``apply``, ``flush``, ``bbo``,
``depth``, ``is_crossed`` and ``stats`` give identical values for any stream and any chunking
(parity tests in ``tests/test_order_book_fast.py``); the semantics are docs/algorithms.md §3
(Books). Only the per-event ``on_event`` callback is missing (a Python call per event would cost
more than the book); ``FastBookSet(audit=True)`` records the per-event facts the tests need
instead. State layout and table growth: the comments above the kernels. Speed (bench/engine.py,
one simulated day of 5.2 M records): ~11 M records/s against ~0.7 M for BookSet.
"""

from __future__ import annotations

import time

import databento_dbn
import numpy as np
from numba import njit
from numba.core.options import DefaultOptions

from ifd_core.analysis.order_book import BBO, PRE_TRADE_DTYPE, UNDEF_PRICE

# The kernels never allocate (Python grows the tables), so they need no reference counting.
# Without NRT numba emits no incref/decref around each helper call for each array argument:
# that took a third of the run time. ``_nrt`` is an underscored numba option (long-standing);
# should it ever go, the same code runs, with reference counting.
_NO_NRT = {"_nrt": False} if hasattr(DefaultOptions, "_nrt") else {}
_jit = njit(cache=True, **_NO_NRT)

F_LAST = 0x80

_A, _B, _C, _F, _M, _N, _R, _T = (ord(c) for c in "ABCFMNRT")

ANOMALY_KINDS = (
    "add_no_side",
    "add_bad_price_or_size",
    "add_duplicate_id",
    "cancel_unknown_id",
    "cancel_oversize",
    "modify_unknown_id",
    "modify_bad_price_or_size",
    "unknown_action",
)
(
    _AN_ADD_NO_SIDE,
    _AN_ADD_BAD,
    _AN_ADD_DUP,
    _AN_CANCEL_UNKNOWN,
    _AN_CANCEL_OVERSIZE,
    _AN_MODIFY_UNKNOWN,
    _AN_MODIFY_BAD,
    _AN_UNKNOWN_ACTION,
) = range(len(ANOMALY_KINDS))

# State: plain numpy arrays, so it persists between calls and pickles.
# * bk: one row per instrument (counters, anomaly counts, pending FIFO head/tail, where its two
#   price ladders live in lv); ``it`` maps instrument_id → row (hash table).
# * ot: every live order of every book in one open-addressing table keyed by (book row, order_id),
#   linear probing with backward-shift deletion (no tombstones pile up under add/cancel churn).
#   A row holds the order itself, so a lookup touches one row. ``R`` clears a book in O(1) by
#   bumping its epoch; orders stored under an older epoch are dead and dropped at the next rehash.
# * lv: price levels (price, size, count), one sorted ladder per (book, side) in a shared pool,
#   best price last (bids ascending, asks descending): the best is always the top, nothing to
#   repair when it empties, and inserts near the top of book move few entries.
# * pd: the pending records of open events, a linked FIFO per book in one arena with a free list.
# Growth: the kernels never allocate. Before each record they check, conservatively, that the
# tables can take everything the record may do (a flush of the book's whole pending event
# included); if not, they return the record's position and the table to grow, Python doubles it
# and the kernel resumes at the untouched record: no fixed cap, nothing overflows silently.
# ``cache=True``: the first use on a machine compiles (seconds) and stores the machine code under
# __pycache__. Input is viewed, never copied, read-only with ``action``/``side`` as uint8 (one
# compiled signature for every caller); the pre-trade rows are written in place.

# ----- bk: one row per book ----------------------------------------------------------------------
(
    _IID,
    _RECORDS,
    _EVENTS,
    _TRADES,
    _FILLS,
    _HIDDEN_FILLS,
    _HIDDEN_FILL_SIZE,
    _CLEARS,
    _ORDERS,
    _EPOCH,  # bumped by R: orders stored under an older epoch are dead
    _PEND_HEAD,  # pending FIFO in pd (-1: empty)
    _PEND_TAIL,
    _PEND_N,
    _LADDER,  # 2 ladders x (start, len, cap) in lv; side 0 = bid, 1 = ask
) = range(14)
_L_START, _L_LEN, _L_CAP = 0, 1, 2
_ANOM = _LADDER + 6
BK_COLS = _ANOM + len(ANOMALY_KINDS)

# ----- ot: order hash table rows -----------------------------------------------------------------
_O_BOOK, _O_OID, _O_PX, _O_SZ, _O_META = range(5)  # book -1 = empty slot; meta = epoch*2 + is_bid
OT_COLS = 5

# ----- lv: level pool rows; pd: pending arena rows; st: scalars ----------------------------------
_LV_PX, _LV_SZ, _LV_CT = range(3)
_P_ACT, _P_SIDE, _P_OID, _P_PX, _P_SZ, _P_NEXT = range(6)
_S_BOOKS, _S_ORDERS_USED, _S_POOL_USED, _S_PD_FREE, _S_T_N, _S_AU_N, _S_NEED = range(7)

# Kernel return codes: done, or which table to grow before resuming.
_DONE, _GROW_BOOKS, _GROW_ORDERS, _GROW_POOL, _GROW_PENDING = range(5)

_MIN_LADDER = 8

MBO_DTYPE = np.dtype(databento_dbn.MBOMsg._dtypes)
# The kernel reads the MBO record array in place through this view (action/side as uint8).
_KERNEL_DTYPE = np.dtype(
    {
        "names": list(MBO_DTYPE.names),
        "formats": [
            np.uint8 if n in ("action", "side") else MBO_DTYPE.fields[n][0] for n in MBO_DTYPE.names
        ],
        "offsets": [MBO_DTYPE.fields[n][1] for n in MBO_DTYPE.names],
        "itemsize": MBO_DTYPE.itemsize,
    },
    align=True,
)
# The kernel writes the pre-trade rows in place through this view (side as uint8).
_PRE_KERNEL_DTYPE = np.dtype(
    {
        "names": list(PRE_TRADE_DTYPE.names),
        "formats": [
            np.uint8 if n == "side" else PRE_TRADE_DTYPE.fields[n][0] for n in PRE_TRADE_DTYPE.names
        ],
        "offsets": [PRE_TRADE_DTYPE.fields[n][1] for n in PRE_TRADE_DTYPE.names],
        "itemsize": PRE_TRADE_DTYPE.itemsize,
    }
)
AUDIT_DTYPE = np.dtype(
    [
        ("index", "<i8"),  # stream position of the F_LAST record
        ("instrument_id", "<u4"),
        ("crossed", "?"),
        ("locked", "?"),
        ("bad_levels", "<i8"),  # levels with size <= 0 or count <= 0 (must be 0)
    ]
)


# =================================================================================================
# hashing
# =================================================================================================
@njit(cache=True, inline="always", **_NO_NRT)
def _hash(a, b, mask):
    """Slot of key (a, b): Fibonacci hashing, bits 32 and up of one multiply. Order ids are
    near-sequential; the product's middle bits spread them where the low bits would cluster
    under linear probing (tables stay far below 2**32 slots)."""
    x = (np.uint64(b) + np.uint64(a) * np.uint64(0xC2B2AE3D27D4EB4F)) * np.uint64(
        0x9E3779B97F4A7C15
    )
    return np.int64((x >> np.uint64(32)) & np.uint64(mask))


# ----- instrument_id → book row ------------------------------------------------------------------
@_jit
def _it_find(it, iid):
    """Row of ``iid``, or -1. ``it`` rows are (instrument_id or -1, book row)."""
    mask = it.shape[0] - 1
    j = _hash(0, iid, mask)
    while True:
        k = it[j, 0]
        if k == iid:
            return it[j, 1]
        if k < 0:
            return -1
        j = (j + 1) & mask


@_jit
def _it_insert(it, iid, row):
    mask = it.shape[0] - 1
    j = _hash(0, iid, mask)
    while it[j, 0] >= 0:
        j = (j + 1) & mask
    it[j, 0] = iid
    it[j, 1] = row


@_jit
def _register(st, it, bk, iid):
    """A new book for ``iid`` (callers checked there is room)."""
    b = st[_S_BOOKS]
    st[_S_BOOKS] = b + 1
    bk[b, :] = 0
    bk[b, _IID] = iid
    bk[b, _PEND_HEAD] = -1
    bk[b, _PEND_TAIL] = -1
    _it_insert(it, iid, b)
    return b


# ----- (book, order_id) → order ------------------------------------------------------------------
@_jit
def _ot_probe(ot, b, oid):
    """Slot holding key (b, oid) whatever its epoch, else ``-(empty slot + 1)``."""
    mask = ot.shape[0] - 1
    j = _hash(b, oid, mask)
    while True:
        kb = ot[j, _O_BOOK]
        if kb < 0:
            return -(j + 1)
        if kb == b and ot[j, _O_OID] == oid:
            return j
        j = (j + 1) & mask


@_jit
def _ot_find_live(ot, bk, b, oid):
    """Slot of the live order (b, oid), or -1 (absent, or dead since the book's last R)."""
    j = _ot_probe(ot, b, oid)
    if j >= 0 and (ot[j, _O_META] >> 1) == bk[b, _EPOCH]:
        return j
    return -1


@_jit
def _ot_delete(st, ot, j):
    """Remove slot ``j`` and shift later members of its probe run back (no tombstones)."""
    mask = ot.shape[0] - 1
    hole = j
    k = j
    while True:
        k = (k + 1) & mask
        if ot[k, _O_BOOK] < 0:
            break
        home = _hash(ot[k, _O_BOOK], ot[k, _O_OID], mask)
        # k's entry may fill the hole unless its home lies cyclically in (hole, k].
        if (hole < k and (home <= hole or home > k)) or (hole > k and home <= hole and home > k):
            for c in range(OT_COLS):
                ot[hole, c] = ot[k, c]
            hole = k
    ot[hole, _O_BOOK] = -1
    st[_S_ORDERS_USED] -= 1


@_jit
def _ot_rehash(old, new, bk):
    """Copy the live orders of ``old`` into the empty table ``new``; return how many."""
    mask = new.shape[0] - 1
    n = 0
    for j in range(old.shape[0]):
        b = old[j, _O_BOOK]
        if b < 0 or (old[j, _O_META] >> 1) != bk[b, _EPOCH]:
            continue
        k = _hash(b, old[j, _O_OID], mask)
        while new[k, _O_BOOK] >= 0:
            k = (k + 1) & mask
        for c in range(OT_COLS):
            new[k, c] = old[j, c]
        n += 1
    return n


# =================================================================================================
# price ladders
# =================================================================================================
@_jit
def _ladder_pos(lv, start, n, px, bid):
    """Index (0..n) of ``px`` in a ladder, or where it goes. Bids ascend and asks descend, so
    the best price is at n-1 for both; searching from the top would be no faster on average."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) >> 1
        p = lv[start + mid, _LV_PX]
        if (p < px) if bid else (p > px):
            lo = mid + 1
        else:
            hi = mid
    return lo


@_jit
def _level_add(bk, lv, b, side, px, sz):
    """One more order of ``sz`` at ``px`` (capacity was checked before the record)."""
    base = _LADDER + 3 * side
    start = bk[b, base + _L_START]
    n = bk[b, base + _L_LEN]
    k = _ladder_pos(lv, start, n, px, side == 0)
    if k < n and lv[start + k, _LV_PX] == px:
        lv[start + k, _LV_SZ] += sz
        lv[start + k, _LV_CT] += 1
        return
    for m in range(start + n, start + k, -1):  # open a gap at k
        lv[m, _LV_PX] = lv[m - 1, _LV_PX]
        lv[m, _LV_SZ] = lv[m - 1, _LV_SZ]
        lv[m, _LV_CT] = lv[m - 1, _LV_CT]
    lv[start + k, _LV_PX] = px
    lv[start + k, _LV_SZ] = sz
    lv[start + k, _LV_CT] = 1
    bk[b, base + _L_LEN] = n + 1


@_jit
def _level_remove(bk, lv, b, side, px, sz, ct):
    """Take ``sz`` and ``ct`` orders off the level at ``px``; drop it when no order is left."""
    base = _LADDER + 3 * side
    start = bk[b, base + _L_START]
    n = bk[b, base + _L_LEN]
    k = _ladder_pos(lv, start, n, px, side == 0)
    if k >= n or lv[start + k, _LV_PX] != px:
        return  # cannot happen: every live order's size is in its level
    lv[start + k, _LV_SZ] -= sz
    lv[start + k, _LV_CT] -= ct
    if lv[start + k, _LV_CT] > 0:
        return
    for m in range(start + k, start + n - 1):
        lv[m, _LV_PX] = lv[m + 1, _LV_PX]
        lv[m, _LV_SZ] = lv[m + 1, _LV_SZ]
        lv[m, _LV_CT] = lv[m + 1, _LV_CT]
    bk[b, base + _L_LEN] = n - 1


@_jit
def _ladder_room(st, bk, lv, b, side, extra):
    """Make the ladder able to take ``extra`` more levels, moving it to the end of the pool if
    needed. False (and the size wanted in st[_S_NEED]) when the pool itself must grow."""
    base = _LADDER + 3 * side
    n = bk[b, base + _L_LEN]
    cap = bk[b, base + _L_CAP]
    if n + extra <= cap:
        return True
    new_cap = max(_MIN_LADDER, 2 * cap)
    while new_cap < n + extra:
        new_cap *= 2
    start = st[_S_POOL_USED]
    if start + new_cap > lv.shape[0]:
        st[_S_NEED] = new_cap
        return False
    old = bk[b, base + _L_START]
    for m in range(n):
        for c in range(3):
            lv[start + m, c] = lv[old + m, c]
    bk[b, base + _L_START] = start
    bk[b, base + _L_CAP] = new_cap
    st[_S_POOL_USED] = start + new_cap
    return True


@_jit
def _pool_compact(bk, nb, old, new):
    """Copy every ladder of ``old`` into ``new`` back to back (capacities kept); return the
    pool space used. Ladders that moved left holes in ``old``; this is where they go away."""
    pos = 0
    for b in range(nb):
        for side in range(2):
            base = _LADDER + 3 * side
            start = bk[b, base + _L_START]
            for m in range(bk[b, base + _L_LEN]):
                for c in range(3):
                    new[pos + m, c] = old[start + m, c]
            bk[b, base + _L_START] = pos
            pos += bk[b, base + _L_CAP]
    return pos


# =================================================================================================
# book mutations: one function per action, mirroring order_book.Book
# =================================================================================================
@_jit
def _add(st, bk, ot, lv, b, side, oid, px, sz):
    if side != _B and side != _A:
        bk[b, _ANOM + _AN_ADD_NO_SIDE] += 1
        return
    if px == UNDEF_PRICE or sz <= 0:
        bk[b, _ANOM + _AN_ADD_BAD] += 1
        return
    j = _ot_probe(ot, b, oid)
    if j >= 0 and (ot[j, _O_META] >> 1) == bk[b, _EPOCH]:
        # The exchange never reuses a live order id; keep the newest, drop the old one.
        bk[b, _ANOM + _AN_ADD_DUP] += 1
        _level_remove(bk, lv, b, 1 - (ot[j, _O_META] & 1), ot[j, _O_PX], ot[j, _O_SZ], 1)
    else:
        bk[b, _ORDERS] += 1
        if j < 0:  # a new slot; else a dead order of the same key is overwritten in place
            j = -j - 1
            st[_S_ORDERS_USED] += 1
    is_bid = 1 if side == _B else 0
    ot[j, _O_BOOK] = b
    ot[j, _O_OID] = oid
    ot[j, _O_PX] = px
    ot[j, _O_SZ] = sz
    ot[j, _O_META] = bk[b, _EPOCH] * 2 + is_bid
    _level_add(bk, lv, b, 1 - is_bid, px, sz)


@_jit
def _cancel(st, bk, ot, lv, b, oid, sz):
    j = _ot_find_live(ot, bk, b, oid)
    if j < 0:
        bk[b, _ANOM + _AN_CANCEL_UNKNOWN] += 1
        return
    side = 1 - (ot[j, _O_META] & 1)
    px = ot[j, _O_PX]
    osz = ot[j, _O_SZ]
    if sz >= osz:
        if sz > osz:
            bk[b, _ANOM + _AN_CANCEL_OVERSIZE] += 1
        _ot_delete(st, ot, j)
        bk[b, _ORDERS] -= 1
        _level_remove(bk, lv, b, side, px, osz, 1)
    else:
        ot[j, _O_SZ] = osz - sz
        _level_remove(bk, lv, b, side, px, sz, 0)


@_jit
def _modify(st, bk, ot, lv, b, oid, px, sz):
    j = _ot_find_live(ot, bk, b, oid)
    if j < 0:
        bk[b, _ANOM + _AN_MODIFY_UNKNOWN] += 1
        return
    side = 1 - (ot[j, _O_META] & 1)  # a modify keeps the order's side
    opx = ot[j, _O_PX]
    osz = ot[j, _O_SZ]
    if sz <= 0 or px == UNDEF_PRICE:
        bk[b, _ANOM + _AN_MODIFY_BAD] += 1
        _ot_delete(st, ot, j)
        bk[b, _ORDERS] -= 1
        _level_remove(bk, lv, b, side, opx, osz, 1)
        return
    ot[j, _O_PX] = px
    ot[j, _O_SZ] = sz
    if px == opx:
        _level_remove(bk, lv, b, side, px, osz - sz, 0)  # size change only (either sign)
    else:
        _level_remove(bk, lv, b, side, opx, osz, 1)
        _level_add(bk, lv, b, side, px, sz)


@_jit
def _clear(bk, b):
    """R: the book empties. Its orders die with the epoch; its ladders keep their space."""
    bk[b, _EPOCH] += 1
    bk[b, _ORDERS] = 0
    bk[b, _LADDER + _L_LEN] = 0
    bk[b, _LADDER + 3 + _L_LEN] = 0
    bk[b, _CLEARS] += 1


@_jit
def _apply_one(st, bk, ot, lv, b, act, side, oid, px, sz):
    """Apply one record to the book now (Book.apply_one)."""
    if act == _A:
        _add(st, bk, ot, lv, b, side, oid, px, sz)
    elif act == _C:
        _cancel(st, bk, ot, lv, b, oid, sz)
    elif act == _M:
        _modify(st, bk, ot, lv, b, oid, px, sz)
    elif act == _F:
        bk[b, _FILLS] += 1
        if _ot_find_live(ot, bk, b, oid) < 0:
            bk[b, _HIDDEN_FILLS] += 1
            bk[b, _HIDDEN_FILL_SIZE] += sz
    elif act == _R:
        _clear(bk, b)
    elif act != _T and act != _N:
        bk[b, _ANOM + _AN_UNKNOWN_ACTION] += 1


# ----- pending events ----------------------------------------------------------------------------
@_jit
def _pend(st, bk, pd, b, act, side, oid, px, sz):
    """Buffer a record until its instrument's F_LAST (a free slot was checked)."""
    s = st[_S_PD_FREE]
    st[_S_PD_FREE] = pd[s, _P_NEXT]
    pd[s, _P_ACT] = act
    pd[s, _P_SIDE] = side
    pd[s, _P_OID] = oid
    pd[s, _P_PX] = px
    pd[s, _P_SZ] = sz
    pd[s, _P_NEXT] = -1
    tail = bk[b, _PEND_TAIL]
    if tail < 0:
        bk[b, _PEND_HEAD] = s
    else:
        pd[tail, _P_NEXT] = s
    bk[b, _PEND_TAIL] = s
    bk[b, _PEND_N] += 1


@_jit
def _flush_book(st, bk, ot, lv, pd, b):
    """Apply the book's buffered records in arrival order and free their slots."""
    s = bk[b, _PEND_HEAD]
    bk[b, _PEND_HEAD] = -1
    bk[b, _PEND_TAIL] = -1
    bk[b, _PEND_N] = 0
    while s >= 0:
        nxt = pd[s, _P_NEXT]
        _apply_one(
            st,
            bk,
            ot,
            lv,
            b,
            pd[s, _P_ACT],
            pd[s, _P_SIDE],
            pd[s, _P_OID],
            pd[s, _P_PX],
            pd[s, _P_SZ],
        )
        pd[s, _P_NEXT] = st[_S_PD_FREE]
        st[_S_PD_FREE] = s
        s = nxt


@_jit
def _room(st, bk, ot, lv, b, changes):
    """Can the tables take ``changes`` more order/level inserts for book ``b``? If not, the
    grow code (the needed size in st[_S_NEED]); the record is then retried after growth."""
    if 2 * (st[_S_ORDERS_USED] + changes) > ot.shape[0]:
        st[_S_NEED] = changes
        return _GROW_ORDERS
    for side in range(2):
        if not _ladder_room(st, bk, lv, b, side, changes):
            return _GROW_POOL
    return _DONE


# ----- queries -----------------------------------------------------------------------------------
@_jit
def _best(bk, lv, b, side):
    """(price, size, count) of the best level, UNDEF_PRICE/0/0 when the side is empty."""
    base = _LADDER + 3 * side
    n = bk[b, base + _L_LEN]
    if n == 0:
        return UNDEF_PRICE, 0, 0
    top = bk[b, base + _L_START] + n - 1
    return lv[top, _LV_PX], lv[top, _LV_SZ], lv[top, _LV_CT]


@_jit
def _audit(bk, lv, b, index, au, k):
    """One AUDIT_DTYPE row at an event boundary: crossed/locked and broken levels."""
    bpx, _, _ = _best(bk, lv, b, 0)
    apx, _, _ = _best(bk, lv, b, 1)
    both = bpx != UNDEF_PRICE and apx != UNDEF_PRICE
    bad = 0
    for side in range(2):
        base = _LADDER + 3 * side
        start = bk[b, base + _L_START]
        for m in range(start, start + bk[b, base + _L_LEN]):
            if lv[m, _LV_SZ] <= 0 or lv[m, _LV_CT] <= 0:
                bad += 1
    au[k, 0] = index
    au[k, 1] = bk[b, _IID]
    au[k, 2] = 1 if both and bpx > apx else 0
    au[k, 3] = 1 if both and bpx == apx else 0
    au[k, 4] = bad


@_jit
def _pre_trade_row(bk, lv, b, r, index, row):
    """A PRE_TRADE_DTYPE row: the T record and its book's BBO at the last event boundary."""
    row["index"] = index
    row["ts_event"] = r["ts_event"]
    row["ts_recv"] = r["ts_recv"]
    row["instrument_id"] = r["instrument_id"]
    row["order_id"] = r["order_id"]
    row["price"] = r["price"]
    row["size"] = r["size"]
    row["side"] = r["side"]
    row["bid_px"], row["bid_sz"], row["bid_ct"] = _best(bk, lv, b, 0)
    row["ask_px"], row["ask_sz"], row["ask_ct"] = _best(bk, lv, b, 1)


# =================================================================================================
# the kernels
# =================================================================================================
@_jit
def _apply_kernel(recs, i, base, pre_trade, audit, st, it, bk, ot, lv, pd, pre, au):
    """Apply ``recs[i:]``; return (code, i): done, or the table to grow before resuming at i.

    The loop is BookSet.apply: T counts and (with ``pre_trade``) snapshots the BBO at the last
    event boundary; F_LAST flushes the book's pending event, then applies the record; any other
    record but N is buffered.
    """
    n = recs.shape[0]
    cur_iid = -1
    b = -1
    while i < n:
        r = recs[i]
        iid = np.int64(r["instrument_id"])
        if iid != cur_iid:
            b = _it_find(it, iid)
            if b < 0:
                nb = st[_S_BOOKS]
                if nb + 1 > bk.shape[0] or 2 * (nb + 1) > it.shape[0]:
                    return _GROW_BOOKS, i
                b = _register(st, it, bk, iid)
            cur_iid = iid
        act = np.int64(r["action"])
        last = (r["flags"] & F_LAST) != 0
        # Check room for everything this record may do before doing any of it.
        if last:
            code = _room(st, bk, ot, lv, b, bk[b, _PEND_N] + 1)
            if code != _DONE:
                return code, i
        elif act != _T and act != _N and st[_S_PD_FREE] < 0:
            return _GROW_PENDING, i

        bk[b, _RECORDS] += 1
        if last:
            bk[b, _EVENTS] += 1
        if act == _T:
            bk[b, _TRADES] += 1
            if pre_trade:
                _pre_trade_row(bk, lv, b, r, base + i, pre[st[_S_T_N]])
                st[_S_T_N] += 1
            if last and bk[b, _PEND_N] > 0:
                _flush_book(st, bk, ot, lv, pd, b)
        else:
            side = np.int64(r["side"])
            oid = np.int64(r["order_id"])  # same 64 bits; only ever compared for equality
            px = np.int64(r["price"])
            sz = np.int64(r["size"])
            if last:
                if bk[b, _PEND_N] > 0:
                    _flush_book(st, bk, ot, lv, pd, b)
                _apply_one(st, bk, ot, lv, b, act, side, oid, px, sz)
            elif act != _N:
                _pend(st, bk, pd, b, act, side, oid, px, sz)
        if last and audit:
            _audit(bk, lv, b, base + i, au, st[_S_AU_N])
            st[_S_AU_N] += 1
        i += 1
    return _DONE, n


@_jit
def _flush_kernel(st, bk, ot, lv, pd):
    """End of stream: apply every pending event (BookSet.flush); resumable like the above."""
    for b in range(st[_S_BOOKS]):
        pending = bk[b, _PEND_N]
        if pending == 0:
            continue
        code = _room(st, bk, ot, lv, b, pending)
        if code != _DONE:
            return code
        _flush_book(st, bk, ot, lv, pd, b)
    return _DONE


# =================================================================================================
# the Python face
# =================================================================================================
def _pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 1).bit_length()


class FastBookSet:
    """Books of all instruments in a stream; feed it batches with ``apply`` (as BookSet)."""

    def __init__(self, *, audit: bool = False) -> None:
        self.records = 0  # records seen; also the stream index of the next record
        self.audit = audit
        self._audit_rows: list[np.ndarray] = []
        self._st = np.zeros(7, np.int64)
        self._it = np.full((128, 2), -1, np.int64)
        self._bk = np.zeros((64, BK_COLS), np.int64)
        self._ot = np.zeros((1024, OT_COLS), np.int64)
        self._ot[:, _O_BOOK] = -1
        self._lv = np.zeros((4096, 3), np.int64)
        self._pd = np.zeros((0, 6), np.int64)
        self._st[_S_PD_FREE] = -1

    # ----- feeding ---------------------------------------------------------------------------
    def apply(self, batch: np.ndarray, *, pre_trade: bool = False) -> np.ndarray | None:
        """Apply a batch of MBO records; with ``pre_trade=True`` return one ``PRE_TRADE_DTYPE``
        row per ``T`` record, in order (see ``BookSet.apply``)."""
        n = len(batch)
        base = self.records
        self.records += n
        if n == 0:
            return np.zeros(0, PRE_TRADE_DTYPE) if pre_trade else None
        recs = _kernel_view(batch)
        n_t = int(np.count_nonzero(recs["action"] == _T)) if pre_trade else 0
        out = np.zeros(n_t, PRE_TRADE_DTYPE)
        n_au = int(np.count_nonzero(recs["flags"] & F_LAST)) if self.audit else 0
        au = np.empty((n_au, 5), np.int64)
        st = self._st
        st[_S_T_N] = 0
        st[_S_AU_N] = 0
        i = 0
        while True:
            code, i = _apply_kernel(
                recs,
                i,
                base,
                pre_trade,
                self.audit,
                st,
                self._it,
                self._bk,
                self._ot,
                self._lv,
                self._pd,
                out.view(_PRE_KERNEL_DTYPE),
                au,
            )
            if code == _DONE:
                break
            self._grow(code)
        if self.audit:
            self._audit_rows.append(au)
        return out if pre_trade else None

    def flush(self) -> None:
        """End of stream: apply events that never got their F_LAST."""
        while (code := _flush_kernel(self._st, self._bk, self._ot, self._lv, self._pd)) != _DONE:
            self._grow(code)

    # ----- growth ----------------------------------------------------------------------------
    def _grow(self, code: int) -> None:
        """Grow the table a kernel asked for; the kernel then resumes at the same record."""
        st = self._st
        nb = int(st[_S_BOOKS])
        if code == _GROW_BOOKS:
            bk = np.zeros((2 * self._bk.shape[0], BK_COLS), np.int64)
            bk[:nb] = self._bk[:nb]
            self._bk = bk
            it = np.full((_pow2(4 * (nb + 1)), 2), -1, np.int64)
            for row in range(nb):
                _it_insert(it, bk[row, _IID], row)
            self._it = it
        elif code == _GROW_ORDERS:
            live = int(self._bk[:nb, _ORDERS].sum())
            cap = max(1024, _pow2(4 * (live + int(st[_S_NEED]))))
            ot = np.zeros((cap, OT_COLS), np.int64)
            ot[:, _O_BOOK] = -1
            st[_S_ORDERS_USED] = _ot_rehash(self._ot, ot, self._bk)
            self._ot = ot
        elif code == _GROW_POOL:
            caps = int(
                self._bk[:nb, _LADDER + _L_CAP].sum() + self._bk[:nb, _LADDER + 3 + _L_CAP].sum()
            )
            size = max(self._lv.shape[0], _pow2(2 * (caps + int(st[_S_NEED]))))
            lv = np.zeros((size, 3), np.int64)
            st[_S_POOL_USED] = _pool_compact(self._bk, nb, self._lv, lv)
            self._lv = lv
        elif code == _GROW_PENDING:
            old = self._pd.shape[0]
            new = max(256, 2 * old)
            pd = np.zeros((new, 6), np.int64)
            pd[:old] = self._pd
            pd[old:, _P_NEXT] = np.arange(old + 1, new + 1)
            pd[new - 1, _P_NEXT] = st[_S_PD_FREE]
            st[_S_PD_FREE] = old
            self._pd = pd
        else:  # pragma: no cover
            raise AssertionError(f"unknown kernel code {code}")

    # ----- queries ---------------------------------------------------------------------------
    def _row(self, instrument_id: int) -> int:
        return int(_it_find(self._it, int(instrument_id)))

    def instruments(self) -> list[int]:
        """Instrument ids seen, in order of first appearance."""
        return self._bk[: self._st[_S_BOOKS], _IID].tolist()

    def bbo(self, instrument_id: int) -> BBO | None:
        """BBO at the instrument's last event boundary; None if the instrument was never seen."""
        b = self._row(instrument_id)
        if b < 0:
            return None
        bid = _best(self._bk, self._lv, b, 0)
        ask = _best(self._bk, self._lv, b, 1)
        return BBO(*(int(v) for v in bid), *(int(v) for v in ask))

    def _ladder(self, b: int, side: int) -> np.ndarray:
        """The side's levels as (price, size, count) rows, best first."""
        base = _LADDER + 3 * side
        start, n = int(self._bk[b, base + _L_START]), int(self._bk[b, base + _L_LEN])
        return self._lv[start : start + n][::-1]

    def depth(
        self, instrument_id: int, levels: int = 5
    ) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """Top ``levels`` per side, best first, as (price, size, order count)."""
        b = self._row(instrument_id)
        if b < 0 or levels <= 0:
            return [], []
        return (
            [tuple(r) for r in self._ladder(b, 0)[:levels].tolist()],
            [tuple(r) for r in self._ladder(b, 1)[:levels].tolist()],
        )

    def is_crossed(self, instrument_id: int) -> bool:
        bbo = self.bbo(instrument_id)
        return bbo is not None and bbo.is_crossed

    def orders(self, instrument_id: int) -> dict[int, tuple[bool, int, int]]:
        """Live orders as ``Book.orders`` holds them: order_id → (is_bid, price, size).
        Scans the whole table: for tests and inspection, not for hot paths."""
        b = self._row(instrument_id)
        if b < 0:
            return {}
        ot = self._ot
        live = (ot[:, _O_BOOK] == b) & ((ot[:, _O_META] >> 1) == self._bk[b, _EPOCH])
        rows = ot[live]
        return {
            oid: (bool(meta & 1), px, sz)
            for oid, px, sz, meta in zip(
                rows[:, _O_OID].view(np.uint64).tolist(),
                rows[:, _O_PX].tolist(),
                rows[:, _O_SZ].tolist(),
                rows[:, _O_META].tolist(),
                strict=True,
            )
        }

    def audit_log(self) -> np.ndarray:
        """With ``audit=True``: one AUDIT_DTYPE row per F_LAST record seen, in stream order."""
        rows = np.concatenate(self._audit_rows) if self._audit_rows else np.zeros((0, 5), np.int64)
        out = np.zeros(len(rows), AUDIT_DTYPE)
        for c, name in enumerate(AUDIT_DTYPE.names):
            out[name] = rows[:, c]
        return out

    def stats(self) -> dict:
        """Counters with the keys and values of ``BookSet.stats``."""
        nb = int(self._st[_S_BOOKS])
        bk = self._bk[:nb]
        per = {}
        for row in bk.tolist():
            anomalies = {
                kind: row[_ANOM + k] for k, kind in enumerate(ANOMALY_KINDS) if row[_ANOM + k]
            }
            per[row[_IID]] = {
                "records": row[_RECORDS],
                "events": row[_EVENTS],
                "trades": row[_TRADES],
                "fills": row[_FILLS],
                "hidden_fills": row[_HIDDEN_FILLS],
                "hidden_fill_size": row[_HIDDEN_FILL_SIZE],
                "clears": row[_CLEARS],
                "orders": row[_ORDERS],
                "bid_levels": row[_LADDER + _L_LEN],
                "ask_levels": row[_LADDER + 3 + _L_LEN],
                "pending": row[_PEND_N],
                "anomalies": anomalies,
            }
        sums = bk[:, _ANOM:].sum(axis=0).tolist() if nb else [0] * len(ANOMALY_KINDS)
        anomalies = {kind: v for kind, v in zip(ANOMALY_KINDS, sums, strict=True) if v}
        total = {
            k: sum(s[k] for s in per.values())
            for k in ("records", "events", "trades", "fills", "hidden_fills", "clears", "pending")
        }
        return {**total, "anomalies": anomalies, "instruments": per}


def warm_up() -> float:
    """Compile every kernel now (or load it from numba's cache) and return the seconds it took,
    so that the first real batch is not charged for it: a cold compile is seconds, a load from
    the cache well under one (most of it numba's own start-up)."""
    t0 = time.perf_counter()
    books = FastBookSet(audit=True)
    books.apply(np.zeros(1, MBO_DTYPE), pre_trade=True)
    for code in (_GROW_BOOKS, _GROW_ORDERS, _GROW_POOL, _GROW_PENDING):
        books._grow(code)
    books.flush()
    books.bbo(0)
    return time.perf_counter() - t0


def _kernel_view(batch: np.ndarray) -> np.ndarray:
    """The batch as the kernel's read-only record view, without copying when it can."""
    if batch.dtype != MBO_DTYPE:
        fixed = np.zeros(len(batch), MBO_DTYPE)
        for name in MBO_DTYPE.names:
            if name in (batch.dtype.names or ()):
                fixed[name] = batch[name]
        batch = fixed
    elif not batch.flags.c_contiguous:
        batch = np.ascontiguousarray(batch)
    view = batch.view(_KERNEL_DTYPE)
    view.flags.writeable = False  # one compiled signature, whether or not the input is writable
    return view
