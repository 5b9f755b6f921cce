"""The paper broker: real-time paper trading against the quotes it is given.

Used for shadow and paper trading in real time (the backtester's fills come from the MBO book
replay of ``ifd_core.trading.paper``; this is the broker a live run talks to). Its fill rule is
the one a venue applies to a small order: a market order takes the touch (buy at the ask, sell at
the bid); a limit order fills at the touch when marketable, else rests until a quote makes it so.
No quote for the contract: a market order is rejected (no price to trade at), never guessed.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

from ifd_core.broker.base import (
    FINAL,
    Events,
    Fill,
    OrderRefused,
    OrderRequest,
    OrderUpdate,
    Reconciliation,
)


@dataclass
class _Working:
    req: OrderRequest
    update: OrderUpdate


class PaperBroker:
    name = "paper"
    mode = "paper"

    def __init__(self, fee_per_contract: float, clock=time.time_ns) -> None:
        self.fee_per_contract = fee_per_contract
        self.clock = clock
        self.quotes: dict[int, tuple[float, float]] = {}
        self.positions: dict[int, int] = {}
        self._orders: dict[str, _Working] = {}
        self._events = Events()
        self._exec_ids = itertools.count(1)
        self.connected = False

    def connect(self) -> Reconciliation:
        self.connected = True
        working = [w.update for w in self._orders.values() if w.update.status not in FINAL]
        return Reconciliation(working, dict(self.positions), ("PAPER",))

    def close(self) -> None:
        self.connected = False

    def set_quote(self, instrument_id: int, bid: float, ask: float, ts: int | None = None) -> None:
        """A new touch; resting limit orders that it makes marketable fill now."""
        self.quotes[instrument_id] = (bid, ask)
        for w in list(self._orders.values()):
            if w.req.contract.instrument_id == instrument_id and w.update.status == "working":
                self._try_fill(w, ts)

    def place(self, req: OrderRequest) -> None:
        if not self.connected:
            raise OrderRefused(f"{req.order_id}: the paper broker is not connected")
        if req.order_id in self._orders:
            raise OrderRefused(f"{req.order_id}: an order with this id was already placed")
        w = _Working(req, OrderUpdate(req.order_id, "working", broker_order_id=req.order_id))
        self._orders[req.order_id] = w
        if req.kind == "market" and req.contract.instrument_id not in self.quotes:
            self._final(w, "rejected", "no quote for the contract: nothing to trade at")
            return
        self._events.updates.append(_copy(w.update))
        self._try_fill(w, req.created_ts)

    def cancel(self, order_id: str) -> None:
        w = self._orders.get(order_id)
        if w is None or w.update.status in FINAL:
            return
        self._final(w, "cancelled", "cancelled by IFD")

    def drain(self) -> Events:
        out, self._events = self._events, Events()
        return out

    # ---------------------------------------------------------------- fills
    def _try_fill(self, w: _Working, ts: int | None) -> None:
        q = self.quotes.get(w.req.contract.instrument_id)
        if q is None:
            return
        bid, ask = q
        buy = w.req.side == "B"
        touch = ask if buy else bid
        if w.req.kind == "limit":
            limit = w.req.limit_price
            if (buy and limit < touch) or (not buy and limit > touch):
                return
        qty = w.req.qty - w.update.filled_qty
        fill = Fill(
            fill_id=f"paper-{next(self._exec_ids):06d}",
            order_id=w.req.order_id,
            ts=int(ts if ts is not None else self.clock()),
            side=w.req.side,
            price=float(touch),
            qty=qty,
            fee=self.fee_per_contract * qty,
            liquidity="paper_quote",
        )
        self._events.fills.append(fill)
        iid = w.req.contract.instrument_id
        self.positions[iid] = self.positions.get(iid, 0) + (qty if buy else -qty)
        w.update.filled_qty += qty
        w.update.avg_price = float(touch)
        self._final(w, "filled", "")

    def _final(self, w: _Working, status: str, reason: str) -> None:
        w.update.status = status
        w.update.reason = reason
        self._events.updates.append(_copy(w.update))


def _copy(u: OrderUpdate) -> OrderUpdate:
    return OrderUpdate(u.order_id, u.status, u.filled_qty, u.avg_price, u.reason, u.broker_order_id)
