"""Interactive Brokers through ib_async (the maintained continuation of ib_insync).

Connects to TWS or IB Gateway (paper by default), reconciles IFD's open orders and positions at
every connect, qualifies NQ futures options from the ``instruments`` table, places market and
limit orders, cancels, and turns IB's order, execution and commission events into ``OrderUpdate``
and ``Fill`` events. A real-money account needs ``ib.live_trading_enabled`` *and* the caller's
confirmation; ``place`` sends once and never retries. Details: docs/operations.md §Interactive
Brokers.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

from ifd_core.broker.base import (
    BrokerUnavailable,
    Events,
    Fill,
    OptionContract,
    OrderRefused,
    OrderRequest,
    OrderUpdate,
    Reconciliation,
)
from ifd_core.broker.ib_connection import IBConnection
from ifd_core.settings import IBSettings
from ifd_core.units import NS

log = logging.getLogger(__name__)

# Order errors after which IB does not work the order: a rejection, not a cancel by us.
_REJECT_CODES = {103, 110, 200, 201, 203, 321, 382, 383, 387, 404, 461, 10147, 10148}
_WORKING = {"PendingSubmit", "ApiPending", "PreSubmitted", "Submitted", "PendingCancel"}


class LiveTradingRefused(OrderRefused):
    """A live account without ``ib.live_trading_enabled`` and an explicit confirmation."""


class IBBroker(IBConnection):
    """The ``Broker`` for Interactive Brokers: places, cancels and reconciles NQ option orders
    through TWS / IB Gateway and reports fills with their fees; it never retries an order."""

    name = "ib"
    unreachable = OrderRefused

    def __init__(self, settings: IBSettings, *, confirm_live: bool = False, ib=None) -> None:
        super().__init__(settings, ib)
        self.confirm_live = confirm_live
        self.account: str | None = None
        self._contracts: dict[int, object] = {}  # instrument_id -> qualified ib contract
        self._by_con_id: dict[int, int] = {}  # IB conId -> instrument_id
        self._trades: dict[str, object] = {}  # our order id -> ib Trade
        self._errors: dict[int, str] = {}  # IB order id -> last rejection text
        self._events = Events()
        self._reported: set[str] = set()

    @property
    def mode(self) -> str:
        """``ib`` for a real-money account (its fees are booked as costs), else ``ib_paper``."""
        live = self.account is not None and not self.account.startswith(
            tuple(self.s.paper_account_prefixes)
        )
        return "ib" if live else "ib_paper"

    # ------------------------------------------------------------------ connection
    def connect(self) -> Reconciliation:
        self._open(self.s.client_id)
        ib = self.ib
        accounts = tuple(ib.managedAccounts())
        account = self.s.account or (accounts[0] if accounts else None)
        if account is None or account not in accounts:
            self.close()
            raise OrderRefused(f"account {account!r} is not among the managed accounts {accounts}")
        if not account.startswith(tuple(self.s.paper_account_prefixes)):
            if not (self.s.live_trading_enabled and self.confirm_live):
                self.close()
                raise LiveTradingRefused(
                    f"{account} is a live account: set IFD_IB__LIVE_TRADING_ENABLED=true and "
                    "confirm (--confirm-live) to trade real money; refused"
                )
            log.warning("LIVE TRADING on account %s", account)
        self.account = account
        return self._reconcile(accounts)

    def _reconcile(self, accounts: Sequence[str]) -> Reconciliation:
        ib = self.ib
        ib.reqAllOpenOrders()
        open_orders, unknown = [], []
        for trade in ib.openTrades():
            ref = trade.order.orderRef
            if not ref:
                unknown.append(f"order {trade.order.orderId} ({trade.contract.localSymbol})")
                continue
            self._trades[ref] = trade
            self._by_con_id.setdefault(trade.contract.conId, -trade.contract.conId)
            open_orders.append(self._update_of(trade))
        positions: dict[int, int] = {}
        for p in ib.positions(self.account):
            iid = self._by_con_id.get(p.contract.conId)
            if iid is None or iid < 0:
                unknown.append(f"position {p.position:g} x {p.contract.localSymbol}")
                continue
            positions[iid] = int(p.position)
        return Reconciliation(open_orders, positions, tuple(accounts), tuple(unknown))

    # ------------------------------------------------------------------ contracts
    def qualify(self, c: OptionContract):
        """The IB contract of one of our options (cached); OrderRefused when IB has none."""
        if c.instrument_id in self._contracts:
            return self._contracts[c.instrument_id]
        from ib_async import FuturesOption

        want = FuturesOption(
            symbol=c.underlying_symbol,
            lastTradeDateOrContractMonth=c.expiration.strftime("%Y%m%d"),
            strike=float(c.strike),
            right=c.right,
            exchange="CME",
            multiplier=str(c.multiplier),
            currency="USD",
        )
        details = self.ib.reqContractDetails(want)
        if len(details) > 1:  # weekly and monthly classes can share a date: our root decides
            details = [d for d in details if d.contract.tradingClass == c.root] or details
        if len(details) != 1:
            what = "no contract" if not details else f"{len(details)} contracts"
            expiry = want.lastTradeDateOrContractMonth
            raise OrderRefused(
                f"IB has {what} for {c.raw_symbol} ({expiry} {c.strike:g} "
                f"{c.right}, FOP CME x{c.multiplier})"
            )
        contract = details[0].contract
        self._contracts[c.instrument_id] = contract
        self._by_con_id[contract.conId] = c.instrument_id
        return contract

    # ------------------------------------------------------------------ orders
    def place(self, req: OrderRequest) -> None:
        from ib_async import LimitOrder, MarketOrder

        if not self.connected:
            raise OrderRefused(f"{req.order_id}: not connected to IB; not sent")
        if req.order_id in self._trades:
            raise OrderRefused(f"{req.order_id}: already placed; not sent again")
        contract = self.qualify(req.contract)
        action = "BUY" if req.side == "B" else "SELL"
        if req.kind == "limit":
            order = LimitOrder(action, req.qty, req.limit_price)
        else:
            order = MarketOrder(action, req.qty)
        order.orderRef = req.order_id
        order.account = self.account
        order.tif = "DAY"
        try:
            trade = self.ib.placeOrder(contract, order)
        except (OSError, ConnectionError) as exc:
            raise BrokerUnavailable(f"{req.order_id}: lost while sending: {exc}") from None
        self._trades[req.order_id] = trade

    def cancel(self, order_id: str) -> None:
        trade = self._trades.get(order_id)
        if trade is not None and trade.orderStatus.status in _WORKING and self.connected:
            self.ib.cancelOrder(trade.order)

    def drain(self) -> Events:
        self.wait(0)  # let ib_async read what the socket holds
        out, self._events = self._events, Events()
        return out

    # ------------------------------------------------------------------ callbacks
    def _hook(self, ib) -> None:
        ib.orderStatusEvent += self._on_status
        ib.commissionReportEvent += self._on_commission
        ib.errorEvent += self._on_error

    def _on_error(self, req_id, code, text, contract=None) -> None:
        if code in _REJECT_CODES:
            self._errors[req_id] = f"IB {code}: {text}"

    def _on_status(self, trade) -> None:
        if trade.order.orderRef:
            self._events.updates.append(self._update_of(trade))

    def _on_commission(self, trade, fill, report) -> None:
        ref = trade.order.orderRef
        ex = fill.execution
        if not ref or ex.execId in self._reported:
            return
        self._reported.add(ex.execId)
        when = ex.time if isinstance(ex.time, dt.datetime) else dt.datetime.now(dt.UTC)
        self._events.fills.append(
            Fill(
                fill_id=ex.execId,
                order_id=ref,
                ts=int(when.timestamp() * NS),
                side="B" if ex.side == "BOT" else "S",
                price=float(ex.price),
                qty=int(ex.shares),
                fee=float(report.commission or 0.0),
                liquidity="broker",
            )
        )

    def _update_of(self, trade) -> OrderUpdate:
        st = trade.orderStatus
        filled = int(st.filled or 0)
        error = self._errors.get(trade.order.orderId, "")
        if st.status == "Filled":
            status = "filled"
        elif st.status in _WORKING:
            status = "partial" if filled else "working"
        elif error or st.status == "Inactive":
            status = "rejected"
        else:  # Cancelled, ApiCancelled
            status = "cancelled"
        return OrderUpdate(
            order_id=trade.order.orderRef,
            status=status,
            filled_qty=filled,
            avg_price=float(st.avgFillPrice) if filled else None,
            reason=error,
            broker_order_id=str(trade.order.orderId),
        )
