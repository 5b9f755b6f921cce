"""L3 (market-by-order) books for many instruments, rebuilt from Databento MBO records.

Input: batches of MBO records as numpy structured arrays in the ``databento_dbn.MBOMsg`` layout
(``read_dbn(path).arrays["mbo"]``), in ``ts_recv`` order, instruments mixed. Changes apply per
instrument at ``F_LAST`` event boundaries, state carries across calls (any chunking gives the same
books) and bad input is counted as anomalies, never raised: docs/algorithms.md §3 (Books). This is
the reference implementation; ``order_book_fast`` is its compiled twin. Speed: one Python loop
over columns turned into lists (numpy scalar access is ~10x slower), dicts of levels and orders,
and the best price repaired from a lazily cleaned heap only when the best level empties.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import NamedTuple

import databento_dbn as dbn
import numpy as np

from ifd_core.units import UNDEF_PRICE

# Databento's record flags (the SDK's constants, as plain ints for numpy masks).
F_LAST = int(dbn.F_LAST)
F_SNAPSHOT = int(dbn.F_SNAPSHOT)

_A, _B, _C, _F, _M, _N, _R, _T = (ord(c) for c in "ABCFMNRT")
_BID, _ASK = _B, _A  # side codes: 'B' bid, 'A' ask

PRE_TRADE_DTYPE = np.dtype(
    [
        ("index", "<i8"),  # position of the T record in the whole stream given to this BookSet
        ("ts_event", "<u8"),
        ("ts_recv", "<u8"),
        ("instrument_id", "<u4"),
        ("order_id", "<u8"),
        ("price", "<i8"),
        ("size", "<u4"),
        ("side", "S1"),
        ("bid_px", "<i8"),
        ("bid_sz", "<u4"),
        ("bid_ct", "<u4"),
        ("ask_px", "<i8"),
        ("ask_sz", "<u4"),
        ("ask_ct", "<u4"),
    ]
)

EventHook = Callable[[int, int, "Book"], None]


class BBO(NamedTuple):
    """Best bid and offer; an empty side has price ``UNDEF_PRICE`` and size/count 0."""

    bid_px: int
    bid_sz: int
    bid_ct: int
    ask_px: int
    ask_sz: int
    ask_ct: int

    @property
    def is_crossed(self) -> bool:
        """Bid above ask (both sides present)."""
        return (
            self.bid_px != UNDEF_PRICE and self.ask_px != UNDEF_PRICE and self.bid_px > self.ask_px
        )

    @property
    def is_locked(self) -> bool:
        """Bid equal to ask: on a matching engine this should trade, so it is also suspicious."""
        return self.bid_px != UNDEF_PRICE and self.bid_px == self.ask_px


_EMPTY_BBO = BBO(UNDEF_PRICE, 0, 0, UNDEF_PRICE, 0, 0)


class Book:
    """The book of one instrument: orders, price levels per side and the cached best prices."""

    __slots__ = (
        "instrument_id",
        "orders",
        "bids",
        "asks",
        "_bid_heap",
        "_ask_heap",
        "best_bid",
        "best_ask",
        "pending",
        "records",
        "trades",
        "fills",
        "hidden_fills",
        "hidden_fill_size",
        "clears",
        "events",
        "anomalies",
    )

    def __init__(self, instrument_id: int) -> None:
        self.instrument_id = instrument_id
        self.orders: dict[int, tuple[bool, int, int]] = {}  # order_id -> (is_bid, price, size)
        self.bids: dict[int, list[int]] = {}  # price -> [size, count]
        self.asks: dict[int, list[int]] = {}
        self._bid_heap: list[int] = []  # negated prices; may hold stale prices (lazy deletion)
        self._ask_heap: list[int] = []
        self.best_bid: int | None = None
        self.best_ask: int | None = None
        self.pending: list[tuple[int, int, int, int, int]] = []  # (action, side, oid, px, size)
        self.records = 0
        self.trades = 0
        self.fills = 0
        self.hidden_fills = 0
        self.hidden_fill_size = 0
        self.clears = 0
        self.events = 0  # F_LAST records seen
        self.anomalies: dict[str, int] = {}

    # ----- queries -------------------------------------------------------------------------
    def bbo(self) -> BBO:
        bb, ba = self.best_bid, self.best_ask
        if bb is None:
            if ba is None:
                return _EMPTY_BBO
            a = self.asks[ba]
            return BBO(UNDEF_PRICE, 0, 0, ba, a[0], a[1])
        b = self.bids[bb]
        if ba is None:
            return BBO(bb, b[0], b[1], UNDEF_PRICE, 0, 0)
        a = self.asks[ba]
        return BBO(bb, b[0], b[1], ba, a[0], a[1])

    @property
    def is_crossed(self) -> bool:
        return (
            self.best_bid is not None
            and self.best_ask is not None
            and self.best_bid > self.best_ask
        )

    @property
    def is_locked(self) -> bool:
        return self.best_bid is not None and self.best_bid == self.best_ask

    def depth(
        self, levels: int = 5
    ) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """Top ``levels`` per side, best first, as (price, size, order count)."""
        bids = [(p, *self.bids[p]) for p in heapq.nlargest(levels, self.bids)]
        asks = [(p, *self.asks[p]) for p in heapq.nsmallest(levels, self.asks)]
        return bids, asks

    def stats(self) -> dict:
        return {
            "records": self.records,
            "events": self.events,
            "trades": self.trades,
            "fills": self.fills,
            "hidden_fills": self.hidden_fills,
            "hidden_fill_size": self.hidden_fill_size,
            "clears": self.clears,
            "orders": len(self.orders),
            "bid_levels": len(self.bids),
            "ask_levels": len(self.asks),
            "pending": len(self.pending),
            "anomalies": dict(self.anomalies),
        }

    # ----- mutation ------------------------------------------------------------------------
    def _anomaly(self, kind: str) -> None:
        self.anomalies[kind] = self.anomalies.get(kind, 0) + 1

    def flush(self) -> None:
        """Apply the buffered records of the current event, in arrival order."""
        pending = self.pending
        self.pending = []
        apply = self.apply_one
        for rec in pending:
            apply(*rec)

    def apply_one(self, act: int, side: int, oid: int, px: int, sz: int) -> None:
        """Apply one record to the book now (callers buffer until F_LAST)."""
        if act == _A:
            self._add(side, oid, px, sz)
        elif act == _C:
            self._cancel(oid, sz)
        elif act == _M:
            self._modify(oid, px, sz)
        elif act == _F:
            self.fills += 1
            if oid not in self.orders:
                self.hidden_fills += 1
                self.hidden_fill_size += sz
        elif act == _R:
            self.clear()
        elif act != _T and act != _N:
            self._anomaly("unknown_action")

    def clear(self) -> None:
        self.orders.clear()
        self.bids.clear()
        self.asks.clear()
        self._bid_heap.clear()
        self._ask_heap.clear()
        self.best_bid = self.best_ask = None
        self.clears += 1

    def _add(self, side: int, oid: int, px: int, sz: int) -> None:
        if side != _BID and side != _ASK:
            self._anomaly("add_no_side")
            return
        if px == UNDEF_PRICE or sz <= 0:
            self._anomaly("add_bad_price_or_size")
            return
        if oid in self.orders:
            # The exchange never reuses a live order id; keep the newest, drop the old one.
            self._anomaly("add_duplicate_id")
            is_bid, opx, osz = self.orders.pop(oid)
            self._level_remove(is_bid, opx, osz, 1)
        is_bid = side == _BID
        self.orders[oid] = (is_bid, px, sz)
        self._level_add(is_bid, px, sz)

    def _cancel(self, oid: int, sz: int) -> None:
        o = self.orders.get(oid)
        if o is None:
            self._anomaly("cancel_unknown_id")
            return
        is_bid, px, osz = o
        if sz >= osz:
            if sz > osz:
                self._anomaly("cancel_oversize")
            del self.orders[oid]
            self._level_remove(is_bid, px, osz, 1)
        else:
            self.orders[oid] = (is_bid, px, osz - sz)
            self._level_remove(is_bid, px, sz, 0)

    def _modify(self, oid: int, px: int, sz: int) -> None:
        o = self.orders.get(oid)
        if o is None:
            self._anomaly("modify_unknown_id")
            return
        is_bid, opx, osz = o
        if sz <= 0 or px == UNDEF_PRICE:
            self._anomaly("modify_bad_price_or_size")
            del self.orders[oid]
            self._level_remove(is_bid, opx, osz, 1)
            return
        self.orders[oid] = (is_bid, px, sz)
        if px == opx:
            levels = self.bids if is_bid else self.asks
            levels[px][0] += sz - osz
        else:
            self._level_remove(is_bid, opx, osz, 1)
            self._level_add(is_bid, px, sz)

    def _level_add(self, is_bid: bool, px: int, sz: int) -> None:
        if is_bid:
            lvl = self.bids.get(px)
            if lvl is None:
                self.bids[px] = [sz, 1]
                heap = self._bid_heap
                heapq.heappush(heap, -px)
                if len(heap) > 2 * len(self.bids) + 64:
                    self._bid_heap = [-p for p in self.bids]
                    heapq.heapify(self._bid_heap)
                if self.best_bid is None or px > self.best_bid:
                    self.best_bid = px
            else:
                lvl[0] += sz
                lvl[1] += 1
        else:
            lvl = self.asks.get(px)
            if lvl is None:
                self.asks[px] = [sz, 1]
                heap = self._ask_heap
                heapq.heappush(heap, px)
                if len(heap) > 2 * len(self.asks) + 64:
                    self._ask_heap = list(self.asks)
                    heapq.heapify(self._ask_heap)
                if self.best_ask is None or px < self.best_ask:
                    self.best_ask = px
            else:
                lvl[0] += sz
                lvl[1] += 1

    def _level_remove(self, is_bid: bool, px: int, sz: int, ct: int) -> None:
        levels = self.bids if is_bid else self.asks
        lvl = levels[px]  # exists: every order's size is in its level
        lvl[0] -= sz
        lvl[1] -= ct
        if lvl[1] > 0:
            return
        del levels[px]
        if is_bid:
            if px == self.best_bid:
                heap = self._bid_heap
                while heap and -heap[0] not in levels:
                    heapq.heappop(heap)
                self.best_bid = -heap[0] if heap else None
        elif px == self.best_ask:
            heap = self._ask_heap
            while heap and heap[0] not in levels:
                heapq.heappop(heap)
            self.best_ask = heap[0] if heap else None


class BookSet:
    """Books of all instruments in a stream; feed it batches with ``apply``."""

    def __init__(self) -> None:
        self.books: dict[int, Book] = {}
        self.records = 0  # records seen; also the stream index of the next record

    def book(self, instrument_id: int) -> Book | None:
        return self.books.get(instrument_id)

    def bbo(self, instrument_id: int) -> BBO | None:
        """BBO at the instrument's last event boundary; None if the instrument was never seen."""
        b = self.books.get(instrument_id)
        return None if b is None else b.bbo()

    def depth(
        self, instrument_id: int, levels: int = 5
    ) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        b = self.books.get(instrument_id)
        return ([], []) if b is None else b.depth(levels)

    def is_crossed(self, instrument_id: int) -> bool:
        b = self.books.get(instrument_id)
        return b is not None and b.is_crossed

    def stats(self) -> dict:
        per = {iid: b.stats() for iid, b in self.books.items()}
        anomalies: dict[str, int] = {}
        for s in per.values():
            for k, v in s["anomalies"].items():
                anomalies[k] = anomalies.get(k, 0) + v
        total = {
            k: sum(s[k] for s in per.values())
            for k in ("records", "events", "trades", "fills", "hidden_fills", "clears", "pending")
        }
        return {**total, "anomalies": anomalies, "instruments": per}

    def flush(self) -> None:
        """End of stream: apply events that never got their F_LAST."""
        for b in self.books.values():
            if b.pending:
                b.flush()

    def apply(
        self,
        batch: np.ndarray,
        *,
        pre_trade: bool = False,
        on_event: EventHook | None = None,
    ) -> np.ndarray | None:
        """Apply a batch of MBO records.

        With ``pre_trade=True`` return one ``PRE_TRADE_DTYPE`` row per ``T`` record of the batch,
        in order: the trade plus the BBO of its instrument just before it (the state at the
        instrument's last event boundary — what a participant could see). ``on_event(iid,
        index, book)`` is called after every ``F_LAST`` record once the event is applied
        (monitoring, tests); it costs nothing when not given.
        """
        n = len(batch)
        base = self.records
        self.records += n
        if n == 0:
            return np.zeros(0, PRE_TRADE_DTYPE) if pre_trade else None
        iid_arr = batch["instrument_id"]
        uniq, counts = np.unique(iid_arr, return_counts=True)
        books = self.books
        for iid, c in zip(uniq.tolist(), counts.tolist(), strict=True):
            b = books.get(iid)
            if b is None:
                b = books[iid] = Book(iid)
            b.records += c
        is_last = (batch["flags"] & F_LAST) != 0
        if is_last.any():
            uniq, counts = np.unique(iid_arr[is_last], return_counts=True)
            for iid, c in zip(uniq.tolist(), counts.tolist(), strict=True):
                books[iid].events += c

        acts = batch["action"].view(np.uint8).tolist()
        sides = batch["side"].view(np.uint8).tolist()
        last_flags = is_last.tolist()
        iids = iid_arr.tolist()
        oids = batch["order_id"].tolist()
        pxs = batch["price"].tolist()
        szs = batch["size"].tolist()

        t_idx: list[int] = []
        t_bbo: list[BBO] = []
        book = None
        cur = -1
        for i, (iid, act, last) in enumerate(zip(iids, acts, last_flags, strict=True)):
            if iid != cur:
                book = books[iid]
                cur = iid
            if act == _T:
                book.trades += 1
                if pre_trade:
                    t_idx.append(i)
                    t_bbo.append(book.bbo())
                if last:
                    if book.pending:
                        book.flush()
                    if on_event is not None:
                        on_event(iid, base + i, book)
                continue
            if last:
                if book.pending:
                    book.pending.append((act, sides[i], oids[i], pxs[i], szs[i]))
                    book.flush()
                elif act == _A:  # fast path: a one-record event, dispatched inline
                    book._add(sides[i], oids[i], pxs[i], szs[i])
                elif act == _C:
                    book._cancel(oids[i], szs[i])
                elif act == _M:
                    book._modify(oids[i], pxs[i], szs[i])
                else:
                    book.apply_one(act, sides[i], oids[i], pxs[i], szs[i])
                if on_event is not None:
                    on_event(iid, base + i, book)
            elif act != _N:
                book.pending.append((act, sides[i], oids[i], pxs[i], szs[i]))

        if not pre_trade:
            return None
        out = np.zeros(len(t_idx), PRE_TRADE_DTYPE)
        if t_idx:
            idx = np.asarray(t_idx, dtype=np.int64)
            tr = batch[idx]
            out["index"] = idx + base
            for f in ("ts_event", "ts_recv", "instrument_id", "order_id", "price", "size", "side"):
                out[f] = tr[f]
            q = np.asarray(t_bbo, dtype=np.int64).reshape(-1, 6)
            out["bid_px"], out["bid_sz"], out["bid_ct"] = q[:, 0], q[:, 1], q[:, 2]
            out["ask_px"], out["ask_sz"], out["ask_ct"] = q[:, 3], q[:, 4], q[:, 5]
        return out


def replay(
    records: np.ndarray, *, chunk: int | None = None, pre_trade: bool = False
) -> tuple[BookSet, np.ndarray | None]:
    """Convenience: run a whole array through a fresh BookSet, optionally in fixed-size chunks."""
    books = BookSet()
    outs = []
    step = chunk or max(len(records), 1)
    for s in range(0, len(records), step):
        r = books.apply(records[s : s + step], pre_trade=pre_trade)
        if r is not None:
            outs.append(r)
    if not pre_trade:
        return books, None
    return books, (np.concatenate(outs) if outs else np.zeros(0, PRE_TRADE_DTYPE))
