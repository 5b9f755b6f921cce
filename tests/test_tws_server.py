"""The TWS test server speaks TWS to the unmodified ib_async client: connect (sync and async, every
protocol version ib_async accepts), contract qualification, market and limit orders filled from
the quotes a test sets, partial fills, cancels, rejections, positions and commissions, a dropped
connection reconciled on reconnect, state preloaded before the client connects."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from ib_async import (
    IB,
    ExecutionFilter,
    Future,
    FuturesOption,
    LimitOrder,
    MarketOrder,
    StopOrder,
)

from tests.servers.tws import (
    CLIENT_ID_IN_USE,
    Incoming,
    TwsServerError,
    TwsTestServer,
)

ACCOUNT = "DU1234567"
FUT = 1001  # NQ Jun 2026
CALL = 2001  # NQ 20260417 18250 C
PUT = 2002  # NQ 20260417 18250 P
CLOCK = 1_776_432_600.0  # 2026-04-17 13:30:00 UTC
FEE = 2.25
ROOT = Path(__file__).resolve().parents[1]


def nq_call(strike: float = 18250.0, right: str = "C") -> FuturesOption:
    return FuturesOption("NQ", "20260417", strike, right, "CME", multiplier="20", currency="USD")


def make_server(**kw) -> TwsTestServer:
    server = TwsTestServer(commission_per_contract=FEE, clock=lambda: CLOCK, **kw)
    server.add_future(FUT, "NQ", "20260619")
    server.add_contract(CALL, strike=18250.0, right="C", under_con_id=FUT)
    server.add_contract(PUT, strike=18250.0, right="P", under_con_id=FUT)
    return server


@pytest.fixture
def loop():
    """A fresh event loop for ib_async's sync API (it runs the thread's current loop); closed
    afterwards, leaving no current loop behind, as ``asyncio.run`` does."""
    lp = asyncio.new_event_loop()
    asyncio.set_event_loop(lp)
    yield lp
    lp.run_until_complete(asyncio.sleep(0.01))  # let closed transports finish
    lp.close()
    asyncio.set_event_loop(None)


@pytest.fixture
def server():
    with make_server() as srv:
        yield srv


@pytest.fixture
def ib(server, loop):
    client = IB()
    yield client
    client.disconnect()


@pytest.fixture(autouse=True)
def _no_decoding_trouble(caplog):
    """ib_async logs (rather than raises) what it cannot decode or route: fail on that."""
    caplog.set_level(logging.INFO, logger="ib_async")
    yield
    bad = [
        r.getMessage()
        for r in caplog.records
        if r.name == "ib_async.Decoder"
        or "No order found" in r.getMessage()
        or "Unknown reqId" in r.getMessage()
    ]
    assert not bad, bad


def connect(ib: IB, server: TwsTestServer, client_id: int = 1) -> IB:
    ib.connect("127.0.0.1", server.port, clientId=client_id, timeout=5)
    return ib


def wait_until(ib: IB, cond, timeout: float = 2.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        ib.sleep(0.005)


def settled(trade) -> bool:
    """Done, and every fill has its commission report."""
    return trade.isDone() and all(f.commissionReport.execId for f in trade.fills)


def qualified(ib: IB, contract=None):
    [c] = ib.qualifyContracts(contract or nq_call())
    assert c is not None
    return c


# ------------------------------------------------------------------------------- connect
def test_sync_connect_gets_accounts_and_every_startup_reply(server, ib):
    connect(ib, server)
    assert ib.isConnected()
    assert ib.client.serverVersion() == 157
    assert ib.managedAccounts() == [ACCOUNT]
    values = {(v.tag, v.currency): v.value for v in ib.accountValues(ACCOUNT)}
    assert values[("NetLiquidation", "USD")] == "1000000"
    assert values[("AvailableFunds", "USD")] == "1000000"
    startup = {
        Incoming.START_API,
        Incoming.REQ_POSITIONS,
        Incoming.REQ_OPEN_ORDERS,
        Incoming.REQ_COMPLETED_ORDERS,
        Incoming.REQ_ACCOUNT_UPDATES,
        Incoming.REQ_ACCOUNT_UPDATES_MULTI,
        Incoming.REQ_EXECUTIONS,
    }
    assert startup <= set(server.received_ids())
    assert server.unhandled == []
    assert ib.reqCurrentTime() == datetime.fromtimestamp(CLOCK, UTC)
    assert server.connected_client_ids() == [1]
    assert server.stats.connections == 1


def test_connect_async_at_the_newest_version_orders_and_fills():
    async def session(port: int) -> tuple[int, object, list]:
        ib = IB()
        await ib.connectAsync("127.0.0.1", port, clientId=7, timeout=5)
        try:
            [c] = await ib.qualifyContractsAsync(nq_call())
            trade = ib.placeOrder(c, MarketOrder("SELL", 1, orderRef="async-1"))
            while not settled(trade):
                await asyncio.sleep(0.005)
            fills = await ib.reqExecutionsAsync(ExecutionFilter(clientId=7))
            return ib.client.serverVersion(), trade, fills
        finally:
            ib.disconnect()

    with make_server(server_version=178) as server:
        server.set_quote(CALL, 100.0, 101.0)
        version, trade, fills = asyncio.run(asyncio.wait_for(session(server.port), 5))
    assert version == 178
    assert trade.orderStatus.status == "Filled"
    assert trade.orderStatus.avgFillPrice == 100.0  # a sell fills at the bid
    assert trade.fills[0].execution.side == "SLD"
    assert [f.execution.execId for f in fills] == ["0001.01"]
    assert fills[0].execution.pendingPriceRevision is False  # a version 178 field


@pytest.mark.parametrize("version", [157, 163, 164, 170, 176, 177, 178])
def test_every_version_ib_async_accepts_decodes_cleanly(version, loop):
    with make_server(server_version=version) as server:
        server.set_quote(CALL, 100.0, 101.0)
        ib = IB()
        try:
            connect(ib, server)
            assert ib.client.serverVersion() == version
            c = qualified(ib)
            assert (c.conId, c.localSymbol, c.tradingClass) == (CALL, "NQJ6 C18250", "NQ")
            filled = ib.placeOrder(c, MarketOrder("BUY", 1))
            resting = ib.placeOrder(c, LimitOrder("BUY", 1, 95.0, orderRef="rest"))
            wait_until(ib, lambda: settled(filled) and resting.orderStatus.status == "Submitted")
            assert [t.order.orderRef for t in ib.reqAllOpenOrders()] == ["rest"]
            assert ib.whatIfOrder(c, MarketOrder("BUY", 2)).commission == 2 * FEE
        finally:
            ib.disconnect()


def test_refuses_non_loopback_hosts_and_unsupported_versions():
    with pytest.raises(TwsServerError, match="loopback"):
        TwsTestServer("0.0.0.0")
    with pytest.raises(TwsServerError, match="157..178"):
        TwsTestServer(server_version=150)


# ------------------------------------------------------------------------------- contracts
def test_qualifies_fop_and_future_and_refuses_unknown(server, ib):
    connect(ib, server)
    errors = []
    ib.errorEvent += lambda req_id, code, text, contract: errors.append((code, text))
    call = qualified(ib)
    assert call.conId == CALL
    assert (call.secType, call.right, call.strike, call.multiplier) == ("FOP", "C", 18250.0, "20")
    assert call.localSymbol == "NQJ6 C18250"
    fut = qualified(ib, Future("NQ", "202606", "CME"))  # a contract month matches
    assert (fut.conId, fut.localSymbol) == (FUT, "NQM6")
    details = ib.reqContractDetails(nq_call(right="P"))
    assert [d.contract.conId for d in details] == [PUT]
    assert details[0].underConId == FUT
    chain = ib.reqContractDetails(FuturesOption("NQ", "20260417", exchange="CME"))
    assert sorted(d.contract.conId for d in chain) == [CALL, PUT]

    assert ib.qualifyContracts(nq_call(strike=18300.0)) == [None]
    assert ib.qualifyContracts(nq_call().__class__("ES", "20260417", 18250.0, "C", "CME")) == [None]
    assert errors == [
        (200, "No security definition has been found for the request"),
        (200, "No security definition has been found for the request"),
    ]


# ------------------------------------------------------------------------------- orders
def test_market_order_lifecycle_with_commission_positions_and_pnl(server, ib):
    server.set_quote(CALL, 100.0, 101.0)
    connect(ib, server)
    c = qualified(ib)
    buy = ib.placeOrder(c, MarketOrder("BUY", 2, orderRef="ifd-1", account=ACCOUNT))
    wait_until(ib, lambda: settled(buy), what="the buy to fill")
    st = buy.orderStatus
    assert (st.status, st.filled, st.remaining, st.avgFillPrice) == ("Filled", 2, 0, 101.0)
    assert [(e.status, e.message) for e in buy.log] == [
        ("PendingSubmit", ""),
        ("Submitted", ""),
        ("Submitted", "Fill 2.0@101.0"),  # ib_async logs the execution under the old status
        ("Filled", ""),
    ]
    [fill] = buy.fills
    ex = fill.execution
    assert (ex.execId, ex.side, ex.shares, ex.price, ex.exchange) == (
        "0001.01",
        "BOT",
        2,
        101.0,
        "CME",
    )
    assert (ex.acctNumber, ex.orderRef, ex.cumQty, ex.avgPrice) == (ACCOUNT, "ifd-1", 2, 101.0)
    assert ex.time == datetime.fromtimestamp(CLOCK, UTC)
    assert fill.commissionReport.commission == 2 * FEE
    assert fill.commissionReport.currency == "USD"
    avg_cost = 101.0 * 20 + FEE  # IB's avgCost: per contract, multiplier and commission in
    wait_until(ib, lambda: ib.positions())
    [pos] = ib.positions()
    assert (pos.account, pos.contract.conId, pos.position, pos.avgCost) == (
        ACCOUNT,
        CALL,
        2,
        avg_cost,
    )
    [item] = ib.portfolio()
    assert (item.position, item.marketPrice, item.averageCost) == (2, 100.5, avg_cost)

    server.set_quote(CALL, 103.0, 104.0)
    sell = ib.placeOrder(c, MarketOrder("SELL", 2, orderRef="ifd-2"))
    wait_until(ib, lambda: settled(sell), what="the sell to fill")
    report = sell.fills[0].commissionReport
    assert sell.fills[0].execution.execId == "0002.01"
    assert report.realizedPNL == pytest.approx(2 * (103.0 * 20 - avg_cost) - 2 * FEE)
    wait_until(ib, lambda: not ib.positions(), what="the position to close")
    [server_pos] = server.positions()
    assert server_pos.position == 0 and server_pos.realized_pnl == pytest.approx(71.0)
    assert [e.exec_id for e in server.executions()] == ["0001.01", "0002.01"]


def test_limit_orders_rest_until_a_quote_makes_them_marketable(server, ib):
    server.set_quote(CALL, 100.0, 101.0)
    connect(ib, server)
    c = qualified(ib)
    buy = ib.placeOrder(c, LimitOrder("BUY", 1, 100.5))
    sell = ib.placeOrder(c, LimitOrder("SELL", 1, 102.0))
    wait_until(ib, lambda: buy.orderStatus.status == sell.orderStatus.status == "Submitted")
    assert [o.status for o in server.orders()] == ["Submitted", "Submitted"]
    assert server.executions() == [] and buy.fills == []

    server.set_quote(CALL, 100.0, 100.25)  # ask below the buy limit: fills at the ask
    wait_until(ib, lambda: settled(buy), what="the buy to fill")
    assert buy.orderStatus.avgFillPrice == 100.25
    assert sell.orderStatus.status == "Submitted"

    server.set_quote(CALL, 102.5, 103.0)  # bid above the sell limit: fills at the bid
    wait_until(ib, lambda: settled(sell), what="the sell to fill")
    assert sell.orderStatus.avgFillPrice == 102.5
    assert [(e.side, e.price) for e in server.executions()] == [("BOT", 100.25), ("SLD", 102.5)]


def test_partial_fills_from_quote_size_and_in_parts(server, ib):
    connect(ib, server)
    c = qualified(ib)
    trade = ib.placeOrder(c, MarketOrder("BUY", 3))  # no quote yet: rests
    wait_until(ib, lambda: trade.orderStatus.status == "Submitted")
    server.set_quote(CALL, 100.0, 101.0, ask_size=1)
    wait_until(ib, lambda: trade.orderStatus.filled == 1)
    assert trade.orderStatus.status == "Submitted" and trade.orderStatus.remaining == 2
    server.fill_in_parts(2)
    server.set_quote(CALL, 100.0, 101.5)
    wait_until(ib, lambda: settled(trade))
    assert [(f.execution.execId, f.execution.shares, f.execution.price) for f in trade.fills] == [
        ("0001.01", 1, 101.0),
        ("0001.02", 1, 101.5),
        ("0001.03", 1, 101.5),
    ]
    assert trade.orderStatus.avgFillPrice == pytest.approx((101.0 + 2 * 101.5) / 3)
    assert [f.commissionReport.commission for f in trade.fills] == [FEE, FEE, FEE]


def test_cancel_a_resting_order(server, ib):
    server.set_quote(CALL, 100.0, 101.0)
    connect(ib, server)
    errors = []
    ib.errorEvent += lambda req_id, code, text, contract: errors.append((req_id, code, text))
    trade = ib.placeOrder(qualified(ib), LimitOrder("BUY", 1, 99.0))
    wait_until(ib, lambda: trade.orderStatus.status == "Submitted")
    ib.cancelOrder(trade.order)
    wait_until(ib, lambda: errors, what="error 202")
    assert trade.orderStatus.status == "Cancelled"
    assert errors == [(trade.order.orderId, 202, "Order Canceled - reason:")]
    assert [o.status for o in server.orders()] == ["Cancelled"]
    server.set_quote(CALL, 98.0, 98.5)  # marketable now, but cancelled
    assert server.executions() == []


def test_rejections_as_tws_sends_them(server, ib):
    server.set_quote(CALL, 100.0, 101.0)
    connect(ib, server)
    errors = []
    ib.errorEvent += lambda req_id, code, text, contract: errors.append((req_id, code))
    c = qualified(ib)
    reason = "Order rejected - reason:YOUR ORDER IS NOT ACCEPTED. INSUFFICIENT EQUITY"
    server.reject_next(201, reason)
    rejected = ib.placeOrder(c, MarketOrder("BUY", 1, orderRef="too-big"))
    wait_until(ib, rejected.isDone, what="the rejection")
    wait_until(ib, lambda: rejected.orderStatus.status == "Inactive")
    # the error comes first (ib_async cancels the trade and logs the code), then Inactive
    assert [(e.status, e.errorCode) for e in rejected.log] == [
        ("PendingSubmit", 0),
        ("Cancelled", 201),
        ("Inactive", 0),
    ]
    assert reason in rejected.log[1].message
    assert rejected.fills == []

    unknown = ib.placeOrder(FuturesOption(conId=999, exchange="CME"), MarketOrder("BUY", 1))
    stop = ib.placeOrder(c, StopOrder("BUY", 1, 105.0))
    ok = ib.placeOrder(c, MarketOrder("BUY", 1))  # reject_next was for one order only
    wait_until(ib, lambda: unknown.isDone() and stop.isDone() and settled(ok))
    assert unknown.orderStatus.status == "Cancelled" and unknown.log[-1].errorCode == 200
    assert stop.orderStatus.status == "Inactive" and stop.log[1].errorCode == 201
    assert "STP" in stop.log[1].message
    assert ok.orderStatus.status == "Filled"
    assert errors == [
        (rejected.order.orderId, 201),
        (unknown.order.orderId, 200),
        (stop.order.orderId, 201),
    ]
    assert [e.order_id for e in server.executions()] == [ok.order.orderId]


# ------------------------------------------------------------------------------- reconnect
def test_dropped_connection_then_reconnect_reconciles(server, ib):
    server.set_quote(CALL, 100.0, 101.0)
    connect(ib, server)
    c = qualified(ib)
    bought = ib.placeOrder(c, MarketOrder("BUY", 1, orderRef="entry"))
    resting = ib.placeOrder(c, LimitOrder("BUY", 2, 99.0, orderRef="add"))
    wait_until(ib, lambda: settled(bought) and resting.orderStatus.status == "Submitted")
    resting_id = resting.order.orderId
    dropped = []
    ib.disconnectedEvent += lambda: dropped.append(True)

    assert server.drop_connections() == 1
    # ib_async fails the blocking call that is running when the socket drops (here ib.sleep):
    # Wrapper.connectionClosed emits globalErrorEvent, which util.run raises.
    raised = []
    deadline = time.monotonic() + 2
    while not dropped and time.monotonic() < deadline:
        try:
            ib.sleep(0.005)
        except ConnectionError as exc:
            raised.append(str(exc))
    assert dropped and raised == ["Socket disconnect"]
    assert not ib.isConnected()
    assert server.connected_client_ids() == [] and server.stats.drops == 1
    server.set_quote(CALL, 98.5, 99.0, ask_size=1)  # half the resting order fills meanwhile

    connect(ib, server)  # the same client id, as a restarted trader does
    assert ib.isConnected()
    [trade] = ib.openTrades()
    assert (trade.order.orderId, trade.order.orderRef, trade.order.lmtPrice) == (
        resting_id,
        "add",
        99.0,
    )
    assert (trade.orderStatus.status, trade.orderStatus.filled) == ("Submitted", 1)
    assert sorted(f.execution.execId for f in ib.fills()) == ["0001.01", "0002.01"]
    assert [f.execution.execId for f in trade.fills] == ["0002.01"]
    assert {p.contract.conId: p.position for p in ib.positions()} == {CALL: 2}
    assert {p.contract.con_id: p.position for p in server.positions()} == {CALL: 2}

    server.set_quote(CALL, 98.5, 99.0)  # the rest fills, live to the reconnected client
    wait_until(ib, lambda: trade.orderStatus.status == "Filled", what="the rest to fill")
    wait_until(ib, lambda: ib.positions()[0].position == 3)
    assert ib.openTrades() == []
    assert Incoming.PLACE_ORDER in server.received_ids()


def test_preloaded_state_is_reported_at_connect_without_any_order_sent(server, ib):
    server.preload_position(PUT, -3, avg_cost=1500.0)
    server.preload_open_order(CALL, "SELL", 1, "LMT", 120.0, order_id=7, order_ref="ifd-42")
    connect(ib, server)
    [pos] = ib.positions(ACCOUNT)
    assert (pos.contract.conId, pos.position, pos.avgCost) == (PUT, -3, 1500.0)
    [trade] = ib.openTrades()
    assert (trade.order.orderId, trade.order.orderRef, trade.order.action) == (7, "ifd-42", "SELL")
    assert trade.orderStatus.status == "Submitted" and trade.contract.conId == CALL
    assert ib.client.getReqId() >= 8  # ids continue after the preloaded order
    assert Incoming.PLACE_ORDER not in server.received_ids()

    server.set_quote(CALL, 121.0, 122.0)  # the preloaded order is live
    wait_until(ib, lambda: trade.orderStatus.status == "Filled")
    assert trade.fills[0].execution.price == 121.0


def test_other_clients_orders_are_only_in_all_open_orders(server, loop):
    server.preload_open_order(CALL, "BUY", 1, "LMT", 90.0, client_id=5)
    ib = IB()
    try:
        connect(ib, server, client_id=1)
        assert ib.openTrades() == []
        assert [t.order.clientId for t in ib.reqAllOpenOrders()] == [5]
    finally:
        ib.disconnect()


# ------------------------------------------------------------------------------- the rest
def test_unknown_request_is_recorded_and_the_connection_kept(server, ib):
    connect(ib, server)
    ib.client.reqFamilyCodes()  # msgId 80: not served
    wait_until(ib, lambda: server.unhandled, what="the request to be recorded")
    assert server.unhandled == [(80, ())]
    assert ib.isConnected()
    assert ib.reqCurrentTime() == datetime.fromtimestamp(CLOCK, UTC)


def test_market_data_snapshot_and_stream(server, ib):
    server.set_quote(CALL, 100.0, 101.0, bid_size=3, ask_size=4)
    connect(ib, server)
    c = qualified(ib)
    [snap] = ib.reqTickers(c)
    assert (snap.bid, snap.bidSize, snap.ask, snap.askSize) == (100.0, 3, 101.0, 4)
    ticker = ib.reqMktData(c)
    wait_until(ib, lambda: ticker.bid == 100.0)
    server.set_quote(CALL, 100.5, 101.25)
    wait_until(ib, lambda: ticker.ask == 101.25)
    assert ticker.bid == 100.5 and ticker.askSize == 100  # no size given: shown as 100
    ib.cancelMktData(c)


def test_what_if_order_places_nothing(server, ib):
    server.set_quote(CALL, 100.0, 101.0)
    connect(ib, server)
    state = ib.whatIfOrder(qualified(ib), MarketOrder("BUY", 3))
    assert state.commission == 3 * FEE
    assert float(state.initMarginChange) == 101.0 * 20 * 3
    assert server.orders() == [] and server.executions() == []


def _frame(text: str) -> bytes:
    return struct.pack(">I", len(text)) + text.encode()


def _read(sock: socket.socket) -> list[str] | None:
    def exactly(n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    header = exactly(4)
    if header is None:
        return None
    payload = exactly(struct.unpack(">I", header)[0])
    return None if payload is None else payload.decode().split("\0")[:-1]


def _raw_handshake(port: int, versions: str = "v157..178") -> tuple[socket.socket, list[str]]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    sock.sendall(b"API\0" + _frame(versions))
    return sock, _read(sock) or []


def test_raw_protocol_client_id_in_use_and_version_refusal(server, ib):
    connect(ib, server, client_id=3)
    sock, hello = _raw_handshake(server.port)
    with sock:
        assert hello[0] == "157"
        sock.sendall(_frame("71\0" + "2\0" + "3\0" + "\0"))  # startApi, client id 3 again
        assert _read(sock) == ["4", "2", "-1", "326", CLIENT_ID_IN_USE]
        assert _read(sock) is None  # and closed
    sock, hello = _raw_handshake(server.port, "v100..150")
    with sock:
        assert hello[0] == "157" and _read(sock) is None
    assert server.stats.refused == 2
    assert ib.isConnected() and server.connected_client_ids() == [3]


@pytest.mark.timeout(30)
def test_main_serves_on_loopback_and_prints_the_port():
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.servers.tws", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+) \(server version 157", line)
        assert m, line
        sock, hello = _raw_handshake(int(m[1]))
        with sock:
            assert hello[0] == "157"
            sock.sendall(_frame("71\0" + "2\0" + "1\0" + "\0"))
            assert _read(sock) == ["9", "1", "1"]
            assert _read(sock) == ["15", "1", ACCOUNT]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
