"""The broker boundary: what a real-time trader asks of a broker, and what comes back.

Two brokers implement it: ``PaperBroker`` (fills against the quotes it is given, in process) and
``IBBroker`` (Interactive Brokers through ib_async). The ``SignalTrader`` above them decides
(sizing, risk, exits) and writes the same ``orders`` / ``fills`` ledger rows whichever broker is
chosen (settings ``execution.broker``), so shadow, paper and IB trading differ only there.

Prices are option premiums in index points (NQ options are quoted in points, $20 a point);
times are nanoseconds since the epoch. Order ids are ours (the broker's own ids are kept beside
them), so a restart reconciles the broker's open orders back onto our ledger by id.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal, Protocol

Side = Literal["B", "S"]
Kind = Literal["market", "limit"]
# working: accepted, not (fully) filled; the rest are final.
Status = Literal["working", "partial", "filled", "cancelled", "rejected"]
FINAL = ("filled", "cancelled", "rejected")


class OrderRefused(RuntimeError):
    """The order was not sent: emergency stop, live trading not enabled, unknown contract."""


class BrokerUnavailable(RuntimeError):
    """The broker cannot be reached or the connection was lost; nothing is retried blindly."""


@dataclass(frozen=True)
class OptionContract:
    """One NQ futures option, from our ``instruments`` table."""

    instrument_id: int
    raw_symbol: str
    root: str  # the option's root / trading class (e.g. QN1, Q3A)
    expiration: dt.date
    strike: float
    right: Literal["C", "P"]
    underlying_symbol: str = "NQ"
    multiplier: int = 20


@dataclass(frozen=True)
class OrderRequest:
    order_id: str
    signal_id: str
    algo: str
    contract: OptionContract
    side: Side
    qty: int
    kind: Kind
    purpose: str  # entry | stop | target | time_stop | session_end
    created_ts: int
    limit_price: float | None = None

    def __post_init__(self) -> None:
        if self.qty < 1:
            raise ValueError(f"order {self.order_id}: quantity must be >= 1, not {self.qty}")
        if (self.kind == "limit") != (self.limit_price is not None):
            raise ValueError(f"order {self.order_id}: a limit order needs a limit price, only")

    @property
    def reduces(self) -> bool:
        """Exits reduce exposure; the emergency stop lets them through (see SignalTrader)."""
        return self.purpose != "entry"


@dataclass
class OrderUpdate:
    order_id: str
    status: Status
    filled_qty: int = 0
    avg_price: float | None = None
    reason: str = ""
    broker_order_id: str = ""


@dataclass(frozen=True)
class Fill:
    fill_id: str  # the broker's execution id (stable across a reconnect's re-report)
    order_id: str
    ts: int
    side: Side
    price: float
    qty: int
    fee: float  # commission and exchange fees as the broker reports them, USD
    liquidity: str  # paper_quote | broker


@dataclass
class Events:
    updates: list[OrderUpdate] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)


@dataclass(frozen=True)
class Reconciliation:
    """What the broker holds at connect: open orders (ours by id) and positions by instrument."""

    open_orders: list[OrderUpdate]
    positions: dict[int, int]
    accounts: tuple[str, ...] = ()
    unknown_orders: tuple[str, ...] = ()  # open at the broker, not placed by IFD


class Broker(Protocol):
    name: str

    def connect(self) -> Reconciliation: ...

    def close(self) -> None: ...

    def place(self, req: OrderRequest) -> None:
        """Send once. Raises OrderRefused (not sent) or BrokerUnavailable (unknown outcome:
        reconcile before anything else is sent)."""
        ...

    def cancel(self, order_id: str) -> None: ...

    def drain(self) -> Events:
        """Order updates and fills since the last call, in the order they happened."""
        ...
