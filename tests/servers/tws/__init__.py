"""A TWS-protocol test server on loopback: enough of the TWS API for the unmodified ib_async client.

Tests and developers need a TWS / IB Gateway that places, fills, cancels and rejects orders
deterministically, and can drop us, without an IB account or network. ``TwsTestServer`` speaks
the TWS socket protocol as ib_async 2.1.0 implements it, every version from 157 to 178 (ib_async's
MinClientVersion .. MaxClientVersion); the default is **157**, the smallest messages ib_async
accepts and a version ib_insync (<= 176) accepts as well. ``python -m tests.servers.tws --port N``
runs it by hand with a small NQ book.

Three modules: ``protocol`` (framing, message ids, request decoding, reply encoding per version),
``state`` (the book: contracts, quotes, orders, fills, positions, account values; no I/O) and
``server`` (sockets, sessions, dispatch).

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
"""

from tests.servers.tws.protocol import (
    CLIENT_ID_IN_USE,
    DEFAULT_SERVER_VERSION,
    MAX_SERVER_VERSION,
    MIN_SERVER_VERSION,
    Incoming,
    Outgoing,
)
from tests.servers.tws.server import ServerStats, TwsTestServer
from tests.servers.tws.state import (
    ExecutionRecord,
    OrderRecord,
    PositionRecord,
    Quote,
    TwsContract,
    TwsServerError,
)

__all__ = [
    "CLIENT_ID_IN_USE",
    "DEFAULT_SERVER_VERSION",
    "MAX_SERVER_VERSION",
    "MIN_SERVER_VERSION",
    "ExecutionRecord",
    "Incoming",
    "OrderRecord",
    "Outgoing",
    "PositionRecord",
    "Quote",
    "ServerStats",
    "TwsContract",
    "TwsServerError",
    "TwsTestServer",
]
