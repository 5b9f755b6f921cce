"""The backtester end to end on SYNTHETIC simulated sessions: deterministic fills and P&L, the
ledger in the lake linked to signals and config, the emergency stop honoured, Monte Carlo and
walk-forward in the JSON, the A/B and extended-test commands with honest verdicts."""

from __future__ import annotations

import json

import polars as pl
import pytest
from typer.testing import CliRunner

from ifd_cli.app import app
from ifd_core.settings import get_settings
from ifd_core.simulator.market import simulate_market
from jobs.backtest import run_backtest
from warehouse.ingest import ingest_files
from warehouse.lake import Lake

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("bt")
    summary = simulate_market(root / "sim", 21, 23, scale=0.2)
    lake = Lake(root / "data")
    assert ingest_files(summary.files, lake).ok
    return {"lake": lake, "days": summary.days}


def settings_for(lake: Lake, **groups):
    return get_settings(warehouse={"data_dir": lake.root}, backtest={"mc_paths": 2_000}, **groups)


def strip_run(df: pl.DataFrame) -> pl.DataFrame:
    return df.drop([c for c in ("run_id",) if c in df.columns])


def test_two_backtests_give_identical_fills_and_pnl(world):
    lake, days = world["lake"], world["days"]
    s = settings_for(lake)
    a = run_backtest(lake, s, days[-3], days[-1], ("v3", "v1"), write=False)
    b = run_backtest(lake, s, days[-3], days[-1], ("v3", "v1"), write=False)
    assert a.run_id != b.run_id
    assert a.positions.height > 0, "the scenario should trade"
    for name in ("orders", "fills", "positions", "daily"):
        assert strip_run(getattr(a, name)).equals(strip_run(getattr(b, name))), name
    timeless = [
        {k: {f: v for f, v in mc.items() if f != "seconds"} for k, mc in r.items()}
        for r in (a.monte_carlo, b.monte_carlo)
    ]
    assert timeless[0] == timeless[1]


def test_the_ledger_is_written_and_linked_to_signals_and_config(world):
    lake, days = world["lake"], world["days"]
    s = settings_for(lake)
    res = run_backtest(lake, s, days[-2], days[-1], ("v3",))
    pos = lake.scan("positions").filter(pl.col("run_id") == res.run_id).collect()
    fills = lake.scan("fills").filter(pl.col("run_id") == res.run_id).collect()
    daily = lake.scan("pnl_daily").filter(pl.col("run_id") == res.run_id).collect()
    assert pos.height == res.positions.height > 0
    assert set(pos["signal_id"]) <= set(res.signals["signal_id"])
    assert set(pos["config_version"]) == {s.config_version()}
    assert set(pos["origin"]) == set(daily["origin"]) == {"synthetic"}  # labelled everywhere
    assert set(fills["order_id"]) <= set(lake.scan("orders").collect()["order_id"])
    # Daily rows are daily: they add up to the account's change.
    assert daily["net_pnl"].sum() == pytest.approx(daily["equity_end"][-1] - s.paper.capital)


def test_the_emergency_stop_blocks_every_backtest_order(world, tmp_path):
    lake, days = world["lake"], world["days"]
    s = settings_for(lake)
    env = {"IFD_WAREHOUSE__DATA_DIR": str(lake.root)}
    assert runner.invoke(app, ["halt", "--reason", "test"], env=env).exit_code == 0
    try:
        res = run_backtest(lake, s, days[-1], days[-1], ("v3",), write=False)
    finally:
        assert runner.invoke(app, ["resume"], env=env).exit_code == 0
    entries = res.orders.filter(pl.col("purpose") == "entry")
    assert entries.height > 0 and res.positions.height == 0
    # Each episode's first signal is refused by the halt; its later signals are skipped as the
    # same flow (one decision per episode), never sent.
    decided = entries.filter(pl.col("status") != "skipped")
    assert decided.height > 0 and (decided["status"] == "rejected").all()
    assert decided["reason"].str.contains("emergency stop: test").all()
    assert (entries.filter(pl.col("status") == "skipped")["reason"] == "same_episode").all()


def test_a_halted_backtest_says_so_first_and_last_and_in_json(world):
    lake, days = world["lake"], world["days"]
    env = {"IFD_WAREHOUSE__DATA_DIR": str(lake.root), "IFD_BACKTEST__MC_PATHS": "2000"}
    args = ["backtest", "--start", str(days[-1]), "--end", str(days[-1]), "--algo", "v3"]
    assert runner.invoke(app, ["halt", "--reason", "test: banner"], env=env).exit_code == 0
    try:
        res = runner.invoke(app, [*args, "--json"], env=env)
        assert res.exit_code == 0, res.output
        halt = json.loads(res.stdout)["emergency_stop"]
        assert halt["active"] and halt["halted_at_start"] and halt["halted_at_end"]
        assert halt["reason"] == "test: banner" and halt["entries_refused"] > 0
        assert "EMERGENCY STOP ACTIVE" in res.stderr  # the run's first progress line
        # An unreadable stop file is a halt too, and the text output opens and ends with it.
        (lake.root / "control" / "halt.json").write_bytes(b"\xff\xfe not json")
        res = runner.invoke(app, args, env=env)
        assert res.exit_code == 0, res.output
        lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
        for line in (lines[0], lines[-1]):
            assert line.startswith("EMERGENCY STOP ACTIVE during this backtest"), line
            assert "unreadable" in line and "entries refused" in line
    finally:
        assert runner.invoke(app, ["resume"], env=env).exit_code == 0


def test_backtest_json_carries_metrics_monte_carlo_walk_forward_and_the_report(world):
    lake, days = world["lake"], world["days"]
    env = {
        "IFD_WAREHOUSE__DATA_DIR": str(lake.root),
        "IFD_BACKTEST__MC_PATHS": "2000",
        "IFD_BACKTEST__WF_TRAIN_SESSIONS": "4",
        "IFD_BACKTEST__WF_TEST_SESSIONS": "2",
        "IFD_BACKTEST__HOLDOUT_SESSIONS": "2",
    }
    args = [
        "backtest",
        "--start",
        str(days[-10]),
        "--end",
        str(days[-1]),
        "--walk-forward",
        "--json",
    ]
    res = runner.invoke(app, args, env=env)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["data"] == "SYNTHETIC"
    assert doc["emergency_stop"]["active"] is False and doc["emergency_stop"]["line"] is None
    assert set(doc["metrics"]) == {"v3", "v1"}
    assert doc["unit"] == "episodes" and set(doc["n_episodes"]) == {"v3", "v1"}
    for a in ("v3", "v1"):  # accuracy counts episodes, and the report gives both counts
        m = doc["metrics"][a]
        assert doc["n_signals"][a] == m["signals"] and doc["n_episodes"][a] == m["episodes"]
        assert m["resolved"] + m["neutral"] <= m["episodes"] <= m["signals"]
    assert doc["walk_forward"]["unit"] == "days"
    mc = doc["monte_carlo"]["v3"]
    assert mc["paths"] == 2000 and 0.0 <= mc["prob_loss"] <= 1.0 and mc["worst5_drawdown"] <= 0
    wf = doc["walk_forward"]["algos"]["v3"]
    # 8 sessions before the holdout: train 4 / test 2 windows at sessions 0-3|4-5 and 2-5|6-7
    assert wf["holdout_sessions"] == 2 and len(wf["windows"]) == 2
    from pathlib import Path

    html = Path(doc["report"]).read_text()
    assert "SYNTHETIC DATA" in html and "plotly.min.js" in html


def test_ab_on_few_sessions_is_inconclusive_and_says_how_many_more(world):
    lake, days = world["lake"], world["days"]
    env = {"IFD_WAREHOUSE__DATA_DIR": str(lake.root)}
    res = runner.invoke(
        app, ["ab", "--start", str(days[-3]), "--end", str(days[-1]), "--json"], env=env
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["recommendation"] == "inconclusive"
    assert doc["verdict"].startswith("inconclusive: need ")
    assert "resolved episodes" in doc["verdict"] and doc["unit"] == "episodes"
    assert doc["accuracy"]["v3"]["resolved"] <= doc["n_episodes"]["v3"] <= doc["n_signals"]["v3"]


def test_the_extended_test_pools_daily_rows_and_refuses_to_pass_a_small_sample(world):
    lake = world["lake"]
    env = {"IFD_WAREHOUSE__DATA_DIR": str(lake.root)}
    res = runner.invoke(app, ["extended-test", "--json"], env=env)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert len(doc["days"]) == 10 and doc["complete"]
    assert doc["status"] == "INCONCLUSIVE" and "resolved" in doc["reasons"][0]
    final = {r["algo"]: r for r in doc["final"]}
    daily = pl.DataFrame(doc["daily"])
    assert daily.height == 20 and final["v3"]["days"] == 10
    v3 = daily.filter(pl.col("algo") == "v3")
    for col in ("signals", "episodes", "resolved", "correct", "trades"):  # pooled from counts
        assert final["v3"][col] == v3[col].sum()
    assert doc["unit"] == "episodes" and doc["n_episodes"]["v3"] == final["v3"]["episodes"]
