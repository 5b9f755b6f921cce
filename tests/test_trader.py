"""The real-time trader over the paper broker: sizing, entry at the touch, stop / target / time
exits, the emergency stop (entries never sent, exits still go), one send per order through the
breaker, an unknown send outcome blocking entries until reconciliation, and the ledger's shape."""

from __future__ import annotations

import datetime as dt

import pytest

from ifd_core.broker.base import BrokerUnavailable, OptionContract
from ifd_core.broker.paper_broker import PaperBroker
from ifd_core.broker.trader import SignalTrader, TraderConfig
from ifd_core.ops.resilience import Breaker
from ifd_core.settings import BreakerSettings
from ifd_core.trading.risk import RiskLimits
from warehouse.tables import TABLES

NS = 1_000_000_000
T0 = 1_774_000_000 * NS
C = OptionContract(11, "QN1J6 C18250", "QN1", dt.date(2026, 4, 17), 18250.0, "C")
SIG = {"signal_id": "s1", "direction": "BUY", "confidence": 0.8, "config_version": "cv"}


class Counting(PaperBroker):
    """The paper broker, counting what reached it (a spy on sends, fills unchanged)."""

    def __init__(self) -> None:
        super().__init__(fee_per_contract=2.5)
        self.sent: list[str] = []

    def place(self, req) -> None:
        self.sent.append(req.order_id)
        super().place(req)


def make(broker=None, halted=lambda: None, **cfg):
    broker = broker or Counting()
    broker.connect()
    trader = SignalTrader(
        "v3",
        broker,
        Breaker("broker:paper", BreakerSettings()),
        TraderConfig(stop_fraction=0.1, target_fraction=0.2, time_stop_s=600, **cfg),
        RiskLimits(max_contracts=15, risk_budget_fraction=0.01, max_loss_per_trade=1000),
        capital=100_000.0,
        quote=lambda iid: broker.quotes.get(iid),
        halted=halted,
        run_id="r1",
        mode="paper",
    )
    return broker, trader


def test_entry_is_sized_filled_at_the_ask_and_exits_at_the_target():
    broker, t = make()
    broker.set_quote(11, 49.0, 50.0)
    oid = t.on_signal(SIG, C, T0)
    t.pump(T0)
    # 1 % of 100,000 over a 5-point stop (10 % of 50) x $20: 10 contracts.
    led = t.ledger()
    assert led.orders[0]["order_id"] == oid and led.orders[0]["qty"] == 10
    assert led.orders[0]["status"] == "filled" and led.orders[0]["avg_price"] == 50.0
    broker.set_quote(11, 60.5, 61.0, T0 + NS)
    t.on_trade(11, 59.75, T0 + NS)  # below the 60-point target: nothing
    t.pump(T0 + NS)
    assert t.ledger().positions == []
    t.on_trade(11, 60.0, T0 + NS)  # a trade at the target: out at the bid
    t.pump(T0 + NS)
    led = t.ledger()
    (pos,) = led.positions
    assert pos["exit_reason"] == "target" and pos["exit_price"] == 60.5
    assert pos["gross_pnl"] == pytest.approx(10.5 * 10 * 20)
    assert pos["net_pnl"] == pytest.approx(10.5 * 10 * 20 - 2 * 10 * 2.5)
    assert [f["side"] for f in led.fills] == ["B", "S"]


def test_stop_and_time_stop_close_positions():
    broker, t = make()
    broker.set_quote(11, 49.0, 50.0)
    t.on_signal(SIG, C, T0)
    t.pump(T0)
    broker.set_quote(11, 44.0, 45.0)
    t.on_trade(11, 45.0, T0 + NS)  # a trade at the 45-point stop
    t.pump(T0 + NS)
    assert t.ledger().positions[0]["exit_reason"] == "stop"
    t.on_signal({**SIG, "signal_id": "s2"}, C, T0 + 2 * NS)
    t.pump(T0 + 601 * NS + 2 * NS)  # ten minutes later, no quote moved it
    t.pump(T0 + 603 * NS)
    assert [p["exit_reason"] for p in t.ledger().positions] == ["stop", "time_stop"]


def test_the_emergency_stop_refuses_entries_without_sending_but_lets_exits_out():
    halt = {"why": None}
    broker, t = make(halted=lambda: halt["why"])
    broker.set_quote(11, 49.0, 50.0)
    t.on_signal(SIG, C, T0)
    t.pump(T0)
    halt["why"] = "operator: news"
    refused = t.on_signal({**SIG, "signal_id": "s2"}, C, T0 + NS)
    assert refused not in broker.sent
    row = next(o for o in t.ledger().orders if o["order_id"] == refused)
    assert row["status"] == "rejected" and row["qty"] == 0
    assert row["reason"] == "emergency stop: operator: news"
    t.flatten(T0 + 2 * NS)  # risk-reducing: still sent
    t.pump(T0 + 2 * NS)
    assert t.ledger().positions[0]["exit_reason"] == "session_end"
    assert len(broker.sent) == 2


def test_a_corrupt_stop_file_refuses_entries_without_sending(tmp_path):
    from ifd_core.trading.halt import EmergencyStop

    stop = EmergencyStop(tmp_path)
    stop.path.parent.mkdir(parents=True)
    stop.path.write_text('[{"halted": false}]')  # valid JSON, the wrong shape
    broker, t = make(halted=stop.reason)
    broker.set_quote(11, 49.0, 50.0)
    refused = t.on_signal(SIG, C, T0)
    assert refused not in broker.sent and broker.sent == []
    row = next(o for o in t.ledger().orders if o["order_id"] == refused)
    assert row["status"] == "rejected" and "is unreadable" in row["reason"]


def test_an_unknown_send_outcome_blocks_entries_until_reconciled():
    class Flaky(Counting):
        def place(self, req):
            self.sent.append(req.order_id)
            raise BrokerUnavailable("connection reset while sending")

    broker, t = make(broker=Flaky())
    broker.set_quote(11, 49.0, 50.0)
    first = t.on_signal(SIG, C, T0)
    second = t.on_signal({**SIG, "signal_id": "s2"}, C, T0 + NS)
    assert broker.sent == [first]  # the second was never sent: the first's fate is unknown
    rows = {o["order_id"]: o for o in t.ledger().orders}
    assert rows[first]["status"] == "working" and "unknown" in rows[first]["reason"]
    assert "reconcile" in rows[second]["reason"]
    t.reconcile()  # the broker does not know the first: it was never placed
    assert {o["order_id"]: o["status"] for o in t.ledger().orders}[first] == "rejected"
    assert t.unknown_outcome is None


def test_an_open_breaker_refuses_without_sending():
    broker, t = make()
    broker.set_quote(11, 49.0, 50.0)
    for _ in range(3):
        t.breaker.record(False, 0.01, RuntimeError("down"))
    oid = t.on_signal(SIG, C, T0)
    assert oid not in broker.sent
    row = t.ledger().orders[0]
    assert row["status"] == "rejected" and "circuit open" in row["reason"]


def test_ledger_rows_have_the_paper_executors_columns():
    broker, t = make()
    broker.set_quote(11, 49.0, 50.0)
    t.on_signal(SIG, C, T0)
    t.pump(T0)
    t.flatten(T0 + NS)
    t.pump(T0 + NS)
    led = t.ledger()
    extra = {"date", "origin"}  # added when written to the lake
    for table, rows in (("orders", led.orders), ("fills", led.fills), ("positions", led.positions)):
        assert rows, table
        assert set(rows[0]) | extra == set(TABLES[table].schema), table


def test_the_ledger_lands_in_the_lake_and_only_real_money_fees_are_booked(lake):
    from ifd_core.settings import get_settings
    from warehouse.broker_ledger import write_trader_ledger
    from warehouse.migrations import ensure_migrated

    ensure_migrated(lake)
    broker, t = make()
    broker.set_quote(11, 49.0, 50.0)
    t.on_signal(SIG, C, T0)
    t.pump(T0)
    t.flatten(T0 + NS)
    t.pump(T0 + NS)
    day = dt.date(2026, 3, 20)
    settings = get_settings()
    assert write_trader_ledger(lake, settings, t.ledger(), day, "live", "trade-r1") == []
    assert lake.scan("fills").collect().height == 2
    assert lake.scan("positions").collect()["net_pnl"].to_list() == [
        pytest.approx(-1.0 * 10 * 20 - 2 * 10 * 2.5)
    ]
    # The same fills from a real-money IB account book commission and exchange fee (test rates).
    prices = [
        {
            "effective_from": "2020-01-01",
            "commission_per_contract": 0.85,
            "exchange_fee_per_contract": 1.38,
            "source": "test rates",
        }
    ]
    real = get_settings(costs={"prices": prices})
    led = t.ledger()
    for f in led.fills:
        f["mode"] = "ib"
    booked = write_trader_ledger(lake, real, led, day, "live", "trade-r1")
    assert (
        sorted(e["entry_type"] for e in booked) == ["broker_commission"] * 2 + ["exchange_fee"] * 2
    )
    assert sum(e["amount_usd"] for e in booked) == pytest.approx(20 * (0.85 + 1.38))
    assert lake.scan("fills").collect().height == 2  # replaced, not appended


# --- one decision per episode ------------------------------------------------------------------


def test_a_later_signal_of_an_episode_is_skipped_and_never_sent():
    broker, t = make()
    broker.set_quote(11, 49.0, 50.0)
    first = t.on_signal({**SIG, "episode_id": "ep1"}, C, T0)
    later = t.on_signal({**SIG, "signal_id": "s2", "episode_id": "ep1"}, C, T0 + 300 * NS)
    other = t.on_signal({**SIG, "signal_id": "s3", "episode_id": "ep2"}, C, T0 + 300 * NS)
    t.pump(T0 + 300 * NS)
    assert broker.sent == [first, other]
    rows = {o["order_id"]: o for o in t.ledger().orders}
    assert (rows[later]["status"], rows[later]["reason"], rows[later]["qty"]) == (
        "skipped",
        "same_episode",
        0,
    )
    assert later not in t.working() and t._working_entries() == 0


def test_a_signal_below_the_confidence_floor_does_not_claim_its_episode():
    broker, t = make(min_confidence=0.75)
    broker.set_quote(11, 49.0, 50.0)
    low = t.on_signal({**SIG, "confidence": 0.7, "episode_id": "ep1"}, C, T0)
    high = t.on_signal({**SIG, "signal_id": "s2", "episode_id": "ep1"}, C, T0 + 300 * NS)
    rows = {o["order_id"]: o for o in t.ledger().orders}
    assert rows[low]["status"] == "rejected" and broker.sent == [high]


def test_stacking_and_episodes_acted_on_before_a_restart():
    broker, t = make(stack_episodes=True)
    broker.set_quote(11, 49.0, 50.0)
    t.on_signal({**SIG, "episode_id": "ep1"}, C, T0)
    t.on_signal({**SIG, "signal_id": "s2", "episode_id": "ep1"}, C, T0 + NS)
    assert len(broker.sent) == 2
    broker, resumed = make()
    broker.set_quote(11, 49.0, 50.0)
    resumed.note_episodes(["ep1", None])
    oid = resumed.on_signal({**SIG, "signal_id": "s3", "episode_id": "ep1"}, C, T0 + 2 * NS)
    assert broker.sent == [] and resumed.ledger().orders[0]["order_id"] == oid
    assert resumed.ledger().orders[0]["status"] == "skipped"
