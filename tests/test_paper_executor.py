"""The paper executor on hand-built order books: the spec's hand-computed cases (fills, fees,
sizing, the tick grid), stops and targets on trades, limit queues, expiration, the emergency stop,
and determinism."""

from __future__ import annotations

import polars as pl
import pytest

from ifd_core.marketdata.record_source import RecordBatch
from ifd_core.trading.halt import EmergencyStop
from ifd_core.trading.paper import ExecConfig, PaperExecutor
from ifd_core.trading.risk import RiskLimits, RiskState, size_entry
from ifd_core.units import offset_ticks, round_to_tick, to_fixed
from tests.fixtures.dbn_factory import T0, mbo_array

OPT, FUT = 101, 1
S = 1_000_000_000


def rows_to_batch(rows: list[dict]) -> list[RecordBatch]:
    return [RecordBatch("mbo", mbo_array(rows), "synthetic")]


def add(ts_s: float, side: str, price: float, size: int, oid: int, iid: int = OPT) -> dict:
    return {
        "iid": iid,
        "ts": int(ts_s * S),
        "action": "A",
        "side": side,
        "price": price,
        "size": size,
        "oid": oid,
    }


def trade(ts_s: float, price: float, size: int, iid: int = OPT, side: str = "B") -> dict:
    return {
        "iid": iid,
        "ts": int(ts_s * S),
        "action": "T",
        "side": side,
        "price": price,
        "size": size,
        "oid": 0,
    }


def signal(direction: str = "BUY", at_s: float = 10.0, **kw) -> pl.DataFrame:
    row = {
        "signal_id": kw.pop("signal_id", "sig-1"),
        "algo": "v3",
        "config_version": "cfg",
        "instrument_id": OPT,
        "raw_symbol": "NQH6 C20000",
        "expiration_ts": kw.pop("expiration_ts", T0 + 10 * 24 * 3600 * S),
        "strike": 20000.0,
        "option_type": kw.pop("option_type", "C"),
        "direction": direction,
        "view": "BULLISH",
        "decision_ts": T0 + int(at_s * S),
        "confidence": kw.pop("confidence", 0.9),
        "underlying_id": FUT,
    }
    return pl.DataFrame([row])


def run(rows, sig, cfg=ExecConfig(), limits=RiskLimits(), end_s=3600.0, halted=lambda: None):
    ex = PaperExecutor("v3", cfg, limits, capital=100_000.0, halted=halted)
    return ex, ex.run_day(rows_to_batch(rows), sig, T0 + int(end_s * S))


def test_buy_2_at_12_25_sell_at_13_with_2_dollar_fees_nets_22():
    rows = [add(1, "A", 12.25, 2, 1), add(1.1, "B", 12.00, 5, 2), add(30, "B", 13.00, 5, 3)]
    cfg = ExecConfig(time_stop_s=60.0)  # exit by the time stop, at the 13.00 bid
    ex, led = run(rows, signal(), cfg, RiskLimits(max_contracts=2))
    (pos,) = led.positions
    assert (pos["qty"], pos["entry_price"], pos["exit_price"]) == (2, 12.25, 13.0)
    assert pos["exit_reason"] == "time_stop"
    assert pos["fees"] == 8.0 and pos["net_pnl"] == pytest.approx(22.0)
    assert ex.equity == pytest.approx(100_022.0)


def test_a_market_buy_walks_the_book():
    rows = [add(1, "A", 20.00, 4, 1), add(1.1, "A", 20.25, 10, 2), add(1.2, "B", 19.75, 3, 3)]
    _, led = run(rows, signal(), ExecConfig(), RiskLimits(max_contracts=10))
    entry = next(o for o in led.orders if o["purpose"] == "entry")
    assert entry["filled_qty"] == 10 and entry["avg_price"] == pytest.approx(20.15)
    assert [(f["price"], f["qty"]) for f in led.fills[:2]] == [(20.0, 4), (20.25, 6)]


def test_sizing_by_risk_budget_never_forces_one_contract():
    state = RiskState(equity=100_000.0, peak_equity=100_000.0)
    limits = RiskLimits(max_contracts=15, max_loss_per_trade=1_000.0, risk_budget_fraction=0.01)
    assert size_entry(10.0, state, limits).contracts == 5  # $1,000 / (10 pts x $20)
    sized = size_entry(60.0, state, limits)
    assert sized.contracts == 0 and sized.rejected and "does not fit" in sized.reasons[-1]


def test_a_short_call_whose_premium_rises_10_percent_is_stopped_out():
    rows = [
        add(1, "B", 10.00, 5, 1),
        add(1.1, "A", 10.25, 5, 2),
        add(20, "A", 11.25, 5, 3),
        trade(21, 11.00, 1),  # +10 % against the short
    ]
    cfg = ExecConfig(stop_fraction=0.10, target_fraction=0.24)
    _, led = run(rows, signal("SELL"), cfg, RiskLimits(max_contracts=1))
    (pos,) = led.positions
    assert pos["side"] == "SHORT" and pos["entry_price"] == 10.0
    assert pos["exit_reason"] == "stop" and pos["exit_price"] == 10.25  # bought back at the ask
    assert pos["net_pnl"] == pytest.approx(-0.25 * 20 - 4.0)


def test_a_target_is_taken_on_the_first_trade_through_it():
    rows = [
        add(1, "A", 10.00, 5, 1),
        add(1.1, "B", 9.75, 5, 2),
        add(20, "B", 12.50, 5, 3),
        trade(21, 12.50, 1),
    ]
    _, led = run(rows, signal(), ExecConfig(target_fraction=0.24), RiskLimits(max_contracts=1))
    (pos,) = led.positions
    assert pos["exit_reason"] == "target" and pos["exit_price"] == 12.5


def test_a_limit_order_waits_for_the_queue_ahead_and_fills_partially():
    rows = [
        add(1, "B", 10.00, 5, 1),  # 5 contracts ahead of us at our limit
        add(1.1, "A", 10.25, 5, 2),
        trade(20, 10.00, 3, side="S"),  # queue 5 -> 2: nothing for us
        trade(21, 10.00, 4, side="S"),  # queue 2 -> 0, 2 for us
        trade(22, 9.95, 1, side="S"),  # through the limit: the rest
    ]
    cfg = ExecConfig(order_type="limit", time_stop_s=600.0)
    _, led = run(rows, signal(), cfg, RiskLimits(max_contracts=3))
    fills = [(f["price"], f["qty"], f["liquidity"]) for f in led.fills if f["side"] == "B"]
    assert fills == [(10.0, 2, "limit"), (10.0, 1, "limit")]
    assert led.positions[0]["qty"] == 3 and led.positions[0]["entry_price"] == 10.0


def test_an_unfilled_limit_is_cancelled_after_its_time_to_live():
    rows = [add(1, "B", 10.00, 5, 1), add(1.1, "A", 10.25, 5, 2)]
    cfg = ExecConfig(order_type="limit", limit_ttl_s=30.0)
    _, led = run(rows, signal(), cfg, RiskLimits(max_contracts=3))
    (order,) = led.orders
    assert order["status"] == "cancelled" and order["reason"].endswith("limit expired")
    assert led.positions == []


def test_expiration_cash_settles_against_the_underlying():
    rows = [
        add(1, "A", 12.00, 5, 1),
        add(1.1, "B", 11.75, 5, 2),
        trade(50, 20_010.0, 1, iid=FUT),
    ]
    sig = signal(expiration_ts=T0 + 100 * S)
    _, led = run(rows, sig, ExecConfig(), RiskLimits(max_contracts=1))
    (pos,) = led.positions
    assert pos["exit_reason"] == "expiration" and pos["exit_price"] == 10.0  # 20010 - 20000
    assert pos["net_pnl"] == pytest.approx((10.0 - 12.0) * 20 - 2.0)  # no fee on settlement


def test_the_session_end_flattens_what_is_still_open():
    rows = [add(1, "A", 12.00, 5, 1), add(1.1, "B", 11.50, 5, 2)]
    _, led = run(rows, signal(), ExecConfig(time_stop_s=7200.0), RiskLimits(max_contracts=1))
    assert led.positions[0]["exit_reason"] == "session_end"
    assert led.positions[0]["exit_price"] == 11.5


def test_the_emergency_stop_blocks_every_new_order(tmp_path):
    stop = EmergencyStop(tmp_path)
    stop.halt("test halt")
    rows = [add(1, "A", 12.00, 5, 1), add(1.1, "B", 11.50, 5, 2)]
    _, led = run(rows, signal(), halted=stop.reason)
    assert led.positions == [] and led.fills == []
    (order,) = led.orders
    assert order["status"] == "rejected" and "emergency stop: test halt" in order["reason"]
    assert stop.resume() and stop.reason() is None
    _, led = run(rows, signal(), halted=stop.reason, limits=RiskLimits(max_contracts=1))
    assert len(led.positions) == 1
    assert [h["event"] for h in stop.history()] == ["halt", "resume"]


def test_a_garbage_stop_file_blocks_every_new_order(tmp_path):
    """Fails closed: an unreadable control/halt.json is a halt, and the refusal says why."""
    stop = EmergencyStop(tmp_path)
    stop.path.parent.mkdir(parents=True)
    stop.path.write_bytes(b'\x00\xff{"halted": fal')
    rows = [add(1, "A", 12.00, 5, 1), add(1.1, "B", 11.50, 5, 2)]
    _, led = run(rows, signal(), halted=stop.reason)
    assert led.positions == [] and led.fills == []
    (order,) = led.orders
    assert order["status"] == "rejected"
    assert order["reason"].startswith("emergency stop: the emergency-stop file")
    assert "unreadable" in order["reason"] and "ifd resume" in order["reason"]
    assert stop.resume()  # lifted: the bad file kept aside, trading allowed again
    _, led = run(rows, signal(), halted=stop.reason, limits=RiskLimits(max_contracts=1))
    assert len(led.positions) == 1


def test_no_liquidity_and_late_decisions_are_rejected_with_a_reason():
    rows = [add(1, "B", 11.50, 5, 2)]  # nobody offers: a buy cannot fill
    _, led = run(rows, signal())
    assert (
        led.orders[0]["status"] == "rejected"
        and "no displayed liquidity" in led.orders[0]["reason"]
    )
    _, led = run([add(1, "A", 12.0, 5, 1)], signal(at_s=4000.0), end_s=3600.0)
    assert led.orders[0]["reason"] == "decision after the end of the session"


def test_two_runs_are_identical():
    rows = [
        add(1, "A", 10.00, 5, 1),
        add(1.1, "B", 9.75, 5, 2),
        add(20, "B", 12.50, 5, 3),
        trade(21, 12.50, 1),
        add(30, "A", 10.50, 5, 4),
    ]
    sigs = pl.concat([signal(), signal(signal_id="sig-2", at_s=25.0)])
    a = run(rows, sigs, limits=RiskLimits(max_contracts=2))[1]
    b = run(rows, sigs, limits=RiskLimits(max_contracts=2))[1]
    assert (a.orders, a.fills, a.positions) == (b.orders, b.fills, b.positions)
    assert len(a.positions) == 2


def test_the_tick_grid():
    assert round_to_tick(to_fixed(4.97), "down") == to_fixed(4.95)
    assert round_to_tick(to_fixed(4.97), "up") == to_fixed(5.00)
    assert round_to_tick(to_fixed(4.95)) == to_fixed(4.95)
    assert round_to_tick(to_fixed(5.10), "down") == to_fixed(5.00)
    assert round_to_tick(to_fixed(5.10), "up") == to_fixed(5.25)
    assert round_to_tick(to_fixed(12.30)) == to_fixed(12.25)
    assert offset_ticks(to_fixed(4.95), 2) == to_fixed(5.25)  # 5.00, then the 0.25 grid
    assert offset_ticks(to_fixed(5.25), -2) == to_fixed(4.95)


# --- one decision per episode ------------------------------------------------------------------


def episode_signals(episodes: list[str], step_s: float = 300.0) -> pl.DataFrame:
    """The QN2J6 case by hand: one flow signalled in consecutive 5-minute windows (episode ids
    as the detectors assign them), then possibly another flow."""
    return pl.concat(
        [
            signal(at_s=10.0 + k * step_s, signal_id=f"sig-{k}").with_columns(
                pl.lit(ep).alias("episode_id")
            )
            for k, ep in enumerate(episodes)
        ]
    )


def deep_book() -> list[dict]:
    return [add(1, "A", 10.00, 50, 1), add(1.1, "B", 9.75, 50, 2)]


def test_four_windows_of_one_flow_open_one_position_and_skip_the_rest():
    sig = episode_signals(["ep-qn2j6"] * 4)
    _, led = run(deep_book(), sig, ExecConfig(time_stop_s=60.0), RiskLimits(max_contracts=1))
    assert len(led.positions) == 1 and led.positions[0]["signal_id"] == "sig-0"
    entries = [o for o in led.orders if o["purpose"] == "entry"]
    assert [(o["signal_id"], o["status"], o["reason"]) for o in entries] == [
        ("sig-0", "filled", "capped at max contracts 1"),
        ("sig-1", "skipped", "same_episode"),
        ("sig-2", "skipped", "same_episode"),
        ("sig-3", "skipped", "same_episode"),
    ]
    assert all(o["qty"] == 0 and o["filled_qty"] == 0 for o in entries[1:])


def test_a_second_episode_trades_and_stacking_is_a_setting():
    sig = episode_signals(["ep-a", "ep-a", "ep-b", "ep-b"])
    cfg = ExecConfig(time_stop_s=60.0)
    _, led = run(deep_book(), sig, cfg, RiskLimits(max_contracts=1))
    assert [p["signal_id"] for p in led.positions] == ["sig-0", "sig-2"]
    _, stacked = run(
        deep_book(),
        sig,
        ExecConfig(time_stop_s=60.0, stack_episodes=True),
        RiskLimits(max_contracts=1),
    )
    assert [p["signal_id"] for p in stacked.positions] == ["sig-0", "sig-1", "sig-2", "sig-3"]
    assert not [o for o in stacked.orders if o["status"] == "skipped"]


def test_the_first_signal_claims_its_episode_even_when_its_entry_is_rejected():
    # No offer at the first decision: rejected; the flow's later windows are not a second try.
    rows = [add(1.1, "B", 9.75, 50, 2), add(400, "A", 10.00, 50, 1)]
    _, led = run(rows, episode_signals(["ep-a"] * 2), ExecConfig(), RiskLimits(max_contracts=1))
    entries = [o for o in led.orders if o["purpose"] == "entry"]
    assert [o["status"] for o in entries] == ["rejected", "skipped"] and not led.positions
