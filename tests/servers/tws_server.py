"""A TWS-protocol test server on loopback: enough of the TWS API for the unmodified ib_async client.

Tests and developers need a TWS / IB Gateway that places, fills, cancels and rejects orders
deterministically, and can drop us, without an IB account or network. ``TwsTestServer`` speaks
the TWS socket protocol as ib_async 2.1.0 implements it (``ib_async/client.py`` encodes the
requests, ``ib_async/decoder.py`` decodes the replies; ECOSYSTEM.md 2e has the exchange):

    C->S  b"API\\0" + len + b"v157..178"           (the client's protocol version range)
    S->C  len + b"<version>\\0<time>\\0"            (the negotiated version)
    then  len + NUL-separated fields, msgId first, both ways (4-byte big-endian length)
    C->S  startApi (71)  ->  nextValidId (9) + managedAccounts (15); the client is ready
    C->S  reqPositions, reqOpenOrders, reqCompletedOrders, reqAccountUpdates(+Multi), reqExecutions
          (ib_async sends these at every connect and waits for each *End reply)

**Version.** The server speaks every version from 157 to 178 (ib_async's MinClientVersion ..
MaxClientVersion): it answers ``min(server_version, client max)`` and encodes each reply the way
ib_async decodes it at that version (contractDetails drops its version field and
mdSizeMultiplier at 164 and gains minSize/sizeIncrement; openOrder loses faProfile at 177 and
gains duration/postToAts/autoCancelParent/peg fields at 159/160/162/170; errors gain
advancedOrderRejectJson at 166; executions gain pendingPriceRevision at 178). The default is
**157**: the smallest messages ib_async accepts (the shortest openOrder, no extra error or
execution fields; the client's placeOrder is shortest too), and a version ib_insync (<= 176)
accepts as well. Tests also run ib_async against 178 and the boundaries in between.

**State** (kept across client connections; ``drop_connections()`` closes the sockets only):

* contracts (``add_contract`` / ``add_future``): reqContractDetails matches on the fields the
  request gives (symbol, secType, lastTradeDateOrContractMonth as a prefix, strike, right,
  exchange, multiplier, currency, localSymbol, tradingClass; a conId matches that contract);
  several matches are all returned (ib_async then calls the request ambiguous), none gives
  error 200 "No security definition has been found for the request".
* quotes (``set_quote``): the only source of fills. MKT buys fill at the ask, sells at the bid;
  a LMT buy fills at the ask when limit >= ask, else it rests (Submitted) until a later quote
  makes it marketable (sells mirror at the bid). Quote sizes, when given, are liquidity the fills
  consume (the rest of an order waits for the next quote); ``fill_in_parts(n)`` splits each fill
  into n executions. Resting orders are matched in the order they were placed.
* orders: placeOrder -> openOrder + orderStatus Submitted, then fills: execDetails (execId
  ``<order seq:04d>.<fill no:02d>``, e.g. "0001.01"), orderStatus (Filled, or Submitted while
  partially filled) and commissionReport (``commission_per_contract`` x shares, USD; realized PnL
  on closing executions). cancelOrder -> orderStatus Cancelled + error 202. ``reject_next`` makes
  the next new order answer error <code> + openOrder/orderStatus Inactive (the sequence TWS sends
  for a rejected order: ib_async marks the trade Cancelled on the error, with the code in its log,
  then Inactive). An unknown contract is answered with error 200 only. A placeOrder with the id
  of a working order of the same client modifies it (quantity, type, limit, tif, orderRef).
  Order messages go to the connections of the client id that placed the order.
* positions per (account, conId), from fills or ``preload_position``; avgCost is IB's: per
  contract, multiplier and commission included. Connections that sent reqPositions get a
  position message on every change; reqAccountUpdates subscribers get updatePortfolio.
* account values (``account_values``, ``set_account_value``): static, fills do not move them.
* ``received``: every request as ``(msgId, fields after the msgId)``; ``unhandled``: those the
  server does not know (logged, recorded, the connection stays up).

Also answered: reqCurrentTime, reqIds, reqManagedAccts, reqAllOpenOrders (every client's working
orders; reqOpenOrders gives the requesting client's), reqGlobalCancel, reqAccountSummary,
reqMktData (bid/ask and last-trade ticks from ``set_quote``, streaming or snapshot), whatIf
orders (commission and a notional margin, nothing placed). A second connection with a client id
already connected gets error 326 and is closed, as TWS does.

Not modelled: DAY orders do not expire, there are no trading hours, order types other than
MKT/LMT and TIFs other than DAY/GTC/IOC are rejected, combos (BAG) are unknown contracts,
completed orders are not replayed (completedOrdersEnd only), account values are static.

Deterministic: no randomness anywhere; ids, permIds and execIds follow placement order; times
come from ``clock`` (``time.time`` unless given).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import dataclasses
import ipaddress
import logging
import math
import re
import signal
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

log = logging.getLogger(__name__)

MIN_SERVER_VERSION = 157  # ib_async 2.1.0 Client.MinClientVersion
MAX_SERVER_VERSION = 178  # ib_async 2.1.0 Client.MaxClientVersion
DEFAULT_SERVER_VERSION = MIN_SERVER_VERSION
UNSET_DOUBLE = "1.7976931348623157E308"  # IB's "no value" for doubles
UNSET_DOUBLE_F = float(UNSET_DOUBLE)
MAX_MESSAGE = 1 << 24
UNLIMITED_DISPLAY_SIZE = 100  # the size ticks show for a quote without a size
PERM_ID_BASE = 100_000
EPS = 1e-9
MONTH_CODES = "FGHJKMNQUVXZ"

NO_SECURITY = "No security definition has been found for the request"
ORDER_CANCELED = "Order Canceled - reason:"
DEFAULT_REJECT_REASON = "Order rejected - reason:Rejected by the TWS test server"
CLIENT_ID_IN_USE = (
    "Unable to connect as the client id is already in use. Retry with a unique client id."
)


class Incoming(IntEnum):
    """Request message ids (client -> server) this server knows."""

    REQ_MKT_DATA = 1
    CANCEL_MKT_DATA = 2
    PLACE_ORDER = 3
    CANCEL_ORDER = 4
    REQ_OPEN_ORDERS = 5
    REQ_ACCOUNT_UPDATES = 6
    REQ_EXECUTIONS = 7
    REQ_IDS = 8
    REQ_CONTRACT_DETAILS = 9
    SET_SERVER_LOG_LEVEL = 14
    REQ_AUTO_OPEN_ORDERS = 15
    REQ_ALL_OPEN_ORDERS = 16
    REQ_MANAGED_ACCTS = 17
    REQ_CURRENT_TIME = 49
    REQ_GLOBAL_CANCEL = 58
    REQ_MARKET_DATA_TYPE = 59
    REQ_POSITIONS = 61
    REQ_ACCOUNT_SUMMARY = 62
    CANCEL_ACCOUNT_SUMMARY = 63
    CANCEL_POSITIONS = 64
    START_API = 71
    REQ_ACCOUNT_UPDATES_MULTI = 76
    CANCEL_ACCOUNT_UPDATES_MULTI = 77
    REQ_COMPLETED_ORDERS = 99


class Outgoing(IntEnum):
    """Reply message ids (server -> client) this server sends."""

    TICK_PRICE = 1
    ORDER_STATUS = 3
    ERR_MSG = 4
    OPEN_ORDER = 5
    ACCT_VALUE = 6
    PORTFOLIO_VALUE = 7
    ACCT_UPDATE_TIME = 8
    NEXT_VALID_ID = 9
    CONTRACT_DATA = 10
    EXECUTION_DATA = 11
    MANAGED_ACCTS = 15
    CURRENT_TIME = 49
    CONTRACT_DATA_END = 52
    OPEN_ORDER_END = 53
    ACCT_DOWNLOAD_END = 54
    EXECUTION_DATA_END = 55
    TICK_SNAPSHOT_END = 57
    MARKET_DATA_TYPE = 58
    COMMISSION_REPORT = 59
    POSITION_DATA = 61
    POSITION_END = 62
    ACCOUNT_SUMMARY = 63
    ACCOUNT_SUMMARY_END = 64
    ACCOUNT_UPDATE_MULTI = 73
    ACCOUNT_UPDATE_MULTI_END = 74
    COMPLETED_ORDERS_END = 102


class TwsServerError(ValueError):
    """The server was configured or asked for something it cannot do."""


# ---------------------------------------------------------------------------------------- state
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

    def wire(self) -> list[Any]:
        """conId .. tradingClass as position, execDetails and openOrder carry them."""
        return [
            self.con_id,
            self.symbol,
            self.sec_type,
            self.last_trade_date,
            self.strike,
            self.right,
            self.multiplier,
            self.exchange,
            self.currency,
            self.local_symbol,
            self.trading_class,
        ]


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


@dataclass
class ServerStats:
    connections: int = 0  # handshakes accepted
    refused: int = 0  # bad handshakes, unsupported versions, client id in use
    disconnects: int = 0  # connections the client closed
    drops: int = 0  # connections closed by drop_connections()
    messages_in: int = 0
    messages_out: int = 0


@dataclass(eq=False)
class _Conn:
    writer: asyncio.StreamWriter
    version: int
    peer: str
    client_id: int | None = None
    closed: bool = False
    positions_sub: bool = False
    account_sub: str | None = None
    mkt: dict[int, int] = field(default_factory=dict)  # reqId -> conId (streaming)


@dataclass
class _Reject:
    code: int
    reason: str


# ---------------------------------------------------------------------------------- helpers
def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, IntEnum):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        v = round(value, 10)
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return repr(v)
    return str(value)


def _frame(*fields: Any) -> bytes:
    payload = "".join(_fmt(f) + "\0" for f in fields).encode()
    return struct.pack(">I", len(payload)) + payload


def _float(s: str, default: float | None = None) -> float | None:
    if s is None or s == "":
        return default
    try:
        v = float(s)
    except ValueError:
        return default
    return default if v >= UNSET_DOUBLE_F else v


def _int(s: str, default: int = 0) -> int:
    try:
        return int(s) if s not in (None, "") else default
    except ValueError:
        return default


def _right(s: str) -> str:
    return {"C": "C", "CALL": "C", "P": "P", "PUT": "P"}.get((s or "").upper(), "")


def _month_code(last_trade_date: str) -> str:
    return MONTH_CODES[int(last_trade_date[4:6]) - 1] + last_trade_date[3]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split(qty: float, parts: int) -> list[float]:
    """``qty`` in ``parts`` executions, the larger ones first (whole contracts)."""
    if parts <= 1 or qty < 2 or not float(qty).is_integer():
        return [qty]
    n = int(qty)
    parts = min(parts, n)
    base, extra = divmod(n, parts)
    return [float(base + (1 if i < extra else 0)) for i in range(parts)]


@dataclass
class _ContractQuery:
    con_id: int
    symbol: str
    sec_type: str
    last_trade_date: str
    strike: str
    right: str
    multiplier: str
    exchange: str
    primary_exchange: str
    currency: str
    local_symbol: str
    trading_class: str

    @classmethod
    def from_fields(cls, f: Sequence[str]) -> _ContractQuery:
        return cls(_int(f[0]), *f[1:12])

    def matches(self, c: TwsContract) -> bool:
        if self.con_id > 0:
            return c.con_id == self.con_id
        strike = _float(self.strike, 0.0) or 0.0
        mult = _float(self.multiplier)
        checks = (
            not self.symbol or self.symbol.upper() == c.symbol.upper(),
            not self.sec_type or self.sec_type.upper() == c.sec_type,
            not self.last_trade_date or c.last_trade_date.startswith(self.last_trade_date),
            not strike or abs(strike - c.strike) < EPS,
            not _right(self.right) or _right(self.right) == c.right,
            mult is None or abs(mult - c.multiplier_value) < EPS,
            not self.exchange or self.exchange.upper() == c.exchange.upper(),
            not self.currency or self.currency.upper() == c.currency.upper(),
            not self.local_symbol or self.local_symbol == c.local_symbol,
            not self.trading_class or self.trading_class == c.trading_class,
        )
        return all(checks)

    def as_contract(self) -> TwsContract:
        """What the request names, for messages about an order whose contract is unknown."""
        return TwsContract(
            con_id=self.con_id,
            symbol=self.symbol,
            sec_type=self.sec_type,
            exchange=self.exchange,
            currency=self.currency,
            multiplier=self.multiplier,
            last_trade_date=self.last_trade_date,
            strike=_float(self.strike, 0.0) or 0.0,
            right=_right(self.right),
            local_symbol=self.local_symbol,
            trading_class=self.trading_class,
        )


@dataclass
class _PlaceOrder:
    order_id: int
    contract: _ContractQuery
    action: str
    quantity: float | None
    order_type: str
    lmt_price: float | None
    tif: str
    account: str
    order_ref: str
    what_if: bool


class _Cursor:
    def __init__(self, fields: Sequence[str]) -> None:
        self.f = fields
        self.i = 0

    def next(self) -> str:
        v = self.f[self.i]
        self.i += 1
        return v

    def skip(self, n: int) -> None:
        self.i += n
        if self.i > len(self.f):
            raise IndexError("placeOrder message too short")


def _parse_place_order(f: Sequence[str], version: int) -> _PlaceOrder:
    """The fields this server uses, from ib_async's ``Client.placeOrder`` encoding."""
    order = _PlaceOrder(
        order_id=_int(f[0]),
        contract=_ContractQuery.from_fields(f[1:13]),
        action=f[15].upper(),
        quantity=_float(f[16]),
        order_type=f[17].upper(),
        lmt_price=_float(f[18]),
        tif=(f[20] or "DAY").upper(),
        account=f[22],
        order_ref=f[25],
        what_if=False,
    )
    # whatIf sits behind variable-length groups; walk them as the client wrote them.
    try:
        c = _Cursor(f)
        c.skip(34)  # orderId, contract (12), secIdType, secId, action .. hidden
        if order.contract.sec_type.upper() == "BAG":
            c.skip(8 * _int(c.next()))
            c.skip(_int(c.next()))
            c.skip(2 * _int(c.next()))
        c.skip(7)  # "", discretionaryAmt, goodAfterTime, goodTillDate, faGroup/Method/Percentage
        if version < 177:
            c.skip(1)  # faProfile
        c.skip(22)  # modelCode .. volatilityType
        if c.next():  # deltaNeutralOrderType
            c.skip(1 + 8)
        else:
            c.skip(1)
        c.skip(6)  # continuousUpdate .. scaleSubsLevelSize
        increment = _float(c.next(), 0.0) or 0.0
        if 0 < increment < UNSET_DOUBLE_F:
            c.skip(7)
        c.skip(3)  # scaleTable, activeStartTime, activeStopTime
        if c.next():  # hedgeType
            c.skip(1)
        c.skip(4)  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld
        if c.next() == "1":  # deltaNeutralContract
            c.skip(3)
        if c.next():  # algoStrategy
            c.skip(2 * _int(c.next()))
        c.skip(1)  # algoId
        order.what_if = c.next() == "1"
    except (IndexError, ValueError):
        log.warning("placeOrder %s: could not read whatIf; taken as a real order", order.order_id)
    return order


# ----------------------------------------------------------------------------------- server
class TwsTestServer:
    """The server; ``start()`` (or ``with``) serves from a background thread,
    ``serve_forever()`` in the foreground (``python -m tests.servers.tws_server``).

    Every public method may be called from any thread: state changes run on the server's event
    loop and the call returns once the resulting messages are written to the sockets.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        server_version: int = DEFAULT_SERVER_VERSION,
        accounts: Sequence[str] = ("DU1234567",),
        commission_per_contract: float = 2.25,
        account_values: Mapping[str, float] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not _is_loopback(host):
            raise TwsServerError(f"{host}: the TWS test server listens on loopback only")
        if not MIN_SERVER_VERSION <= server_version <= MAX_SERVER_VERSION:
            raise TwsServerError(
                f"server_version {server_version}: supported are "
                f"{MIN_SERVER_VERSION}..{MAX_SERVER_VERSION}"
            )
        accounts = tuple(a for a in accounts if a)
        if not accounts:
            raise TwsServerError("the server needs at least one account")
        self.host = host
        self.port = port
        self.server_version = server_version
        self.accounts = accounts
        self.commission_per_contract = float(commission_per_contract)
        self.clock = clock or time.time
        self.stats = ServerStats()
        self.received: list[tuple[int, tuple[str, ...]]] = []
        self.unhandled: list[tuple[int, tuple[str, ...]]] = []
        values = (
            {"NetLiquidation": 1_000_000.0, "AvailableFunds": 1_000_000.0}
            if account_values is None
            else dict(account_values)
        )
        self._account_values: dict[tuple[str, str, str], str] = {
            (acct, tag, "USD"): _fmt(float(v)) for acct in accounts for tag, v in values.items()
        }
        self._contracts: dict[int, TwsContract] = {}
        self._quotes: dict[int, Quote] = {}
        self._orders: dict[tuple[int, int], OrderRecord] = {}  # (client id, order id)
        self._executions: list[ExecutionRecord] = []
        self._positions: dict[tuple[str, int], PositionRecord] = {}
        self._rejects: list[_Reject] = []
        self._fill_parts = 1
        self._seq = 0
        self._next_order_id = 1
        self._conns: set[_Conn] = set()
        self._handlers: dict[int, Callable[[_Conn, list[str]], None]] = {
            Incoming.START_API: self._on_start_api,
            Incoming.REQ_POSITIONS: self._on_req_positions,
            Incoming.CANCEL_POSITIONS: self._on_cancel_positions,
            Incoming.REQ_OPEN_ORDERS: self._on_req_open_orders,
            Incoming.REQ_ALL_OPEN_ORDERS: self._on_req_all_open_orders,
            Incoming.REQ_AUTO_OPEN_ORDERS: self._ignore,
            Incoming.REQ_COMPLETED_ORDERS: self._on_req_completed_orders,
            Incoming.REQ_ACCOUNT_UPDATES: self._on_req_account_updates,
            Incoming.REQ_ACCOUNT_UPDATES_MULTI: self._on_req_account_updates_multi,
            Incoming.CANCEL_ACCOUNT_UPDATES_MULTI: self._ignore,
            Incoming.REQ_ACCOUNT_SUMMARY: self._on_req_account_summary,
            Incoming.CANCEL_ACCOUNT_SUMMARY: self._ignore,
            Incoming.REQ_EXECUTIONS: self._on_req_executions,
            Incoming.REQ_CURRENT_TIME: self._on_req_current_time,
            Incoming.REQ_IDS: self._on_req_ids,
            Incoming.REQ_MANAGED_ACCTS: self._on_req_managed_accts,
            Incoming.REQ_CONTRACT_DETAILS: self._on_req_contract_details,
            Incoming.PLACE_ORDER: self._on_place_order,
            Incoming.CANCEL_ORDER: self._on_cancel_order,
            Incoming.REQ_GLOBAL_CANCEL: self._on_req_global_cancel,
            Incoming.REQ_MKT_DATA: self._on_req_mkt_data,
            Incoming.CANCEL_MKT_DATA: self._on_cancel_mkt_data,
            Incoming.REQ_MARKET_DATA_TYPE: self._ignore,
            Incoming.SET_SERVER_LOG_LEVEL: self._ignore,
        }
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._stopping: asyncio.Event | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> TwsTestServer:
        if self._thread is not None:
            return self
        self._ready.clear()
        self._start_error = None
        self._thread = threading.Thread(
            target=self._thread_main, name="tws-test-server", daemon=True
        )
        self._thread.start()
        self._ready.wait(30)
        if self._start_error is not None:
            self._thread.join(5)
            self._thread = None
            raise self._start_error
        return self

    def stop(self) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and loop.is_running():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> TwsTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self, on_ready: Callable[[int], None] | None = None) -> None:
        """Serve in the foreground until SIGINT or SIGTERM."""
        asyncio.run(self._main(on_ready, install_signals=True))

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main(None, install_signals=False))
        except BaseException as exc:  # noqa: BLE001 - handed to start()'s caller
            self._start_error = exc
            self._ready.set()

    async def _main(self, on_ready: Callable[[int], None] | None, install_signals: bool) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stopping = asyncio.Event()
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._loop.add_signal_handler(sig, self._stopping.set)
        try:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)
            self.port = self._server.sockets[0].getsockname()[1]
            log.info(
                "TWS test server on %s:%d (version %d)", self.host, self.port, self.server_version
            )
            self._ready.set()
            if on_ready is not None:
                on_ready(self.port)
            async with self._server:
                await self._stopping.wait()
                self._server.close()
                for conn in list(self._conns):
                    self._close(conn, abort=True)
                await asyncio.sleep(0)
        finally:
            self._loop = None
            self._loop_thread = None

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` on the server's loop (directly when not serving or already there)."""
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread:
            return fn(*args, **kwargs)
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                fut.set_exception(exc)

        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError:  # the loop has closed: nobody is connected
            return fn(*args, **kwargs)
        return fut.result(timeout=30)

    # ------------------------------------------------------------------ configuration / control
    def add_contract(
        self,
        con_id: int,
        symbol: str = "NQ",
        sec_type: str = "FOP",
        exchange: str = "CME",
        currency: str = "USD",
        multiplier: str = "20",
        last_trade_date: str = "20260417",
        strike: float = 18250.0,
        right: str = "C",
        local_symbol: str | None = None,
        trading_class: str | None = None,
        *,
        min_tick: float = 0.25,
        long_name: str | None = None,
        under_con_id: int = 0,
    ) -> TwsContract:
        """A contract the server serves. ``strike`` and ``right`` apply to options (FOP, OPT)
        only; other types get strike 0 and no right. ``local_symbol`` defaults to IB's style
        (``NQM6`` for a future, ``NQJ6 C18250`` for an option), ``trading_class`` to ``symbol``.
        """
        sec_type = sec_type.upper()
        if sec_type in ("FOP", "OPT"):
            right = _right(right)
            if not right:
                raise TwsServerError(f"{con_id}: an option needs right C or P")
            strike = float(strike)
        else:
            right, strike = "", 0.0
        if not re.fullmatch(r"\d{8}|\d{6}", last_trade_date or ""):
            raise TwsServerError(f"{con_id}: last_trade_date must be YYYYMMDD or YYYYMM")
        if local_symbol is None:
            local_symbol = symbol + _month_code(last_trade_date)
            if right:
                local_symbol += f" {right}{strike:g}"

        def add() -> TwsContract:
            if int(con_id) in self._contracts:
                raise TwsServerError(f"conId {con_id} is already served")
            contract = TwsContract(
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
            self._contracts[contract.con_id] = contract
            return contract

        return self._call(add)

    def add_future(
        self,
        con_id: int,
        symbol: str = "NQ",
        last_trade_date: str = "20260619",
        exchange: str = "CME",
        currency: str = "USD",
        multiplier: str = "20",
        local_symbol: str | None = None,
        trading_class: str | None = None,
    ) -> TwsContract:
        return self.add_contract(
            con_id,
            symbol=symbol,
            sec_type="FUT",
            exchange=exchange,
            currency=currency,
            multiplier=multiplier,
            last_trade_date=last_trade_date,
            local_symbol=local_symbol,
            trading_class=trading_class,
        )

    def contracts(self) -> list[TwsContract]:
        return self._call(lambda: list(self._contracts.values()))

    def set_quote(
        self,
        con_id: int,
        bid: float | None,
        ask: float | None,
        bid_size: float | None = None,
        ask_size: float | None = None,
        *,
        last: float | None = None,
        last_size: float = 1.0,
    ) -> None:
        """The market for ``con_id``; streams to reqMktData subscribers and fills every
        marketable working order (sizes, when given, cap what fills at this quote). ``last``:
        a trade printed at that price, streamed as a LAST tick (fills nothing)."""

        def apply() -> None:
            if con_id not in self._contracts:
                raise TwsServerError(f"conId {con_id} is not served")
            if bid is not None and ask is not None and bid > ask + EPS:
                raise TwsServerError(f"conId {con_id}: crossed quote {bid} > {ask}")
            self._quotes[con_id] = Quote(bid, ask, bid_size, ask_size, last, last_size)
            for conn in list(self._conns):
                for req_id, cid in conn.mkt.items():
                    if cid == con_id:
                        self._send_quote(conn, req_id, con_id)
            for order in sorted(self._orders.values(), key=lambda o: o.seq):
                if order.contract.con_id == con_id and order.is_working:
                    self._match(order)

        self._call(apply)

    def reject_next(self, code: int = 201, reason: str = DEFAULT_REJECT_REASON) -> None:
        """The next new order (each call queues one) is rejected with error ``code``."""
        self._call(self._rejects.append, _Reject(int(code), reason))

    def fill_in_parts(self, n: int) -> None:
        """Split every following fill into ``n`` executions (1: one execution per fill)."""
        if n < 1:
            raise TwsServerError("fill_in_parts needs n >= 1")

        def apply() -> None:
            self._fill_parts = int(n)

        self._call(apply)

    def set_account_value(
        self, tag: str, value: float | str, currency: str = "USD", account: str | None = None
    ) -> None:
        acct = account or self.accounts[0]
        text = value if isinstance(value, str) else _fmt(float(value))
        self._call(self._account_values.__setitem__, (acct, tag, currency), text)

    def preload_position(
        self, con_id: int, quantity: float, avg_cost: float = 0.0, account: str | None = None
    ) -> PositionRecord:
        """A position the account holds before any client connects (``avg_cost`` per contract,
        multiplier included, as IB reports it)."""

        def apply() -> PositionRecord:
            acct = self._account(account)
            pos = PositionRecord(acct, self._contract(con_id), float(quantity), float(avg_cost))
            self._positions[(acct, con_id)] = pos
            self._push_position(pos)
            return dataclasses.replace(pos)

        return self._call(apply)

    def preload_open_order(
        self,
        con_id: int,
        action: str,
        quantity: float,
        order_type: str = "LMT",
        lmt_price: float | None = None,
        *,
        order_id: int | None = None,
        client_id: int = 1,
        account: str | None = None,
        tif: str = "DAY",
        order_ref: str = "",
    ) -> OrderRecord:
        """A working order placed earlier (by ``client_id``): reqOpenOrders of that client and
        reqAllOpenOrders return it, and quotes fill it like any other order."""

        def apply() -> OrderRecord:
            oid = self._next_order_id if order_id is None else int(order_id)
            if (client_id, oid) in self._orders:
                raise TwsServerError(f"order {oid} of client {client_id} already exists")
            problem = self._order_problem(action.upper(), quantity, order_type.upper(), lmt_price)
            if problem or tif.upper() not in ("DAY", "GTC"):
                raise TwsServerError(f"preloaded order: {problem or 'tif must be DAY or GTC'}")
            order = self._new_order(
                oid,
                client_id,
                self._contract(con_id),
                self._account(account),
                action.upper(),
                float(quantity),
                order_type.upper(),
                lmt_price,
                tif.upper(),
                order_ref,
            )
            self._match(order)
            return dataclasses.replace(order)

        return self._call(apply)

    def drop_connections(self) -> int:
        """Close every client socket now (TWS / IB Gateway dropping us); state is kept."""

        def apply() -> int:
            conns = [c for c in self._conns if not c.closed]
            for conn in conns:
                self._close(conn, abort=True)
            self.stats.drops += len(conns)
            return len(conns)

        return self._call(apply)

    # ------------------------------------------------------------------ inspection (copies)
    def orders(self) -> list[OrderRecord]:
        return self._call(
            lambda: [
                dataclasses.replace(o) for o in sorted(self._orders.values(), key=lambda o: o.seq)
            ]
        )

    def open_orders(self) -> list[OrderRecord]:
        return [o for o in self.orders() if o.is_working]

    def executions(self) -> list[ExecutionRecord]:
        return self._call(lambda: list(self._executions))

    def positions(self, account: str | None = None) -> list[PositionRecord]:
        return self._call(
            lambda: [
                dataclasses.replace(p)
                for p in self._positions.values()
                if account is None or p.account == account
            ]
        )

    def quote(self, con_id: int) -> Quote | None:
        def get() -> Quote | None:
            q = self._quotes.get(con_id)
            return None if q is None else dataclasses.replace(q)

        return self._call(get)

    def connected_client_ids(self) -> list[int]:
        return self._call(
            lambda: sorted(c.client_id for c in self._conns if c.client_id is not None)
        )

    def received_ids(self) -> list[int]:
        return [msg_id for msg_id, _ in list(self.received)]

    # ------------------------------------------------------------------ connections
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str(writer.get_extra_info("peername"))
        conn: _Conn | None = None
        try:
            version = await self._handshake(reader, writer)
            if version is None:
                return
            conn = _Conn(writer, version, peer)
            self._conns.add(conn)
            self.stats.connections += 1
            while not conn.closed:
                (n,) = struct.unpack(">I", await reader.readexactly(4))
                if n > MAX_MESSAGE:
                    log.warning("%s: message of %d bytes; closing", peer, n)
                    return
                payload = await reader.readexactly(n)
                if not conn.closed:
                    self._dispatch(conn, payload)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception:  # noqa: BLE001 - one bad connection must not stop the server
            log.exception("TWS test server: connection %s failed", peer)
        finally:
            if conn is not None:
                if not conn.closed:
                    self.stats.disconnects += 1
                self._close(conn, abort=False)
            elif not writer.transport.is_closing():
                writer.close()

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> int | None:
        prefix = await reader.readexactly(4)
        if prefix != b"API\0":
            log.warning("TWS test server: not an API client (%r); closing", prefix)
            self.stats.refused += 1
            writer.close()
            return None
        (n,) = struct.unpack(">I", await reader.readexactly(4))
        text = (await reader.readexactly(n)).decode(errors="replace") if n <= 1024 else ""
        m = re.match(r"v(\d+)(?:\.\.(\d+))?", text)
        if not m:
            log.warning("TWS test server: bad version string %r; closing", text)
            self.stats.refused += 1
            writer.close()
            return None
        client_min, client_max = int(m[1]), int(m[2] or m[1])
        version = min(self.server_version, client_max)
        if version < client_min or version < MIN_SERVER_VERSION:
            log.warning(
                "TWS test server: client speaks v%d..%d, server %d; closing",
                client_min,
                client_max,
                self.server_version,
            )
            self.stats.refused += 1
            writer.write(_frame(self.server_version, self._conn_time()))
            writer.close()
            return None
        writer.write(_frame(version, self._conn_time()))
        return version

    def _conn_time(self) -> str:
        return datetime.fromtimestamp(self.clock(), UTC).strftime("%Y%m%d %H:%M:%S UTC")

    def _close(self, conn: _Conn, abort: bool) -> None:
        conn.closed = True
        self._conns.discard(conn)
        transport = conn.writer.transport
        if not transport.is_closing():
            if abort:
                transport.abort()
            else:
                conn.writer.close()

    def _dispatch(self, conn: _Conn, payload: bytes) -> None:
        fields = payload.decode(errors="replace").split("\0")
        if fields and fields[-1] == "":
            fields.pop()
        self.stats.messages_in += 1
        try:
            msg_id = int(fields[0])
        except (IndexError, ValueError):
            log.warning("TWS test server: message without a msgId: %r", fields[:5])
            self.unhandled.append((-1, tuple(fields)))
            return
        args = fields[1:]
        self.received.append((msg_id, tuple(args)))
        handler = self._handlers.get(msg_id)
        if handler is None:
            log.warning("TWS test server: unhandled request %d %s", msg_id, args[:8])
            self.unhandled.append((msg_id, tuple(args)))
            return
        try:
            handler(conn, args)
        except Exception as exc:  # noqa: BLE001 - answered as TWS does, connection kept
            log.exception("TWS test server: request %d failed", msg_id)
            self._error(conn, -1, 320, f"Error reading request: {exc}")

    def _send(self, conn: _Conn, *fields: Any) -> None:
        if conn.closed or conn.writer.transport.is_closing():
            return
        conn.writer.write(_frame(*fields))
        self.stats.messages_out += 1

    def _error(self, conn: _Conn, req_id: int, code: int, text: str) -> None:
        fields: list[Any] = [Outgoing.ERR_MSG, 2, req_id, code, text]
        if conn.version >= 166:
            fields.append("")  # advancedOrderRejectJson
        self._send(conn, *fields)

    def _client_conns(self, client_id: int) -> list[_Conn]:
        return [c for c in self._conns if c.client_id == client_id and not c.closed]

    def _contract(self, con_id: int) -> TwsContract:
        try:
            return self._contracts[con_id]
        except KeyError:
            raise TwsServerError(f"conId {con_id} is not served (add_contract first)") from None

    def _account(self, account: str | None) -> str:
        acct = account or self.accounts[0]
        if acct not in self.accounts:
            raise TwsServerError(f"account {acct} is not one of {self.accounts}")
        return acct

    # ------------------------------------------------------------------ session requests
    def _ignore(self, conn: _Conn, f: list[str]) -> None:
        pass

    def _on_start_api(self, conn: _Conn, f: list[str]) -> None:
        client_id = _int(f[1]) if len(f) > 1 else 0
        if any(c.client_id == client_id for c in self._conns if c is not conn):
            log.warning("TWS test server: client id %d already connected; refusing", client_id)
            self._error(conn, -1, 326, CLIENT_ID_IN_USE)
            self.stats.refused += 1
            self._close(conn, abort=False)
            return
        conn.client_id = client_id
        self._send(conn, Outgoing.NEXT_VALID_ID, 1, self._next_order_id)
        self._send(conn, Outgoing.MANAGED_ACCTS, 1, ",".join(self.accounts))

    def _on_req_ids(self, conn: _Conn, f: list[str]) -> None:
        self._send(conn, Outgoing.NEXT_VALID_ID, 1, self._next_order_id)

    def _on_req_managed_accts(self, conn: _Conn, f: list[str]) -> None:
        self._send(conn, Outgoing.MANAGED_ACCTS, 1, ",".join(self.accounts))

    def _on_req_current_time(self, conn: _Conn, f: list[str]) -> None:
        self._send(conn, Outgoing.CURRENT_TIME, 1, int(self.clock()))

    def _on_req_completed_orders(self, conn: _Conn, f: list[str]) -> None:
        self._send(conn, Outgoing.COMPLETED_ORDERS_END)

    def _on_req_positions(self, conn: _Conn, f: list[str]) -> None:
        conn.positions_sub = True
        for pos in self._positions.values():
            self._send_position(conn, pos)
        self._send(conn, Outgoing.POSITION_END, 1)

    def _on_cancel_positions(self, conn: _Conn, f: list[str]) -> None:
        conn.positions_sub = False

    def _send_position(self, conn: _Conn, pos: PositionRecord) -> None:
        self._send(
            conn,
            Outgoing.POSITION_DATA,
            3,
            pos.account,
            *pos.contract.wire(),
            pos.position,
            pos.avg_cost,
        )

    def _push_position(self, pos: PositionRecord) -> None:
        for conn in list(self._conns):
            if conn.positions_sub:
                self._send_position(conn, pos)
            if conn.account_sub == pos.account:
                self._send_portfolio(conn, pos)

    def _send_portfolio(self, conn: _Conn, pos: PositionRecord) -> None:
        c = pos.contract
        mult = c.multiplier_value
        q = self._quotes.get(c.con_id)
        if q is not None and q.bid is not None and q.ask is not None:
            mark = (q.bid + q.ask) / 2
        else:
            mark = pos.avg_cost / mult if mult else 0.0
        value = pos.position * mark * mult
        unrealized = value - pos.position * pos.avg_cost
        self._send(
            conn,
            Outgoing.PORTFOLIO_VALUE,
            8,
            c.con_id,
            c.symbol,
            c.sec_type,
            c.last_trade_date,
            c.strike,
            c.right,
            c.multiplier,
            "",  # primaryExchange
            c.currency,
            c.local_symbol,
            c.trading_class,
            pos.position,
            mark,
            value,
            pos.avg_cost,
            unrealized,
            pos.realized_pnl,
            pos.account,
        )

    def _on_req_account_updates(self, conn: _Conn, f: list[str]) -> None:
        subscribe = f[1] == "1" if len(f) > 1 else True
        account = (f[2] if len(f) > 2 else "") or self.accounts[0]
        if not subscribe:
            conn.account_sub = None
            return
        conn.account_sub = account
        for (acct, tag, cur), value in self._account_values.items():
            if acct == account:
                self._send(conn, Outgoing.ACCT_VALUE, 2, tag, value, cur, acct)
        for pos in self._positions.values():
            if pos.account == account:
                self._send_portfolio(conn, pos)
        now = datetime.fromtimestamp(self.clock(), UTC).strftime("%H:%M")
        self._send(conn, Outgoing.ACCT_UPDATE_TIME, 1, now)
        self._send(conn, Outgoing.ACCT_DOWNLOAD_END, 1, account)

    def _on_req_account_updates_multi(self, conn: _Conn, f: list[str]) -> None:
        req_id, account, model = _int(f[1]), f[2], f[3] if len(f) > 3 else ""
        for (acct, tag, cur), value in self._account_values.items():
            if not account or acct == account:
                self._send(
                    conn, Outgoing.ACCOUNT_UPDATE_MULTI, 1, req_id, acct, model, tag, value, cur
                )
        self._send(conn, Outgoing.ACCOUNT_UPDATE_MULTI_END, 1, req_id)

    def _on_req_account_summary(self, conn: _Conn, f: list[str]) -> None:
        req_id, tags = _int(f[1]), set((f[3] if len(f) > 3 else "").split(","))
        for (acct, tag, cur), value in self._account_values.items():
            if tag in tags:
                self._send(conn, Outgoing.ACCOUNT_SUMMARY, 1, req_id, acct, tag, value, cur)
        self._send(conn, Outgoing.ACCOUNT_SUMMARY_END, 1, req_id)

    # ------------------------------------------------------------------ contracts, market data
    def _find_contracts(self, query: _ContractQuery) -> list[TwsContract]:
        if query.sec_type.upper() == "BAG":
            return []
        return [
            c for c in sorted(self._contracts.values(), key=lambda c: c.con_id) if query.matches(c)
        ]

    def _on_req_contract_details(self, conn: _Conn, f: list[str]) -> None:
        req_id = _int(f[1])
        found = self._find_contracts(_ContractQuery.from_fields(f[2:14]))
        if not found:
            self._error(conn, req_id, 200, NO_SECURITY)
            return
        for c in found:
            self._send_contract_details(conn, req_id, c)
        self._send(conn, Outgoing.CONTRACT_DATA_END, 1, req_id)

    def _send_contract_details(self, conn: _Conn, req_id: int, c: TwsContract) -> None:
        v = conn.version
        fields: list[Any] = [Outgoing.CONTRACT_DATA]
        if v < 164:
            fields.append(8)  # message version
        fields += [
            req_id,
            c.symbol,
            c.sec_type,
            c.last_trade_date,
            c.strike,
            c.right,
            c.exchange,
            c.currency,
            c.local_symbol,
            c.trading_class,  # marketName
            c.trading_class,
            c.con_id,
            c.min_tick,
        ]
        if v < 164:
            fields.append(1)  # mdSizeMultiplier
        fields += [
            c.multiplier,
            "LMT,MKT",  # orderTypes
            c.exchange,  # validExchanges
            1,  # priceMagnifier
            c.under_con_id,
            c.long_name,
            "",  # primaryExchange
            c.last_trade_date[:6],  # contractMonth
            "",  # industry
            "",  # category
            "",  # subcategory
            c.time_zone_id,
            "",  # tradingHours
            "",  # liquidHours
            "",  # evRule
            "",  # evMultiplier
            0,  # secIdList
            "",  # aggGroup
            c.under_symbol,
            c.under_sec_type,
            "",  # marketRuleIds
            c.last_trade_date,  # realExpirationDate
            "",  # stockType
        ]
        if v == 163:
            fields.append(1)  # suggestedSizeIncrement
        if v >= 164:
            fields += [1, 1, 1]  # minSize, sizeIncrement, suggestedSizeIncrement
        self._send(conn, *fields)

    def _on_req_mkt_data(self, conn: _Conn, f: list[str]) -> None:
        req_id = _int(f[1])
        query = _ContractQuery.from_fields(f[2:14])
        found = self._find_contracts(query)
        if len(found) != 1:
            self._error(conn, req_id, 200, NO_SECURITY)
            return
        i = 14
        if f[i] == "1":  # deltaNeutralContract
            i += 3
        snapshot = len(f) > i + 2 and f[i + 2] == "1"
        con_id = found[0].con_id
        self._send(conn, Outgoing.MARKET_DATA_TYPE, 1, req_id, 1)
        if con_id in self._quotes:
            self._send_quote(conn, req_id, con_id)
        if snapshot:
            self._send(conn, Outgoing.TICK_SNAPSHOT_END, 1, req_id)
        else:
            conn.mkt[req_id] = con_id

    def _on_cancel_mkt_data(self, conn: _Conn, f: list[str]) -> None:
        conn.mkt.pop(_int(f[1]) if len(f) > 1 else -1, None)

    def _send_quote(self, conn: _Conn, req_id: int, con_id: int) -> None:
        q = self._quotes[con_id]
        for tick_type, price, size in ((1, q.bid, q.bid_size), (2, q.ask, q.ask_size)):
            if price is None:
                self._send(conn, Outgoing.TICK_PRICE, 6, req_id, tick_type, -1, 0, 0)
            else:
                shown = UNLIMITED_DISPLAY_SIZE if size is None else size
                self._send(conn, Outgoing.TICK_PRICE, 6, req_id, tick_type, price, shown, 0)
        if q.last is not None:
            self._send(conn, Outgoing.TICK_PRICE, 6, req_id, 4, q.last, q.last_size, 0)

    # ------------------------------------------------------------------ orders
    def _order_problem(
        self, action: str, quantity: float | None, order_type: str, lmt_price: float | None
    ) -> str:
        if action not in ("BUY", "SELL"):
            return f"action {action!r} is not BUY or SELL"
        if quantity is None or quantity <= 0:
            return "the order size must be positive"
        if order_type not in ("MKT", "LMT"):
            return f"order type {order_type!r} is not supported (MKT, LMT)"
        if order_type == "LMT" and (lmt_price is None or lmt_price <= 0):
            return "a limit order needs a positive limit price"
        return ""

    def _new_order(
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
        self._seq += 1
        order = OrderRecord(
            order_id=order_id,
            client_id=client_id,
            perm_id=PERM_ID_BASE + self._seq,
            seq=self._seq,
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
        self._orders[(client_id, order_id)] = order
        self._next_order_id = max(self._next_order_id, order_id + 1)
        return order

    def _on_place_order(self, conn: _Conn, f: list[str]) -> None:
        req = _parse_place_order(f, conn.version)
        client_id = conn.client_id if conn.client_id is not None else 0
        found = self._find_contracts(req.contract)
        if req.what_if:
            self._answer_what_if(conn, req, client_id, found)
            return
        existing = self._orders.get((client_id, req.order_id))
        if existing is not None:
            self._modify(conn, existing, req)
            return
        self._next_order_id = max(self._next_order_id, req.order_id + 1)
        if self._rejects:
            reject = self._rejects.pop(0)
            contract = found[0] if len(found) == 1 else req.contract.as_contract()
            self._reject(conn, req, client_id, contract, reject.code, reject.reason)
            return
        if len(found) != 1:
            self._error(conn, req.order_id, 200, NO_SECURITY)
            return
        contract = found[0]
        account = req.account
        problem = self._order_problem(req.action, req.quantity, req.order_type, req.lmt_price)
        if not problem and req.tif not in ("DAY", "GTC", "IOC"):
            problem = f"time in force {req.tif!r} is not supported (DAY, GTC, IOC)"
        if not problem and not account:
            if len(self.accounts) == 1:
                account = self.accounts[0]
            else:
                problem = (
                    "You must specify an allocation (either a single account, group, or profile)."
                )
        if not problem and account not in self.accounts:
            problem = f"account {account} is not managed by this login"
        if problem:
            self._reject(conn, req, client_id, contract, 201, f"Order rejected - reason:{problem}")
            return
        order = self._new_order(
            req.order_id,
            client_id,
            contract,
            account,
            req.action,
            float(req.quantity or 0),
            req.order_type,
            req.lmt_price,
            req.tif,
            req.order_ref,
        )
        for c in self._client_conns(client_id):
            self._send_open_order(c, order)
            self._send_order_status(c, order)
        self._match(order)
        if order.tif == "IOC" and order.is_working:
            self._cancel(order)

    def _reject(
        self,
        conn: _Conn,
        req: _PlaceOrder,
        client_id: int,
        contract: TwsContract,
        code: int,
        reason: str,
    ) -> None:
        """As TWS rejects: the error first, then openOrder and orderStatus Inactive."""
        order = self._new_order(
            req.order_id,
            client_id,
            contract,
            req.account or self.accounts[0],
            req.action,
            float(req.quantity or 0),
            req.order_type,
            req.lmt_price,
            req.tif,
            req.order_ref,
            status="Inactive",
        )
        self._error(conn, req.order_id, code, reason)
        self._send_open_order(conn, order)
        self._send_order_status(conn, order)

    def _modify(self, conn: _Conn, order: OrderRecord, req: _PlaceOrder) -> None:
        if not order.is_working:
            self._error(conn, req.order_id, 103, "Duplicate order id")
            return
        problem = self._order_problem(req.action, req.quantity, req.order_type, req.lmt_price)
        if not problem and (req.quantity or 0) < order.filled - EPS:
            problem = "the new quantity is below the filled quantity"
        if not problem and req.action != order.action:
            problem = "the action of a working order cannot change"
        if problem:
            self._error(
                conn, req.order_id, 321, f"Error validating request:-'modify' : cause - {problem}"
            )
            return
        order.quantity = float(req.quantity or 0)
        order.order_type = req.order_type
        order.lmt_price = req.lmt_price if req.order_type == "LMT" else None
        order.tif = req.tif if req.tif in ("DAY", "GTC") else order.tif
        order.order_ref = req.order_ref
        if order.remaining <= EPS:
            order.status = "Filled"
        for c in self._client_conns(order.client_id):
            self._send_open_order(c, order)
            self._send_order_status(c, order)
        self._match(order)

    def _answer_what_if(
        self, conn: _Conn, req: _PlaceOrder, client_id: int, found: list[TwsContract]
    ) -> None:
        if len(found) != 1:
            self._error(conn, req.order_id, 200, NO_SECURITY)
            return
        contract = found[0]
        qty = float(req.quantity or 0)
        q = self._quotes.get(contract.con_id)
        px = (q.ask if req.action == "BUY" else q.bid) if q is not None else None
        margin = (px or 0.0) * contract.multiplier_value * qty
        equity = _float(
            self._account_values.get(
                (req.account or self.accounts[0], "NetLiquidation", "USD"), ""
            ),
            0.0,
        )
        order = OrderRecord(
            order_id=req.order_id,
            client_id=client_id,
            perm_id=0,
            seq=0,
            contract=contract,
            account=req.account or self.accounts[0],
            action=req.action,
            quantity=qty,
            order_type=req.order_type,
            lmt_price=req.lmt_price,
            tif=req.tif,
            order_ref=req.order_ref,
            status="PreSubmitted",
        )
        state = {
            "margin_before": 0.0,
            "margin_change": margin,
            "equity": equity or 0.0,
            "commission": self.commission_per_contract * qty,
        }
        self._send_open_order(conn, order, what_if=state)

    def _on_cancel_order(self, conn: _Conn, f: list[str]) -> None:
        order_id = _int(f[1])
        client_id = conn.client_id if conn.client_id is not None else 0
        order = self._orders.get((client_id, order_id))
        if order is None:
            self._error(
                conn,
                order_id,
                10147,
                f"OrderId {order_id} that needs to be cancelled is not found.",
            )
        elif not order.is_working:
            self._error(
                conn,
                order_id,
                10148,
                f"OrderId {order_id} that needs to be cancelled cannot be cancelled, "
                f"state: {order.status}.",
            )
        else:
            self._cancel(order)

    def _on_req_global_cancel(self, conn: _Conn, f: list[str]) -> None:
        for order in sorted(self._orders.values(), key=lambda o: o.seq):
            if order.is_working:
                self._cancel(order)

    def _cancel(self, order: OrderRecord) -> None:
        order.status = "Cancelled"
        for c in self._client_conns(order.client_id):
            self._send_order_status(c, order)
            self._error(c, order.order_id, 202, ORDER_CANCELED)

    def _working_orders(self, client_id: int | None) -> list[OrderRecord]:
        return [
            o
            for o in sorted(self._orders.values(), key=lambda o: o.seq)
            if o.is_working and (client_id is None or o.client_id == client_id)
        ]

    def _on_req_open_orders(self, conn: _Conn, f: list[str]) -> None:
        client_id = conn.client_id if conn.client_id is not None else 0
        self._send_open_orders(conn, self._working_orders(client_id))

    def _on_req_all_open_orders(self, conn: _Conn, f: list[str]) -> None:
        self._send_open_orders(conn, self._working_orders(None))

    def _send_open_orders(self, conn: _Conn, orders: Iterable[OrderRecord]) -> None:
        for order in orders:
            self._send_open_order(conn, order)
            self._send_order_status(conn, order)
        self._send(conn, Outgoing.OPEN_ORDER_END, 1)

    def _send_order_status(self, conn: _Conn, o: OrderRecord) -> None:
        self._send(
            conn,
            Outgoing.ORDER_STATUS,
            o.order_id,
            o.status,
            o.filled,
            o.remaining,
            o.avg_fill_price,
            o.perm_id,
            0,  # parentId
            o.last_fill_price,
            o.client_id,
            "",  # whyHeld
            0,  # mktCapPrice
        )

    def _send_open_order(
        self, conn: _Conn, o: OrderRecord, what_if: dict[str, float] | None = None
    ) -> None:
        """openOrder as ib_async's ``Decoder.openOrder`` reads it at the connection's version."""
        v = conn.version
        fields: list[Any] = [
            Outgoing.OPEN_ORDER,
            o.order_id,
            *o.contract.wire(),
            o.action,
            o.quantity,
            o.order_type,
            o.lmt_price,
            "",  # auxPrice
            o.tif,
            "",  # ocaGroup
            o.account,
            "",  # openClose
            0,  # origin
            o.order_ref,
            o.client_id,
            o.perm_id,
            0,  # outsideRth
            0,  # hidden
            0,  # discretionaryAmt
            "",  # goodAfterTime
            "",  # sharesAllocation (deprecated)
            "",  # faGroup
            "",  # faMethod
            "",  # faPercentage
        ]
        if v < 177:
            fields.append("")  # faProfile
        fields += [
            "",  # modelCode
            "",  # goodTillDate
            "",  # rule80A
            "",  # percentOffset
            "",  # settlingFirm
            0,  # shortSaleSlot
            "",  # designatedLocation
            -1,  # exemptCode
            0,  # auctionStrategy
            "",  # startingPrice
            "",  # stockRefPrice
            "",  # delta
            "",  # stockRangeLower
            "",  # stockRangeUpper
            "",  # displaySize
            0,  # blockOrder
            0,  # sweepToFill
            0,  # allOrNone
            "",  # minQty
            0,  # ocaType
            0,  # eTradeOnly
            0,  # firmQuoteOnly
            "",  # nbboPriceCap
            0,  # parentId
            0,  # triggerMethod
            "",  # volatility
            0,  # volatilityType
            "",  # deltaNeutralOrderType (none: no deltaNeutral block)
            "",  # deltaNeutralAuxPrice
            0,  # continuousUpdate
            0,  # referencePriceType
            "",  # trailStopPrice
            "",  # trailingPercent
            "",  # basisPoints
            "",  # basisPointsType
            "",  # comboLegsDescrip
            0,  # comboLegs
            0,  # orderComboLegs
            0,  # smartComboRoutingParams
            "",  # scaleInitLevelSize
            "",  # scaleSubsLevelSize
            "",  # scalePriceIncrement (unset: no scale block)
            "",  # hedgeType (none: no hedgeParam)
            0,  # optOutSmartRouting
            "",  # clearingAccount
            "",  # clearingIntent
            0,  # notHeld
            0,  # deltaNeutralContract present
            "",  # algoStrategy (none: no algo params)
            0,  # solicited
            what_if is not None,  # whatIf
            o.status,
        ]
        if what_if is None:
            fields += ["", "", "", "", "", "", "", "", "", "", "", "", ""]
        else:
            before, change = what_if["margin_before"], what_if["margin_change"]
            equity, commission = what_if["equity"], what_if["commission"]
            fields += [
                before,  # initMarginBefore
                before,  # maintMarginBefore
                equity,  # equityWithLoanBefore
                change,  # initMarginChange
                change,  # maintMarginChange
                0,  # equityWithLoanChange
                before + change,  # initMarginAfter
                before + change,  # maintMarginAfter
                equity,  # equityWithLoanAfter
                commission,
                commission,  # minCommission
                commission,  # maxCommission
                o.contract.currency,
            ]
        fields += [
            "",  # warningText
            0,  # randomizeSize
            0,  # randomizePrice
            0,  # conditions
            "",  # adjustedOrderType
            "",  # triggerPrice
            "",  # trailStopPrice
            "",  # lmtPriceOffset
            "",  # adjustedStopPrice
            "",  # adjustedStopLimitPrice
            "",  # adjustedTrailingAmount
            0,  # adjustableTrailingUnit
            "",  # softDollarTier name
            "",  # softDollarTier value
            "",  # softDollarTier displayName
            "",  # cashQty
            0,  # dontUseAutoPriceForHedge
            0,  # isOmsContainer
            0,  # discretionaryUpToLimitPrice
            0,  # usePriceMgmtAlgo
        ]
        if v >= 159:
            fields.append("")  # duration
        if v >= 160:
            fields.append("")  # postToAts
        if v >= 162:
            fields.append(0)  # autoCancelParent
        if v >= 170:
            fields += ["", "", "", "", ""]  # minTradeQty .. midOffsetAtHalf
        self._send(conn, *fields)

    # ------------------------------------------------------------------ matching and fills
    def _match(self, order: OrderRecord) -> None:
        """Fill what the current quote allows (nothing without a quote)."""
        q = self._quotes.get(order.contract.con_id)
        if q is None or not order.is_working:
            return
        buy = order.action == "BUY"
        price = q.ask if buy else q.bid
        if price is None or price <= 0:
            return
        if order.order_type == "LMT":
            assert order.lmt_price is not None
            marketable = order.lmt_price >= price - EPS if buy else order.lmt_price <= price + EPS
            if not marketable:
                return
        available = q.ask_size if buy else q.bid_size
        qty = order.remaining if available is None else min(order.remaining, available)
        if qty <= EPS:
            return
        for part in _split(qty, self._fill_parts):
            self._execute(order, part, price)
        if available is not None:
            if buy:
                q.ask_size = max((q.ask_size or 0.0) - qty, 0.0)
            else:
                q.bid_size = max((q.bid_size or 0.0) - qty, 0.0)

    def _execute(self, order: OrderRecord, qty: float, price: float) -> None:
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
        pos = self._positions.get((order.account, order.contract.con_id))
        if pos is None:
            pos = PositionRecord(order.account, order.contract, 0.0, 0.0)
            self._positions[(order.account, order.contract.con_id)] = pos
        realized = _apply_fill(pos, signed, price, commission)
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
        self._executions.append(ex)
        log.info(
            "TWS test server: %s %g %s @ %g (%s)",
            ex.side,
            qty,
            order.contract.local_symbol,
            price,
            exec_id,
        )
        for c in self._client_conns(order.client_id):
            self._send_execution(c, -1, ex)
            self._send_order_status(c, order)
            self._send_commission(c, ex)
        self._push_position(pos)

    def _send_execution(self, conn: _Conn, req_id: int, ex: ExecutionRecord) -> None:
        when = datetime.fromtimestamp(ex.time, UTC).strftime("%Y%m%d %H:%M:%S UTC")
        fields: list[Any] = [
            Outgoing.EXECUTION_DATA,
            req_id,
            ex.order_id,
            *ex.contract.wire(),
            ex.exec_id,
            when,
            ex.account,
            ex.contract.exchange,
            ex.side,
            ex.shares,
            ex.price,
            ex.perm_id,
            ex.client_id,
            0,  # liquidation
            ex.cum_qty,
            ex.avg_price,
            ex.order_ref,
            "",  # evRule
            "",  # evMultiplier
            "",  # modelCode
            2,  # lastLiquidity: removed liquidity (fills take the quote)
        ]
        if conn.version >= 178:
            fields.append(0)  # pendingPriceRevision
        self._send(conn, *fields)

    def _send_commission(self, conn: _Conn, ex: ExecutionRecord) -> None:
        self._send(
            conn,
            Outgoing.COMMISSION_REPORT,
            1,
            ex.exec_id,
            ex.commission,
            "USD",
            UNSET_DOUBLE if ex.realized_pnl is None else ex.realized_pnl,
            UNSET_DOUBLE,  # yield
            "",  # yieldRedemptionDate
        )

    def _on_req_executions(self, conn: _Conn, f: list[str]) -> None:
        req_id = _int(f[1])
        client, acct, since, symbol, sec_type, exchange, side = (list(f[2:9]) + [""] * 7)[:7]
        client_id = _int(client)
        since_ts = _parse_filter_time(since)
        side = {"BUY": "BOT", "SELL": "SLD"}.get(side.upper(), side.upper())
        for ex in self._executions:
            c = ex.contract
            if (
                (client_id and ex.client_id != client_id)
                or (acct and ex.account != acct)
                or (since_ts is not None and ex.time < since_ts)
                or (symbol and c.symbol.upper() != symbol.upper())
                or (sec_type and c.sec_type != sec_type.upper())
                or (exchange and c.exchange.upper() != exchange.upper())
                or (side and ex.side != side)
            ):
                continue
            self._send_execution(conn, req_id, ex)
            self._send_commission(conn, ex)
        self._send(conn, Outgoing.EXECUTION_DATA_END, 1, req_id)


def _parse_filter_time(text: str) -> float | None:
    """An ExecutionFilter time ("yyyymmdd hh:mm:ss", UTC assumed), or None."""
    digits = re.sub(r"[^0-9]", "", text or "")[:14]
    if len(digits) < 14:
        return None
    try:
        return datetime.strptime(digits, "%Y%m%d%H%M%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def _apply_fill(
    pos: PositionRecord, signed: float, price: float, commission: float
) -> float | None:
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


# ----------------------------------------------------------------------------------- by hand
DEMO_FUTURE_CON_ID = 100_001
DEMO_OPTION_CON_ID0 = 200_001


def add_demo_nq(server: TwsTestServer) -> None:
    """A small NQ book for trying clients by hand: the June 2026 future and the 20260417
    18000/18250/18500 calls and puts (conIds 200001..), all quoted."""
    server.add_future(DEMO_FUTURE_CON_ID, "NQ", "20260619")
    server.set_quote(DEMO_FUTURE_CON_ID, 18249.75, 18250.25, 5, 5)
    con_id = DEMO_OPTION_CON_ID0
    for strike in (18000.0, 18250.0, 18500.0):
        for right in ("C", "P"):
            server.add_contract(con_id, strike=strike, right=right, under_con_id=DEMO_FUTURE_CON_ID)
            intrinsic = max(18250.0 - strike, 0.0) if right == "C" else max(strike - 18250.0, 0.0)
            mid = intrinsic + 150.0
            server.set_quote(con_id, mid - 1.0, mid + 1.0)
            con_id += 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.servers.tws_server",
        description="A TWS-protocol test server on loopback (see the module docstring).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address")
    parser.add_argument("--port", type=int, default=7497, help="0 picks a free port")
    parser.add_argument("--server-version", type=int, default=DEFAULT_SERVER_VERSION)
    parser.add_argument("--account", action="append", dest="accounts", help="repeatable")
    parser.add_argument("--commission", type=float, default=2.25, help="USD per contract")
    parser.add_argument("--no-demo", action="store_true", help="start without the NQ demo book")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        server = TwsTestServer(
            args.host,
            args.port,
            server_version=args.server_version,
            accounts=tuple(args.accounts or ("DU1234567",)),
            commission_per_contract=args.commission,
        )
    except TwsServerError as exc:
        parser.error(str(exc))
    if not args.no_demo:
        add_demo_nq(server)

    def ready(port: int) -> None:
        print(
            f"TWS test server listening on {args.host}:{port} (server version "
            f"{server.server_version}, accounts {','.join(server.accounts)}); Ctrl-C stops",
            flush=True,
        )

    server.serve_forever(ready)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
