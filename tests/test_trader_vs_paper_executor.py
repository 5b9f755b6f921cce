"""The real-time trader decides as the paper executor does: the same MBO day replayed through
``PaperExecutor.run_day`` and through ``SignalTrader`` + ``PaperBroker`` (the book after each
record is the broker's quote, each print goes to ``on_trade``) gives the same positions, so
backtests, paper and IB trading differ in where fills come from, not in the decisions. The
scenarios have enough size at the touch that walking the book and filling at the touch agree."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from ifd_core.analysis.order_book_fast import FastBookSet
from ifd_core.broker.base import OptionContract
from ifd_core.broker.paper_broker import PaperBroker
from ifd_core.broker.trader import SignalTrader, TraderConfig
from ifd_core.ops.resilience import Breaker
from ifd_core.settings import BreakerSettings
from ifd_core.trading.paper import ExecConfig
from ifd_core.trading.risk import RiskLimits
from ifd_core.units import to_points
from tests.fixtures.dbn_factory import T0, mbo_array
from tests.test_paper_executor import OPT, S, add, episode_signals, run, signal, trade

KEEP = [
    "side",
    "qty",
    "entry_ts",
    "entry_price",
    "exit_ts",
    "exit_price",
    "exit_reason",
    "gross_pnl",
    "fees",
    "net_pnl",
]


def trade_in_real_time(rows, sig: pl.DataFrame, cfg: ExecConfig, limits: RiskLimits, end_s):
    broker = PaperBroker(fee_per_contract=cfg.fee_per_contract)
    broker.connect()
    tcfg = TraderConfig(
        cfg.order_type,
        cfg.stop_fraction,
        cfg.target_fraction,
        cfg.time_stop_s,
        cfg.min_confidence,
        cfg.stack_episodes,
    )
    trader = SignalTrader(
        "v3",
        broker,
        Breaker("broker:paper", BreakerSettings()),
        tcfg,
        limits,
        capital=100_000.0,
        quote=lambda iid: broker.quotes.get(iid),
        mode="paper",
    )
    contract = OptionContract(OPT, "NQH6 C20000", "QN1", dt.date(2026, 4, 17), 20000.0, "C")
    latency = int(cfg.latency_ms * 1e6)
    due = sorted((int(s["decision_ts"]) + latency, s) for s in sig.iter_rows(named=True))
    books = FastBookSet()
    recs = mbo_array(rows)
    recs = recs[np.argsort(recs["ts_recv"], kind="stable")]
    for i in range(len(recs)):
        ts = int(recs["ts_recv"][i])
        while due and due[0][0] < ts:  # decisions before this record, on the book before it
            at, s = due.pop(0)
            trader.on_signal(s, contract, at)
            trader.pump(at)
        while (d := trader.next_due()) is not None and d < ts:  # a time stop, at its instant
            trader.pump(d)
        books.apply(recs[i : i + 1])
        bbo = books.bbo(OPT)
        if bbo is not None and bbo.bid_sz > 0 and bbo.ask_sz > 0:
            broker.set_quote(OPT, to_points(bbo.bid_px), to_points(bbo.ask_px), ts)
        if recs["action"][i] == b"T":
            trader.on_trade(OPT, to_points(int(recs["price"][i])), ts)
            trader.pump(ts)
    end = T0 + int(end_s * S)
    while (d := trader.next_due()) is not None and d < end:
        trader.pump(d)
    trader.flatten(end)
    trader.pump(end)
    return trader.ledger()


SCENARIOS = {
    "time stop at the bid": (
        [
            add(1, "A", 12.25, 2, 1),
            add(1.1, "B", 12.00, 5, 2),
            add(30, "B", 13.00, 5, 3),
            add(200, "B", 13.25, 1, 4),
        ],
        signal(),
        ExecConfig(time_stop_s=60.0),
        RiskLimits(max_contracts=2),
    ),
    "short stopped out by a print": (
        [
            add(1, "B", 10.00, 5, 1),
            add(1.1, "A", 10.25, 5, 2),
            add(20, "A", 11.25, 5, 3),
            trade(21, 11.00, 1),
        ],
        signal("SELL"),
        ExecConfig(stop_fraction=0.10, target_fraction=0.24),
        RiskLimits(max_contracts=1),
    ),
    "target on the first print through it": (
        [
            add(1, "A", 10.00, 5, 1),
            add(1.1, "B", 9.75, 5, 2),
            add(20, "B", 12.50, 5, 3),
            trade(21, 12.25, 1),
            trade(22, 12.50, 1),
        ],
        signal(),
        ExecConfig(target_fraction=0.24),
        RiskLimits(max_contracts=1),
    ),
    "flattened at the session end": (
        [add(1, "A", 10.00, 5, 1), add(1.1, "B", 9.75, 5, 2), add(50, "B", 10.50, 5, 3)],
        signal(),
        ExecConfig(),
        RiskLimits(max_contracts=3),
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_trader_and_the_paper_executor_take_the_same_positions(name):
    rows, sig, cfg, limits = SCENARIOS[name]
    _, paper = run(rows, sig, cfg, limits, end_s=600.0)
    live = trade_in_real_time(rows, sig, cfg, limits, end_s=600.0)
    assert len(paper.positions) == 1
    assert [{k: p[k] for k in KEEP} for p in live.positions] == [
        {k: p[k] for k in KEEP} for p in paper.positions
    ]


@pytest.mark.parametrize("stack", [False, True])
def test_both_act_once_per_episode_and_skip_the_same_signals(stack):
    # The QN2J6 case: one flow in 4 windows, then another flow; a deep book all day.
    rows = [add(1, "A", 10.00, 50, 1), add(1.1, "B", 9.75, 50, 2), add(800, "B", 5.00, 1, 3)]
    sig = episode_signals(["ep-a"] * 4 + ["ep-b"], step_s=100.0)
    cfg, limits = ExecConfig(time_stop_s=30.0, stack_episodes=stack), RiskLimits(max_contracts=1)
    _, paper = run(rows, sig, cfg, limits, end_s=900.0)
    live = trade_in_real_time(rows, sig, cfg, limits, end_s=900.0)

    def entries(led):
        return [
            (o["signal_id"], o["status"], o["reason"] if o["status"] == "skipped" else "")
            for o in led.orders
            if o["purpose"] == "entry"
        ]

    assert entries(live) == entries(paper)
    assert len(paper.positions) == (5 if stack else 2)
    assert [p["signal_id"] for p in live.positions] == [p["signal_id"] for p in paper.positions]
