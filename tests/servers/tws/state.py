"""What the TWS test server knows, without sockets: contracts, quotes, orders, fills, positions.

The server (``server.py``) turns requests into calls here and the results into messages
(``protocol.py``); keeping the book apart lets a reader check the trading rules (fills at the
quote, IB's avgCost, realized PnL) without reading wire formats. Deterministic: no randomness;
ids, permIds and execIds follow placement order; times come from ``clock``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

PERM_ID_BASE = 100_000
EPS = 1e-9
MONTH_CODES = "FGHJKMNQUVXZ"


class TwsServerError(ValueError):
    """The server was configured or asked for something it cannot do."""


@dataclass(frozen=True)
class TwsContract:
    """A contract the server knows (what reqContractDetails returns, orders trade)."""

    con_id: int
    symbol: str
    sec_type: str
    exchange: str
    currency: str
    multiplier: str
    last_trade_date: str
    strike: float
    right: str
    local_symbol: str
    trading_class: str
    min_tick: float = 0.25
    long_name: str = ""
    under_con_id: int = 0
    under_symbol: str = ""
    under_sec_type: str = ""
    time_zone_id: str = "US/Central"

    @property
    def multiplier_value(self) -> float:
        return float(self.multiplier) if self.multiplier else 1.0


@dataclass
class Quote:
    bid: float | None
    ask: float | None
    bid_size: float | None = None  # None: unlimited liquidity at the bid
    ask_size: float | None = None
    last: float | None = None  # the last trade (tick type 4), streamed with its size
    last_size: float = 0.0


@dataclass
class OrderRecord:
    """An order as the server keeps it (``orders()`` returns copies)."""

    order_id: int
    client_id: int
    perm_id: int
    seq: int
    contract: TwsContract
    account: str
    action: str  # BUY | SELL
    quantity: float
    order_type: str  # MKT | LMT
    lmt_price: float | None
    tif: str
    order_ref: str
    status: str = "Submitted"
    filled: float = 0.0
    avg_fill_price: float = 0.0
    last_fill_price: float = 0.0
    executions: int = 0

    @property
    def remaining(self) -> float:
        return max(self.quantity - self.filled, 0.0)

    @property
    def is_working(self) -> bool:
        return self.status in ("PreSubmitted", "Submitted")


@dataclass(frozen=True)
class ExecutionRecord:
    exec_id: str
    order_id: int
    client_id: int
    perm_id: int
    contract: TwsContract
    account: str
    side: str  # BOT | SLD
    shares: float
    price: float
    cum_qty: float
    avg_price: float
    order_ref: str
    time: float  # epoch seconds (from the server's clock)
    commission: float
    realized_pnl: float | None  # None for an execution that opened or added to a position


@dataclass
class PositionRecord:
    account: str
    contract: TwsContract
    position: float
    avg_cost: float  # IB's: per contract, multiplier and commissions included
    realized_pnl: float = 0.0


@dataclass(frozen=True)
class Fill:
    """One execution with the order and position as they stood right after it (copies): the
    server sends execDetails, orderStatus and the position update from these, in this order."""

    execution: ExecutionRecord
    order: OrderRecord
    position: PositionRecord


@dataclass
class Reject:
    code: int
    reason: str


def normalize_right(s: str) -> str:
    """C or P from IB's spellings (C, CALL, P, PUT); "" otherwise."""
    return {"C": "C", "CALL": "C", "P": "P", "PUT": "P"}.get((s or "").upper(), "")


def month_code(last_trade_date: str) -> str:
    return MONTH_CODES[int(last_trade_date[4:6]) - 1] + last_trade_date[3]


def split_fill(qty: float, parts: int) -> list[float]:
    """``qty`` in ``parts`` executions, the larger ones first (whole contracts)."""
    if parts <= 1 or qty < 2 or not float(qty).is_integer():
        return [qty]
    n = int(qty)
    parts = min(parts, n)
    base, extra = divmod(n, parts)
    return [float(base + (1 if i < extra else 0)) for i in range(parts)]


def order_problem(
    action: str, quantity: float | None, order_type: str, lmt_price: float | None
) -> str:
    """Why an order cannot be accepted ("" when it can)."""
    if action not in ("BUY", "SELL"):
        return f"action {action!r} is not BUY or SELL"
    if quantity is None or quantity <= 0:
        return "the order size must be positive"
    if order_type not in ("MKT", "LMT"):
        return f"order type {order_type!r} is not supported (MKT, LMT)"
    if order_type == "LMT" and (lmt_price is None or lmt_price <= 0):
        return "a limit order needs a positive limit price"
    return ""


def apply_fill(pos: PositionRecord, signed: float, price: float, commission: float) -> float | None:
    """Update the position with one execution; the realized PnL when it closed some, else None.

    avgCost follows IB: per contract, multiplier included, commissions in (added to the cost of a
    long, taken from the proceeds of a short)."""
    mult = pos.contract.multiplier_value
    qty = abs(signed)
    unit_fee = commission / qty
    q = pos.position
    if abs(q) < EPS or (q > 0) == (signed > 0):
        cost = price * mult + (unit_fee if signed > 0 else -unit_fee)
        new = q + signed
        pos.avg_cost = round((abs(q) * pos.avg_cost + qty * cost) / abs(new), 10)
        pos.position = new
        return None
    closed = min(qty, abs(q))
    if q > 0:
        realized = closed * (price * mult - pos.avg_cost) - closed * unit_fee
    else:
        realized = closed * (pos.avg_cost - price * mult) - closed * unit_fee
    opened = qty - closed
    pos.position = q + signed
    if opened > EPS:
        pos.avg_cost = price * mult + (unit_fee if signed > 0 else -unit_fee)
    elif abs(pos.position) < EPS:
        pos.position = 0.0
        pos.avg_cost = 0.0
    realized = round(realized, 10)
    pos.realized_pnl = round(pos.realized_pnl + realized, 10)
    return realized


class TwsState:
    """The book: everything the server keeps across client connections (no I/O, one thread).

    ``account_values`` are kept as given (a float, or the exact text a test set); the wire
    encoding formats them.
    """

    def __init__(
        self,
        accounts: Sequence[str],
        commission_per_contract: float,
        account_values: dict[str, float],
        clock: Callable[[], float],
    ) -> None:
        self.accounts = tuple(accounts)
        self.commission_per_contract = float(commission_per_contract)
        self.clock = clock
        self.account_values: dict[tuple[str, str, str], float | str] = {
            (acct, tag, "USD"): float(v)
            for acct in self.accounts
            for tag, v in account_values.items()
        }
        self.contracts: dict[int, TwsContract] = {}
        self.quotes: dict[int, Quote] = {}
        self.orders: dict[tuple[int, int], OrderRecord] = {}  # (client id, order id)
        self.executions: list[ExecutionRecord] = []
        self.positions: dict[tuple[str, int], PositionRecord] = {}
        self.rejects: list[Reject] = []
        self.fill_parts = 1
        self.seq = 0
        self.next_order_id = 1

    # ------------------------------------------------------------------ contracts and quotes
    def add_contract(self, contract: TwsContract) -> TwsContract:
        if contract.con_id in self.contracts:
            raise TwsServerError(f"conId {contract.con_id} is already served")
        self.contracts[contract.con_id] = contract
        return contract

    def contract(self, con_id: int) -> TwsContract:
        try:
            return self.contracts[con_id]
        except KeyError:
            raise TwsServerError(f"conId {con_id} is not served (add_contract first)") from None

    def find_contracts(self, matches: Callable[[TwsContract], bool]) -> list[TwsContract]:
        """Served contracts ``matches`` accepts, by conId."""
        return [c for c in sorted(self.contracts.values(), key=lambda c: c.con_id) if matches(c)]

    def set_quote(self, con_id: int, quote: Quote) -> None:
        if con_id not in self.contracts:
            raise TwsServerError(f"conId {con_id} is not served")
        if quote.bid is not None and quote.ask is not None and quote.bid > quote.ask + EPS:
            raise TwsServerError(f"conId {con_id}: crossed quote {quote.bid} > {quote.ask}")
        self.quotes[con_id] = quote

    def mark(self, pos: PositionRecord) -> float:
        """The price a position is valued at: the quote's mid, else its average cost."""
        mult = pos.contract.multiplier_value
        q = self.quotes.get(pos.contract.con_id)
        if q is not None and q.bid is not None and q.ask is not None:
            return (q.bid + q.ask) / 2
        return pos.avg_cost / mult if mult else 0.0

    # ------------------------------------------------------------------ accounts
    def account(self, account: str | None) -> str:
        acct = account or self.accounts[0]
        if acct not in self.accounts:
            raise TwsServerError(f"account {acct} is not one of {self.accounts}")
        return acct

    def account_value(self, account: str, tag: str, currency: str = "USD") -> float | None:
        value = self.account_values.get((account, tag, currency))
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            return None

    # ------------------------------------------------------------------ orders
    def new_order(
        self,
        order_id: int,
        client_id: int,
        contract: TwsContract,
        account: str,
        action: str,
        quantity: float,
        order_type: str,
        lmt_price: float | None,
        tif: str,
        order_ref: str,
        status: str = "Submitted",
    ) -> OrderRecord:
        self.seq += 1
        order = OrderRecord(
            order_id=order_id,
            client_id=client_id,
            perm_id=PERM_ID_BASE + self.seq,
            seq=self.seq,
            contract=contract,
            account=account,
            action=action,
            quantity=quantity,
            order_type=order_type,
            lmt_price=lmt_price if order_type == "LMT" else None,
            tif=tif,
            order_ref=order_ref,
            status=status,
        )
        self.orders[(client_id, order_id)] = order
        self.next_order_id = max(self.next_order_id, order_id + 1)
        return order

    def orders_by_seq(self) -> list[OrderRecord]:
        return sorted(self.orders.values(), key=lambda o: o.seq)

    def working_orders(self, client_id: int | None) -> list[OrderRecord]:
        """Working orders in placement order, of one client (None: of every client)."""
        return [
            o
            for o in self.orders_by_seq()
            if o.is_working and (client_id is None or o.client_id == client_id)
        ]

    # ------------------------------------------------------------------ matching and fills
    def match(self, order: OrderRecord) -> list[Fill]:
        """Fill what the current quote allows (nothing without a quote)."""
        q = self.quotes.get(order.contract.con_id)
        if q is None or not order.is_working:
            return []
        buy = order.action == "BUY"
        price = q.ask if buy else q.bid
        if price is None or price <= 0:
            return []
        if order.order_type == "LMT":
            assert order.lmt_price is not None
            marketable = order.lmt_price >= price - EPS if buy else order.lmt_price <= price + EPS
            if not marketable:
                return []
        available = q.ask_size if buy else q.bid_size
        qty = order.remaining if available is None else min(order.remaining, available)
        if qty <= EPS:
            return []
        fills = [self._execute(order, part, price) for part in split_fill(qty, self.fill_parts)]
        if available is not None:
            if buy:
                q.ask_size = max((q.ask_size or 0.0) - qty, 0.0)
            else:
                q.bid_size = max((q.bid_size or 0.0) - qty, 0.0)
        return fills

    def _execute(self, order: OrderRecord, qty: float, price: float) -> Fill:
        order.executions += 1
        exec_id = f"{order.seq:04d}.{order.executions:02d}"
        total = order.filled + qty
        order.avg_fill_price = (order.avg_fill_price * order.filled + price * qty) / total
        order.filled = total
        order.last_fill_price = price
        if order.remaining <= EPS:
            order.status = "Filled"
        commission = round(self.commission_per_contract * qty, 10)
        signed = qty if order.action == "BUY" else -qty
        pos = self.positions.get((order.account, order.contract.con_id))
        if pos is None:
            pos = PositionRecord(order.account, order.contract, 0.0, 0.0)
            self.positions[(order.account, order.contract.con_id)] = pos
        realized = apply_fill(pos, signed, price, commission)
        ex = ExecutionRecord(
            exec_id=exec_id,
            order_id=order.order_id,
            client_id=order.client_id,
            perm_id=order.perm_id,
            contract=order.contract,
            account=order.account,
            side="BOT" if order.action == "BUY" else "SLD",
            shares=qty,
            price=price,
            cum_qty=order.filled,
            avg_price=order.avg_fill_price,
            order_ref=order.order_ref,
            time=self.clock(),
            commission=commission,
            realized_pnl=realized,
        )
        self.executions.append(ex)
        return Fill(ex, dataclasses.replace(order), dataclasses.replace(pos))


def contract_from(
    con_id: int,
    symbol: str,
    sec_type: str,
    exchange: str,
    currency: str,
    multiplier: str,
    last_trade_date: str,
    strike: float,
    right: str,
    local_symbol: str | None,
    trading_class: str | None,
    *,
    min_tick: float,
    long_name: str | None,
    under_con_id: int,
) -> TwsContract:
    """A contract as ``TwsTestServer.add_contract`` describes it, with IB's defaults filled in."""
    sec_type = sec_type.upper()
    if sec_type in ("FOP", "OPT"):
        right = normalize_right(right)
        if not right:
            raise TwsServerError(f"{con_id}: an option needs right C or P")
        strike = float(strike)
    else:
        right, strike = "", 0.0
    if not re.fullmatch(r"\d{8}|\d{6}", last_trade_date or ""):
        raise TwsServerError(f"{con_id}: last_trade_date must be YYYYMMDD or YYYYMM")
    if local_symbol is None:
        local_symbol = symbol + month_code(last_trade_date)
        if right:
            local_symbol += f" {right}{strike:g}"
    return TwsContract(
        con_id=int(con_id),
        symbol=symbol,
        sec_type=sec_type,
        exchange=exchange,
        currency=currency,
        multiplier=str(multiplier or ""),
        last_trade_date=last_trade_date,
        strike=strike,
        right=right,
        local_symbol=local_symbol,
        trading_class=trading_class or symbol,
        min_tick=min_tick,
        long_name=long_name or f"{symbol} {sec_type} {last_trade_date}",
        under_con_id=under_con_id,
        under_symbol=symbol if under_con_id else "",
        under_sec_type={"FOP": "FUT", "OPT": "STK", "FUT": "IND"}.get(sec_type, ""),
    )
