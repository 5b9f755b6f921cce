"""IFD's IB adapter and trader through the unmodified ib_async client and the loopback TWS test
server: an order's lifecycle into the ledger (commission from IB's report), a rejection, a cancel,
a dropped connection reconciled on reconnect, the emergency stop refusing an order (nothing on the
wire), a live account refused without explicit consent, and the same signals through the paper
broker and IB giving the same ledger."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from ifd_core.broker.base import OptionContract, OrderRefused, OrderRequest
from ifd_core.broker.ib_broker import IBBroker, LiveTradingRefused
from ifd_core.broker.paper_broker import PaperBroker
from ifd_core.broker.trader import SignalTrader, TraderConfig
from ifd_core.ops.resilience import Breaker
from ifd_core.settings import BreakerSettings, IBSettings
from ifd_core.trading.halt import EmergencyStop
from ifd_core.trading.risk import RiskLimits
from tests.servers.tws import Incoming, TwsTestServer

NS = 1_000_000_000
T0 = 1_776_432_600 * NS
FEE = 2.25
CALL = OptionContract(11, "QN1J6 C18250", "QN1", dt.date(2026, 4, 17), 18250.0, "C")
PUT = OptionContract(12, "QN1J6 P18250", "QN1", dt.date(2026, 4, 17), 18250.0, "P")
CON = {11: 2001, 12: 2002}


def sig(n: int, direction: str = "BUY") -> dict:
    return {"signal_id": f"s{n}", "direction": direction, "confidence": 0.8, "config_version": "cv"}


def make_server(accounts=("DU1234567",)) -> TwsTestServer:
    srv = TwsTestServer(commission_per_contract=FEE, accounts=accounts)
    srv.add_future(1001, "NQ", "20260619")
    srv.add_contract(2001, strike=18250.0, right="C", trading_class="QN1", under_con_id=1001)
    srv.add_contract(2002, strike=18250.0, right="P", trading_class="QN1", under_con_id=1001)
    return srv


@pytest.fixture
def server():
    with make_server() as srv:
        yield srv


class Quotes:
    """The touch both the server (IB's market) and the trader's sizing see."""

    def __init__(self, server: TwsTestServer | None, paper: PaperBroker | None = None) -> None:
        self.server, self.paper, self.q = server, paper, {}

    def set(self, iid: int, bid: float, ask: float) -> None:
        self.q[iid] = (bid, ask)
        if self.server is not None:
            self.server.set_quote(CON[iid], bid, ask)
        if self.paper is not None:
            self.paper.set_quote(iid, bid, ask)


def ib_broker(server: TwsTestServer, **kw) -> IBBroker:
    settings = IBSettings(port=server.port, client_id=7, connect_timeout_s=5, **kw)
    return IBBroker(settings, confirm_live=kw.pop("confirm", False))


def trader(broker, quotes: Quotes, halted=lambda: None) -> SignalTrader:
    return SignalTrader(
        "v3",
        broker,
        Breaker(f"broker:{broker.name}", BreakerSettings(), exclude=(OrderRefused,)),
        TraderConfig(stop_fraction=0.1, target_fraction=0.2, time_stop_s=600),
        RiskLimits(max_contracts=15, risk_budget_fraction=0.01, max_loss_per_trade=1000),
        capital=100_000.0,
        quote=quotes.q.get,
        halted=halted,
        run_id="r1",
    )


def settle(t: SignalTrader, done, timeout: float = 5.0, now: int = T0):
    """Pump broker events until ``done(ledger)`` holds (IB answers asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        t.pump(now)
        led = t.ledger()
        if done(led):
            return led
        if time.monotonic() > deadline:
            raise AssertionError(f"not settled in {timeout} s: {led.orders}")
        if isinstance(t.broker, IBBroker):
            t.broker.wait(0.05)


def placed(server: TwsTestServer) -> int:
    return sum(1 for msg_id, _ in server.received if msg_id == Incoming.PLACE_ORDER)


def test_market_order_lifecycle_into_the_ledger(server, loop):
    broker = ib_broker(server)
    rec = broker.connect()
    assert rec.accounts == ("DU1234567",) and broker.mode == "ib_paper"
    quotes = Quotes(server)
    quotes.set(11, 49.0, 50.0)
    t = trader(broker, quotes)
    oid = t.on_signal(sig(1), CALL, T0)
    led = settle(t, lambda led: led.fills)
    (order,) = led.orders
    assert order["order_id"] == oid and order["status"] == "filled"
    assert order["qty"] == order["filled_qty"] == 10 and order["avg_price"] == 50.0
    (fill,) = led.fills
    assert fill["price"] == 50.0 and fill["qty"] == 10 and fill["side"] == "B"
    assert fill["fee"] == pytest.approx(10 * FEE)  # from IB's commission report
    assert fill["mode"] == "ib_paper" and fill["liquidity"] == "broker"
    assert [(p.contract.conId, p.position) for p in broker.ib.positions()] == [(2001, 10.0)]
    quotes.set(11, 60.5, 61.0)
    t.on_trade(11, 60.5, T0 + NS)  # a trade through the 60-point target
    led = settle(t, lambda led: led.positions, now=T0 + NS)
    (pos,) = led.positions
    assert pos["exit_reason"] == "target" and pos["exit_price"] == 60.5
    assert pos["net_pnl"] == pytest.approx(10.5 * 10 * 20 - 2 * 10 * FEE)
    assert not any(p.position for p in broker.ib.positions())  # flat again
    broker.close()


def test_a_rejection_is_a_rejected_order_with_ibs_reason(server, loop):
    broker = ib_broker(server)
    broker.connect()
    quotes = Quotes(server)
    quotes.set(11, 49.0, 50.0)
    server.reject_next(201, "Order rejected - reason: margin")
    t = trader(broker, quotes)
    t.on_signal(sig(1), CALL, T0)
    led = settle(t, lambda led: led.orders[0]["status"] != "working")
    assert led.orders[0]["status"] == "rejected" and "201" in led.orders[0]["reason"]
    assert led.fills == []
    broker.close()


def test_an_unknown_contract_is_refused_before_sending(server, loop):
    broker = ib_broker(server)
    broker.connect()
    nope = OptionContract(99, "QN1J6 C99999", "QN1", dt.date(2026, 4, 17), 99999.0, "C")
    with pytest.raises(OrderRefused, match="no contract"):
        broker.place(OrderRequest("x1", "s", "v3", nope, "B", 1, "market", "entry", T0))
    assert placed(server) == 0
    broker.close()


def test_cancel_and_reconnect_reconcile_open_orders_and_positions(server, loop):
    broker = ib_broker(server)
    broker.connect()
    quotes = Quotes(server)
    quotes.set(11, 49.0, 50.0)
    quotes.set(12, 30.0, 31.0)
    t = trader(broker, quotes)
    t.on_signal(sig(1), CALL, T0)  # fills: a position
    settle(t, lambda led: led.fills)
    rest = OrderRequest("r1-rest", "s2", "v3", PUT, "B", 2, "limit", "entry", T0, 25.0)
    broker.place(rest)  # below the ask: rests
    gone = OrderRequest("r1-gone", "s3", "v3", PUT, "B", 1, "limit", "entry", T0, 24.0)
    broker.place(gone)
    broker.wait(0.2)
    broker.cancel("r1-gone")
    deadline = time.monotonic() + 5
    statuses = {}
    while statuses.get("r1-gone") != "cancelled" and time.monotonic() < deadline:
        for u in broker.drain().updates:
            statuses[u.order_id] = u.status
        broker.wait(0.05)
    assert statuses["r1-gone"] == "cancelled" and statuses["r1-rest"] == "working"

    assert server.drop_connections() == 1
    deadline = time.monotonic() + 5
    while broker.connected and time.monotonic() < deadline:
        broker.wait(0.05)
    assert not broker.connected
    before = placed(server)
    with pytest.raises(OrderRefused, match="not connected"):
        broker.place(OrderRequest("r1-late", "s4", "v3", PUT, "B", 1, "market", "entry", T0))
    assert placed(server) == before  # nothing went out while disconnected
    rec = broker.connect()
    assert [u.order_id for u in rec.open_orders] == ["r1-rest"]
    assert rec.open_orders[0].status == "working"
    assert rec.positions == {11: 10}
    assert rec.unknown_orders == ()
    broker.close()


def test_the_emergency_stop_refuses_the_order_and_nothing_reaches_ib(server, loop, tmp_path):
    stop = EmergencyStop(tmp_path)
    stop.halt("test: fat finger", by="test")
    broker = ib_broker(server)
    broker.connect()
    quotes = Quotes(server)
    quotes.set(11, 49.0, 50.0)
    t = trader(broker, quotes, halted=stop.reason)
    t.on_signal(sig(1), CALL, T0)
    (order,) = t.ledger().orders
    assert order["status"] == "rejected" and order["reason"] == "emergency stop: test: fat finger"
    broker.wait(0.2)
    assert placed(server) == 0
    broker.close()


def test_a_live_account_needs_the_setting_and_a_confirmation(loop):
    with make_server(accounts=("U7654321",)) as srv:
        with pytest.raises(LiveTradingRefused, match="live account"):
            ib_broker(srv).connect()
        with pytest.raises(LiveTradingRefused):  # the setting alone is not enough
            ib_broker(srv, live_trading_enabled=True).connect()
        settings = IBSettings(
            port=srv.port, client_id=8, connect_timeout_s=5, live_trading_enabled=True
        )
        broker = IBBroker(settings, confirm_live=True)
        broker.connect()
        assert broker.mode == "ib"
        broker.close()


def test_paper_and_ib_give_the_same_ledger_for_the_same_signals(server, loop):
    paper = PaperBroker(fee_per_contract=FEE)
    paper.connect()
    ib = ib_broker(server)
    ib.connect()
    runs = {}
    for name, broker in (("paper", paper), ("ib", ib)):
        quotes = Quotes(server if name == "ib" else None, paper if name == "paper" else None)
        quotes.set(11, 49.0, 50.0)
        quotes.set(12, 30.0, 31.0)
        t = trader(broker, quotes)
        t.on_signal(sig(1), CALL, T0)
        t.on_signal(sig(2, "SELL"), PUT, T0)
        settle(t, lambda led: len(led.fills) == 2)
        quotes.set(11, 44.0, 44.5)  # the call's stop
        t.on_trade(11, 44.0, T0 + NS)
        t.flatten(T0 + 2 * NS)  # the put at the session end
        runs[name] = settle(t, lambda led: len(led.positions) == 2, now=T0 + 2 * NS)
    p, i = runs["paper"], runs["ib"]

    def shape(led, table, keys):
        return sorted(tuple(r[k] for k in keys) for r in getattr(led, table))

    order_keys = [
        "signal_id",
        "purpose",
        "side",
        "type",
        "qty",
        "status",
        "filled_qty",
        "avg_price",
    ]
    assert shape(p, "orders", order_keys) == shape(i, "orders", order_keys)
    fill_keys = ["signal_id", "side", "price", "qty", "fee"]
    assert shape(p, "fills", fill_keys) == shape(i, "fills", fill_keys)
    pos_keys = ["signal_id", "side", "qty", "entry_price", "exit_price", "exit_reason", "net_pnl"]
    assert shape(p, "positions", pos_keys) == shape(i, "positions", pos_keys)
    for table in ("orders", "fills", "positions"):
        assert set(getattr(p, table)[0]) == set(getattr(i, table)[0])
    assert {r["mode"] for r in i.fills} == {"ib_paper"} and {r["mode"] for r in p.fills} == {
        "paper"
    }
    ib.close()


def test_ib_check_reports_the_account_and_sends_nothing(server):
    import json

    from typer.testing import CliRunner

    from ifd_cli.app import app

    env = {"IFD_IB__PORT": str(server.port), "IFD_IB__CONNECT_TIMEOUT_S": "5"}
    res = CliRunner().invoke(app, ["ib", "check", "--json"], env=env)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["account"] == "DU1234567" and doc["mode"] == "ib_paper"
    assert doc["open_orders"] == [] and doc["not_placed_by_ifd"] == []
    assert placed(server) == 0
    with make_server(accounts=("U7654321",)) as live:
        env["IFD_IB__PORT"] = str(live.port)
        res = CliRunner().invoke(app, ["ib", "check"], env=env)
        assert res.exit_code == 2 and "IFD_IB__LIVE_TRADING_ENABLED" in res.output


def test_ifd_live_with_ib_refuses_to_start_without_its_broker(tmp_path, loop):
    """execution.broker=ib: no TWS listening (exit 5) or a live account without consent (exit 2)
    stops `ifd live` before it reads a record, with the reason."""
    import socket

    from typer.testing import CliRunner

    from ifd_cli.app import app

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    env = {
        "IFD_WAREHOUSE__DATA_DIR": str(tmp_path),
        "IFD_EXECUTION__BROKER": "ib",
        "IFD_IB__PORT": str(closed),
        "IFD_IB__CONNECT_TIMEOUT_S": "2",
        "IFD_DATABENTO__API_KEY": "db-" + "X" * 29,
    }
    args = ["live", "--gateway", "127.0.0.1:1", "--date", "2026-03-30", "--exit-on-end"]
    res = CliRunner().invoke(app, args, env=env)
    assert res.exit_code == 5 and "cannot reach TWS" in res.output, res.output
    with make_server(accounts=("U7654321",)) as live:
        env["IFD_IB__PORT"] = str(live.port)
        res = CliRunner().invoke(app, args, env=env)
        assert res.exit_code == 2 and "IFD_IB__LIVE_TRADING_ENABLED" in res.output, res.output
        assert placed(live) == 0
    assert not (tmp_path / "live").exists()  # nothing was streamed
