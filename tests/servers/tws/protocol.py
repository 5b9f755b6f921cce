"""The TWS API wire format as ib_async 2.1.0 speaks it: framing, message ids, requests, replies.

ib_async's ``client.py`` encodes the requests and its ``decoder.py`` decodes the replies; this
module mirrors both for the messages the test server knows; the exchange:

    C->S  b"API\\0" + len + b"v157..178"           (the client's protocol version range)
    S->C  len + b"<version>\\0<time>\\0"            (the negotiated version)
    then  len + NUL-separated fields, msgId first, both ways (4-byte big-endian length)

Replies are built as field lists (``encode`` frames them) at the connection's negotiated version:
contractDetails drops its version field and mdSizeMultiplier at 164 and gains minSize/
sizeIncrement; openOrder loses faProfile at 177 and gains duration/postToAts/autoCancelParent/peg
fields at 159/160/162/170; errors gain advancedOrderRejectJson at 166; executions gain
pendingPriceRevision at 178.
"""

from __future__ import annotations

import logging
import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

from tests.servers.tws.state import (
    EPS,
    ExecutionRecord,
    OrderRecord,
    PositionRecord,
    Quote,
    TwsContract,
    normalize_right,
)

log = logging.getLogger(__name__)

MIN_SERVER_VERSION = 157  # ib_async 2.1.0 Client.MinClientVersion
MAX_SERVER_VERSION = 178  # ib_async 2.1.0 Client.MaxClientVersion
DEFAULT_SERVER_VERSION = MIN_SERVER_VERSION
API_PREFIX = b"API\0"
UNSET_DOUBLE = "1.7976931348623157E308"  # IB's "no value" for doubles
UNSET_DOUBLE_F = float(UNSET_DOUBLE)
MAX_MESSAGE = 1 << 24
UNLIMITED_DISPLAY_SIZE = 100  # the size ticks show for a quote without a size

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


# ---------------------------------------------------------------------------------- framing
def fmt(value: Any) -> str:
    """One field as TWS writes it (integral floats without a fraction, None/NaN empty)."""
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


def encode(*fields: Any) -> bytes:
    """A framed message: 4-byte big-endian length, then the NUL-terminated fields."""
    payload = "".join(fmt(f) + "\0" for f in fields).encode()
    return struct.pack(">I", len(payload)) + payload


def decode(payload: bytes) -> list[str]:
    """The fields of one message payload (the trailing terminator dropped)."""
    fields = payload.decode(errors="replace").split("\0")
    if fields and fields[-1] == "":
        fields.pop()
    return fields


def parse_float(s: str | None, default: float | None = None) -> float | None:
    if s is None or s == "":
        return default
    try:
        v = float(s)
    except ValueError:
        return default
    return default if v >= UNSET_DOUBLE_F else v


def parse_int(s: str | None, default: int = 0) -> int:
    try:
        return int(s) if s not in (None, "") else default
    except ValueError:
        return default


def parse_version_range(text: str) -> tuple[int, int] | None:
    """The client's ``v<min>..<max>`` (or ``v<n>``) from the handshake, or None."""
    m = re.match(r"v(\d+)(?:\.\.(\d+))?", text)
    if not m:
        return None
    return int(m[1]), int(m[2] or m[1])


def tws_time(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y%m%d %H:%M:%S UTC")


def parse_filter_time(text: str) -> float | None:
    """An ExecutionFilter time ("yyyymmdd hh:mm:ss", UTC assumed), or None."""
    digits = re.sub(r"[^0-9]", "", text or "")[:14]
    if len(digits) < 14:
        return None
    try:
        return datetime.strptime(digits, "%Y%m%d%H%M%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


# ---------------------------------------------------------------------------------- requests
@dataclass
class ContractQuery:
    """The contract fields of a request (conId .. tradingClass), as the client wrote them."""

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
    def from_fields(cls, f: Sequence[str]) -> ContractQuery:
        return cls(parse_int(f[0]), *f[1:12])

    def matches(self, c: TwsContract) -> bool:
        """reqContractDetails matching: every field the request gives must agree (a conId
        alone decides); a combo (BAG) matches nothing."""
        if self.sec_type.upper() == "BAG":
            return False
        if self.con_id > 0:
            return c.con_id == self.con_id
        strike = parse_float(self.strike, 0.0) or 0.0
        mult = parse_float(self.multiplier)
        right = normalize_right(self.right)
        checks = (
            not self.symbol or self.symbol.upper() == c.symbol.upper(),
            not self.sec_type or self.sec_type.upper() == c.sec_type,
            not self.last_trade_date or c.last_trade_date.startswith(self.last_trade_date),
            not strike or abs(strike - c.strike) < EPS,
            not right or right == c.right,
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
            strike=parse_float(self.strike, 0.0) or 0.0,
            right=normalize_right(self.right),
            local_symbol=self.local_symbol,
            trading_class=self.trading_class,
        )


@dataclass
class PlaceOrderRequest:
    order_id: int
    contract: ContractQuery
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


def parse_place_order(f: Sequence[str], version: int) -> PlaceOrderRequest:
    """The fields this server uses, from ib_async's ``Client.placeOrder`` encoding."""
    order = PlaceOrderRequest(
        order_id=parse_int(f[0]),
        contract=ContractQuery.from_fields(f[1:13]),
        action=f[15].upper(),
        quantity=parse_float(f[16]),
        order_type=f[17].upper(),
        lmt_price=parse_float(f[18]),
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
            c.skip(8 * parse_int(c.next()))
            c.skip(parse_int(c.next()))
            c.skip(2 * parse_int(c.next()))
        c.skip(7)  # "", discretionaryAmt, goodAfterTime, goodTillDate, faGroup/Method/Percentage
        if version < 177:
            c.skip(1)  # faProfile
        c.skip(22)  # modelCode .. volatilityType
        if c.next():  # deltaNeutralOrderType
            c.skip(1 + 8)
        else:
            c.skip(1)
        c.skip(6)  # continuousUpdate .. scaleSubsLevelSize
        increment = parse_float(c.next(), 0.0) or 0.0
        if 0 < increment < UNSET_DOUBLE_F:
            c.skip(7)
        c.skip(3)  # scaleTable, activeStartTime, activeStopTime
        if c.next():  # hedgeType
            c.skip(1)
        c.skip(4)  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld
        if c.next() == "1":  # deltaNeutralContract
            c.skip(3)
        if c.next():  # algoStrategy
            c.skip(2 * parse_int(c.next()))
        c.skip(1)  # algoId
        order.what_if = c.next() == "1"
    except (IndexError, ValueError):
        log.warning("placeOrder %s: could not read whatIf; taken as a real order", order.order_id)
    return order


def is_snapshot_request(f: Sequence[str]) -> bool:
    """Whether a reqMktData (fields after the msgId) asks for a snapshot, not a stream."""
    i = 14
    if f[i] == "1":  # deltaNeutralContract
        i += 3
    return len(f) > i + 2 and f[i + 2] == "1"


# ---------------------------------------------------------------------------------- replies
def contract_fields(c: TwsContract) -> list[Any]:
    """conId .. tradingClass as position, execDetails and openOrder carry them."""
    return [
        c.con_id,
        c.symbol,
        c.sec_type,
        c.last_trade_date,
        c.strike,
        c.right,
        c.multiplier,
        c.exchange,
        c.currency,
        c.local_symbol,
        c.trading_class,
    ]


def error(version: int, req_id: int, code: int, text: str) -> list[Any]:
    fields: list[Any] = [Outgoing.ERR_MSG, 2, req_id, code, text]
    if version >= 166:
        fields.append("")  # advancedOrderRejectJson
    return fields


def order_status(o: OrderRecord) -> list[Any]:
    return [
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
    ]


def position(pos: PositionRecord) -> list[Any]:
    return [
        Outgoing.POSITION_DATA,
        3,
        pos.account,
        *contract_fields(pos.contract),
        pos.position,
        pos.avg_cost,
    ]


def portfolio(pos: PositionRecord, mark: float) -> list[Any]:
    """updatePortfolio, the position valued at ``mark``."""
    c = pos.contract
    value = pos.position * mark * c.multiplier_value
    unrealized = value - pos.position * pos.avg_cost
    return [
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
    ]


def contract_details(version: int, req_id: int, c: TwsContract) -> list[Any]:
    v = version
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
    return fields


def tick_prices(req_id: int, q: Quote) -> list[list[Any]]:
    """tickPrice messages for a quote: bid, ask (price -1 when absent), then the last trade."""
    out: list[list[Any]] = []
    for tick_type, price, size in ((1, q.bid, q.bid_size), (2, q.ask, q.ask_size)):
        if price is None:
            out.append([Outgoing.TICK_PRICE, 6, req_id, tick_type, -1, 0, 0])
        else:
            shown = UNLIMITED_DISPLAY_SIZE if size is None else size
            out.append([Outgoing.TICK_PRICE, 6, req_id, tick_type, price, shown, 0])
    if q.last is not None:
        out.append([Outgoing.TICK_PRICE, 6, req_id, 4, q.last, q.last_size, 0])
    return out


def execution_details(version: int, req_id: int, ex: ExecutionRecord) -> list[Any]:
    fields: list[Any] = [
        Outgoing.EXECUTION_DATA,
        req_id,
        ex.order_id,
        *contract_fields(ex.contract),
        ex.exec_id,
        tws_time(ex.time),
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
    if version >= 178:
        fields.append(0)  # pendingPriceRevision
    return fields


def commission_report(ex: ExecutionRecord) -> list[Any]:
    return [
        Outgoing.COMMISSION_REPORT,
        1,
        ex.exec_id,
        ex.commission,
        "USD",
        UNSET_DOUBLE if ex.realized_pnl is None else ex.realized_pnl,
        UNSET_DOUBLE,  # yield
        "",  # yieldRedemptionDate
    ]


@dataclass(frozen=True)
class WhatIf:
    """The margin and commission a whatIf openOrder reports."""

    margin_before: float
    margin_change: float
    equity: float
    commission: float


def open_order(version: int, o: OrderRecord, what_if: WhatIf | None = None) -> list[Any]:
    """openOrder as ib_async's ``Decoder.openOrder`` reads it at the connection's version."""
    v = version
    fields: list[Any] = [
        Outgoing.OPEN_ORDER,
        o.order_id,
        *contract_fields(o.contract),
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
        before, change = what_if.margin_before, what_if.margin_change
        equity, commission = what_if.equity, what_if.commission
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
    return fields
