"""The live path end to end, with the real Databento Live client and the replay gateway on
loopback: a SYNTHETIC simulated day streamed through `ifd live` yields exactly the windows and
signals batch `ifd detect` yields for it; with five dropped connections too (five recovered gaps,
nothing lost or counted twice); a run stopped mid-day resumes from its checkpoint; clear errors
for a wrong key, an unknown dataset and an unknown symbol; the feed's and the warehouse's circuit
breakers (a refusing gateway, a full disk) delay work but lose nothing."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import polars as pl
import pytest
from typer.testing import CliRunner

from ifd_cli.app import app
from ifd_core.marketdata.dbn_files import read_dbn
from ifd_core.marketdata.replay_gateway import ReplayGateway
from ifd_core.settings import get_settings
from ifd_core.simulator.market import simulate_market
from jobs.detect import label_day
from warehouse.ingest import ingest_files
from warehouse.lake import Lake

pytestmark = pytest.mark.slow
runner = CliRunner()
KEY = "db-IFDREPLAYTESTKEY0000000000000"
# Columns that say when and from which files a row was made, not what it holds.
VOLATILE = {"source_sha", "detected_at", "origin"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("live")
    summary = simulate_market(root / "sim", 21, 23, scale=0.2)
    day = summary.days[-1]
    before = [p for p in summary.files if f"{day:%Y%m%d}" not in p.name]
    todays = [p for p in summary.files if f"{day:%Y%m%d}" in p.name]
    base = Lake(root / "base")
    assert ingest_files(before, base).ok
    # Batch: the same 20 sessions plus the day itself, then `ifd detect`.
    batch = Lake(root / "batch")
    shutil.copytree(base.root, batch.root)
    assert ingest_files(todays, batch).ok
    env = {"IFD_WAREHOUSE__DATA_DIR": str(batch.root)}
    res = runner.invoke(app, ["detect", "--date", day.isoformat(), "--algo", "both"], env=env)
    assert res.exit_code == 0, res.output
    # Label the batch signals as the live run labels its own at the end of the date.
    label_day(batch, day, batch.scan("signals").filter(pl.col("date") == day).collect())
    return {"root": root, "sim": root / "sim", "day": day, "base": base, "batch": batch}


def fresh_lake(world, name: str) -> Lake:
    lake = Lake(world["root"] / name)
    shutil.copytree(world["base"].root, lake.root)
    return lake


def live_cli(lake: Lake, port: int, day, *extra: str, key: str = KEY, env_extra=None):
    env = {"IFD_WAREHOUSE__DATA_DIR": str(lake.root), "IFD_DATABENTO__API_KEY": key}
    env.update(env_extra or {})
    args = ["live", "--gateway", f"127.0.0.1:{port}", "--date", day.isoformat()]
    return runner.invoke(app, [*args, "--exit-on-end", "--json", *extra], env=env)


def table(lake: Lake, name: str, day) -> pl.DataFrame:
    df = lake.scan(name).filter(pl.col("date") == day).collect()
    return df.drop([c for c in df.columns if c in VOLATILE])


def assert_same_as_batch(world, lake: Lake) -> None:
    day, batch = world["day"], world["batch"]
    keys = ["window_start", "instrument_id"]
    live_w, batch_w = table(lake, "pressure_windows", day), table(batch, "pressure_windows", day)
    assert live_w.height == batch_w.height > 0
    assert live_w.sort(keys).equals(batch_w.sort(keys))
    live_s, batch_s = table(lake, "signals", day), table(batch, "signals", day)
    assert batch_s.height > 0, "the scenario should raise signals"
    assert live_s.sort("signal_id").equals(batch_s.sort("signal_id"))
    # Labelled from the ingested capture exactly as from the original files.
    cols = ["signal_id", "label", "ref_price", "resolved_ts"]
    lo = table(lake, "signal_outcomes", day).select(cols).sort("signal_id")
    bo = table(batch, "signal_outcomes", day).select(cols).sort("signal_id")
    assert lo.equals(bo)


def test_a_streamed_day_equals_batch_detection(world):
    lake = fresh_lake(world, "plain")
    with ReplayGateway(world["sim"], [KEY]) as gw:
        res = live_cli(lake, gw.port, world["day"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["ended"] and doc["days"][0]["finalized"]
    assert doc["gaps"] == []
    assert_same_as_batch(world, lake)
    # Every signal has its latency row.
    lat = lake.scan("signal_latency").collect()
    sig = lake.scan("signals").filter(pl.col("date") == world["day"]).collect()
    assert set(lat["signal_id"]) == set(sig["signal_id"])
    assert (lat["decision_latency_ns"] >= 0).all()


def test_a_run_under_the_emergency_stop_warns_and_says_so_in_its_summary(world, caplog):
    from ifd_core.trading.halt import EmergencyStop

    lake = fresh_lake(world, "halted")
    EmergencyStop(lake.root).halt("test: live banner", by="test")
    with (
        caplog.at_level("WARNING", logger="jobs.live.runner"),
        ReplayGateway(world["sim"], [KEY]) as gw,
    ):
        res = live_cli(lake, gw.port, world["day"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["halted"] == "test: live banner"
    said = [r.getMessage() for r in caplog.records if r.name == "jobs.live.runner"]
    for when in ("starts", "ends"):
        msg = f"live run {when} while the emergency stop is on"
        assert any(m.startswith(msg) and "test: live banner" in m for m in said), said
    assert "WARNING: live run starts while the emergency stop is on" in res.stderr


def test_live_says_it_trades_without_the_cross_asset_weight(world, caplog):
    # massive.confidence_weight applies to the backtest and the extended test only: a live run
    # with it on says so when it paper-trades the date (docs/operations.md "Massive (optional)").
    lake = fresh_lake(world, "weighted")
    env = {"IFD_MASSIVE__CONFIDENCE_WEIGHT": "0.5"}
    with (
        caplog.at_level("WARNING", logger="jobs.live.guard"),
        ReplayGateway(world["sim"], [KEY]) as gw,
    ):
        res = live_cli(lake, gw.port, world["day"], env_extra=env)
    assert res.exit_code == 0, res.output
    said = [r.getMessage() for r in caplog.records if r.name == "jobs.live.guard"]
    assert any("massive.confidence_weight=0.5 is not applied live" in m for m in said), said


def drop_every_for(start: int, n: int, drops: int) -> int:
    """A --drop-every N whose multiples fall exactly ``drops`` times inside [start, start+n)."""
    for every in range(n // (drops + 1), n // drops + 1):
        inside = (start + n - 1) // every - (start - 1) // every
        if inside == drops and (start + n - 1) % every > every // 10:
            return every
    raise AssertionError("no drop interval found")


def test_five_drops_are_five_recovered_gaps_and_change_nothing(world):
    lake = fresh_lake(world, "drops")
    # The gateway's stream is every file's records in ts_recv order; the day is its tail.
    counts = {p: read_dbn(p).record_count for p in world["sim"].glob("*.dbn.zst")}
    n_day = sum(c for p, c in counts.items() if f"{world['day']:%Y%m%d}" in p.name)
    start = sum(counts.values()) - n_day
    every = drop_every_for(start, n_day, 5)
    with ReplayGateway(world["sim"], [KEY], drop_every=every) as gw:
        res = live_cli(lake, gw.port, world["day"])
        assert gw.stats.drops == 5
    assert res.exit_code == 0, res.output
    gaps = lake.scan("gaps").filter(pl.col("date") == world["day"]).collect()
    assert gaps.height == 5
    assert set(gaps["status"]) == {"recovered_replay"}
    assert (gaps["duplicates_removed"] > 0).all()
    assert_same_as_batch(world, lake)


def test_a_stopped_run_resumes_from_its_checkpoint(world, monkeypatch):
    """Stop (as SIGTERM does) right after a mid-day checkpoint; the same command again resumes
    from the checkpoint and the day ends exactly as batch detection has it."""
    import jobs.live.dates as dates_mod
    import jobs.live.runner as live_mod

    lake = fresh_lake(world, "resume")
    settings = get_settings(
        warehouse={"data_dir": lake.root},
        databento={"api_key": KEY},
        live={"flush_every_s": 0.2, "flush_every_records": 20_000},
    )
    real_checkpoint = dates_mod.DayState.checkpoint
    armed = {"runner": None}

    def checkpoint_then_stop(self, finalized: bool) -> None:
        real_checkpoint(self, finalized)
        runner = armed["runner"]
        if runner is not None and not finalized and self.records_fed > 50_000:
            armed["runner"] = None
            runner.stop()

    monkeypatch.setattr(dates_mod.DayState, "checkpoint", checkpoint_then_stop)
    clocks: list[int] = []  # the exchange time the rollout guard sees at each flush
    real_on_flush = live_mod.LiveGuard.on_flush
    monkeypatch.setattr(
        live_mod.LiveGuard, "on_flush", lambda g, now: (clocks.append(now), real_on_flush(g, now))
    )
    with ReplayGateway(world["sim"], [KEY]) as gw:
        opts = live_mod.LiveOptions("127.0.0.1", gw.port, day=world["day"], exit_on_end=True)
        first = live_mod.LiveRunner(lake, settings, opts)
        armed["runner"] = first
        s1 = first.run()
        assert s1.stopped and not s1.days[0].finalized
        ck = json.loads((lake.root / "live" / f"checkpoint-{world['day']}.json").read_text())
        assert ck["records_fed"] > 50_000 and not ck["finalized"]
        stopped_at, clocks[:] = clocks[-1], []
        s2 = live_mod.LiveRunner(lake, settings, opts).run()
    # The replayed capture moved the exchange clock back to where the first run stopped.
    assert clocks[0] == stopped_at > 0
    assert s2.resumed_from == ck["records_fed"]
    assert s2.days[0].finalized and not s2.stopped
    assert_same_as_batch(world, lake)


def test_following_the_feed_finishes_each_served_day_like_batch(world, tmp_path):
    """No --date: the run follows what the gateway serves (here the last two simulated days,
    with drops), splits it into trade dates itself, and each date ends as batch detection has
    it. This is `ifd gateway --data DIR --drop-every N` + `ifd live --gateway H:P --exit-on-end`."""
    days = sorted({p.name.split(".")[0][-8:] for p in world["sim"].glob("*.dbn.zst")})[-2:]
    served = tmp_path / "served"
    served.mkdir()
    for p in world["sim"].glob("*.dbn.zst"):
        if p.name.split(".")[0][-8:] in days:
            (served / p.name).symlink_to(p)
    prior = [p for p in world["sim"].glob("*.dbn.zst") if p.name.split(".")[0][-8:] < days[0]]
    lake = Lake(world["root"] / "follow")
    assert ingest_files(prior, lake).ok
    # Batch: the earlier of the two days detected on the batch lake too (it holds all 21).
    d0 = world["day"]
    first = dt.date.fromisoformat(f"{days[0][:4]}-{days[0][4:6]}-{days[0][6:]}")
    env = {"IFD_WAREHOUSE__DATA_DIR": str(world["batch"].root)}
    res = runner.invoke(app, ["detect", "--date", first.isoformat(), "--algo", "both"], env=env)
    assert res.exit_code == 0, res.output
    with ReplayGateway(served, [KEY], drop_every=70_000) as gw:
        env = {"IFD_WAREHOUSE__DATA_DIR": str(lake.root), "IFD_DATABENTO__API_KEY": KEY}
        args = ["live", "--gateway", f"127.0.0.1:{gw.port}", "--exit-on-end", "--json"]
        res = runner.invoke(app, args, env=env)
        drops = gw.stats.drops
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [d["date"] for d in doc["days"]] == [first.isoformat(), d0.isoformat()]
    assert all(d["finalized"] for d in doc["days"])
    assert drops >= 2 and len(doc["gaps"]) == drops
    assert {g["status"] for g in doc["gaps"]} == {"recovered_replay"}
    assert_same_as_batch(world, lake)  # the later day, windows, signals and outcomes
    keys = ["window_start", "instrument_id"]
    lw, bw = (
        table(lake, "pressure_windows", first),
        table(world["batch"], "pressure_windows", first),
    )
    assert lw.height == bw.height > 0 and lw.sort(keys).equals(bw.sort(keys))
    ls, bs = table(lake, "signals", first), table(world["batch"], "signals", first)
    assert ls.sort("signal_id").equals(bs.sort("signal_id"))


def test_wrong_key_is_refused_clearly(world):
    lake = fresh_lake(world, "badkey")
    with ReplayGateway(world["sim"], [KEY]) as gw:
        res = live_cli(lake, gw.port, world["day"], key="db-WRONGKEY00000000000000000000000")
    assert res.exit_code == 5
    assert "refused the API key" in res.output and "IFD_DATABENTO__API_KEY" in res.output


def test_unknown_dataset_is_refused_clearly(world):
    lake = fresh_lake(world, "baddataset")
    with ReplayGateway(world["sim"], [KEY]) as gw:
        res = live_cli(
            lake, gw.port, world["day"], env_extra={"IFD_DATABENTO__DATASET": "XNAS.ITCH"}
        )
    assert res.exit_code == 5
    assert "XNAS.ITCH" in res.output


def test_unknown_symbol_is_refused_clearly(world):
    from ifd_core.marketdata.live_source import LiveFeedError, LiveParams, LiveSource, Subscription

    with ReplayGateway(world["sim"], [KEY]) as gw:
        src = LiveSource(
            LiveParams("127.0.0.1", gw.port, KEY, reconnect_max_attempts=1),
            [Subscription("mbo", ("ZZZ.OPT",))],
        )
        with pytest.raises(LiveFeedError, match="ZZZ.OPT"):
            list(src.batches())


def test_a_failing_gateway_opens_the_feed_breaker_and_waits_for_its_probe(world):
    """Three refused connections (a real closed port) open the feed's breaker; the next attempt
    waits for the breaker's probe time instead of hammering the gateway, and the probe that
    reaches the real gateway streams."""
    import socket
    import time

    import databento as db

    from ifd_core.calendar import trade_date_bounds
    from ifd_core.marketdata.live_source import LiveParams, LiveSource, Subscription
    from ifd_core.ops.resilience import Breaker
    from ifd_core.settings import BreakerSettings

    with socket.socket() as s:  # a port nobody listens on: connect is refused
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    changes = []
    breaker = Breaker(
        "databento:live",
        BreakerSettings(cooldown_s=1.0, cooldown_max_s=4.0),
        on_change=lambda t: changes.append((t.to_state, time.monotonic())),
    )
    with ReplayGateway(world["sim"], [KEY]) as gw:
        calls = []

        def client():
            calls.append(time.monotonic())
            port = closed if len(calls) <= 3 else gw.port
            return db.Live(key=KEY, gateway="127.0.0.1", port=port)

        params = LiveParams("127.0.0.1", gw.port, KEY, reconnect_base_delay_s=0.01)
        src = LiveSource(
            params,
            [Subscription("mbo", ("NQ.OPT",))],
            start_ns=trade_date_bounds(world["day"])[0],
            client_factory=client,
            breaker=breaker,
        )
        got = 0
        for batch in src.batches():
            got += len(batch)
            if got:
                src.stop()
                break
    assert got > 0 and len(calls) == 4
    assert [c[0] for c in changes] == ["open", "half_open"]
    # The fourth attempt came after the cool-down, not after the 10 ms backoff.
    assert calls[3] - changes[0][1] >= 0.95
    assert breaker.state == "half_open"


def test_a_warehouse_outage_defers_flushes_and_loses_nothing(world, monkeypatch):
    """Mid-day the warehouse refuses writes (ENOSPC) for three flushes: its breaker opens (an
    incident in the lake), the outputs stay pending while the stream keeps being read, and the
    day still ends exactly as batch detection has it."""
    import errno

    import jobs.live.dates as dates_mod
    import jobs.live.runner as live_mod
    from jobs.live.rows import LIVE_KEY

    lake = fresh_lake(world, "outage")
    settings = get_settings(
        warehouse={"data_dir": lake.root},
        databento={"api_key": KEY},
        live={"flush_every_s": 0.2, "flush_every_records": 20_000},
        resilience={"breaker": {"cooldown_s": 0.5, "cooldown_max_s": 5.0}},
    )
    outage = {"left": 0, "armed": True, "failed": 0}
    real_checkpoint, real_write = dates_mod.DayState.checkpoint, Lake.write

    def checkpoint(self, finalized: bool) -> None:
        real_checkpoint(self, finalized)
        if outage["armed"] and self.records_fed > 50_000:
            outage.update(armed=False, left=3)

    def write(self, table, df, key, bucket=None):
        if outage["left"] and key.startswith(LIVE_KEY):
            outage["left"] -= 1
            outage["failed"] += 1
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, table, df, key, bucket)

    monkeypatch.setattr(dates_mod.DayState, "checkpoint", checkpoint)
    monkeypatch.setattr(Lake, "write", write)
    said: list[str] = []
    with ReplayGateway(world["sim"], [KEY]) as gw:
        opts = live_mod.LiveOptions("127.0.0.1", gw.port, day=world["day"], exit_on_end=True)
        summary = live_mod.LiveRunner(lake, settings, opts, progress=said.append).run()
    assert outage["failed"] == 3
    deferred = [m for m in said if "warehouse write deferred" in m]
    # Three refused writes, then the open breaker: later flushes are refused by it (how many
    # depends on how fast the day streams) and the date's last flush waits for its probe.
    assert len(deferred) >= 3, said
    assert all("circuit open" in m for m in deferred[3:]), said
    assert summary.days[0].finalized
    inc = lake.scan("incidents").filter(pl.col("kind") == "breaker:warehouse:lake").collect()
    opened = inc.filter(pl.col("state") == "open")
    assert "critical" in opened["severity"].to_list()
    assert_same_as_batch(world, lake)


def test_live_data_received_is_booked_and_an_exhausted_budget_escalates(world):
    """The date's received bytes are a live_usage entry at the per-GB price in force; over the
    monthly budget the run raises the critical budget alert and keeps streaming (the stop is
    opt-in). Prices here are test values, not Databento's."""
    lake = fresh_lake(world, "usage")
    prices = [{"effective_from": "2020-01-01", "live_usage_per_gb": 500.0, "source": "test"}]
    env = {"IFD_COSTS__PRICES": json.dumps(prices), "IFD_BUDGET__MONTHLY_BUDGET": "0.5"}
    with ReplayGateway(world["sim"], [KEY]) as gw:
        res = live_cli(lake, gw.port, world["day"], env_extra=env)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    d = doc["days"][0]
    assert d["bytes"] > 1_000_000  # 80-byte MBO records, and more than a few
    ledger = lake.scan("cost_ledger").filter(pl.col("entry_type") == "live_usage").collect()
    assert ledger.height == 1
    assert ledger["billable_bytes"][0] == d["bytes"] and ledger["request_id"][0] == doc["run_id"]
    assert ledger["amount_usd"][0] == pytest.approx(d["bytes"] / 1e9 * 500.0)
    assert d["live_cost_usd"] == pytest.approx(ledger["amount_usd"][0])
    assert d["live_cost_usd"] > 0.5, "the scenario must exhaust the test budget"
    alerts = lake.scan("alerts").filter(pl.col("rule") == "budget.month").collect()
    assert alerts["state"].to_list() == ["FIRING"] and alerts["severity"][0] == "critical"
    assert "streaming continues" in res.output


def test_the_documented_sql_runs_while_the_live_flow_writes(world):
    """README / examples: the ad-hoc query (signals joined with outcomes and windows) is run over
    and over while `ifd live` (another process, as for a user) streams, checkpoints and
    consolidates the day; it never fails and, once the run is done, shows the day's signals."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from warehouse.sql import query

    lake = fresh_lake(world, "adhoc")
    sql = Path(__file__).resolve().parents[1] / "examples" / "signals_outcomes_windows.sql"
    sql = sql.read_text()
    failures, runs = [], []
    with ReplayGateway(world["sim"], [KEY]) as gw:
        env = {
            **os.environ,
            "IFD_WAREHOUSE__DATA_DIR": str(lake.root),
            "IFD_DATABENTO__API_KEY": KEY,
            "IFD_LIVE__FLUSH_EVERY_S": "0.2",
        }
        args = ["live", "--gateway", f"127.0.0.1:{gw.port}", "--date", world["day"].isoformat()]
        proc = subprocess.Popen(
            [sys.executable, "-m", "ifd_cli.app", *args, "--exit-on-end", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            while proc.poll() is None:
                try:
                    runs.append(query(lake, sql).height)
                except Exception as exc:  # noqa: BLE001 - collected: the assertion names them
                    failures.append(repr(exc))
            output = proc.communicate(timeout=120)[0]
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, output[-2000:]
    assert not failures, failures[:3]
    assert len(runs) >= 5, f"only {len(runs)} queries ran during the live run"
    final = query(lake, sql)
    day_signals = lake.scan("signals").filter(pl.col("date") == world["day"]).collect()
    assert final.height == day_signals.height > 0


def test_ib_trades_the_routed_signals_as_they_are_decided(world, loop):
    """execution.broker=ib: the live run sends each routed signal through the real ib_async
    client to the loopback TWS server while the day streams, exits on the option prints,
    flattens at the close and writes the orders / fills / positions / pnl_daily ledger. The
    server's market is set from the engine's book at each order (a real TWS has its own)."""
    from ifd_core.broker.ib_broker import IBBroker
    from ifd_core.settings import IBSettings
    from jobs.live.runner import LiveOptions, LiveRunner
    from tests.servers.tws import TwsTestServer

    day, batch = world["day"], world["batch"]
    lake = fresh_lake(world, "ib")
    # The incumbent's signals all go to execution (the scenario's v3 raises them; v1 does not).
    settings = get_settings(
        warehouse={"data_dir": lake.root},
        databento={"api_key": KEY},
        execution={"broker": "ib"},
        rollout={"incumbent": "v3", "challenger": "v1"},
    )
    offered = table(batch, "signals", day).filter(pl.col("algo") == "v3")
    assert offered.height > 0, "the scenario should raise v3 signals"
    con = {}  # instrument_id -> conId
    runner: LiveRunner | None = None

    class MirroredIB(IBBroker):
        def place(self, req):
            q = runner._day.engine.quote(req.contract.instrument_id) if runner._day else None
            if q is not None and q[0] <= q[1]:
                srv.set_quote(con[req.contract.instrument_id], *q)
            super().place(req)

    with TwsTestServer(commission_per_contract=2.25) as srv:
        srv.add_future(1, "NQ", "20991231")
        rows = offered.unique("instrument_id").iter_rows(named=True)
        for n, s in enumerate(rows, start=100):
            con[s["instrument_id"]] = n
            srv.add_contract(
                n,
                last_trade_date=f"{s['expiration']:%Y%m%d}",
                strike=s["strike"],
                right=s["option_type"],
                trading_class=s["root"],
                under_con_id=1,
            )
        ib = MirroredIB(IBSettings(port=srv.port, client_id=9, connect_timeout_s=5))
        with ReplayGateway(world["sim"], [KEY]) as gw:
            opts = LiveOptions("127.0.0.1", gw.port, day=day, exit_on_end=True)
            runner = LiveRunner(lake, settings, opts, broker=ib)
            summary = runner.run()
        executions = srv.executions()
        open_positions = [p for p in srv.positions() if p.position != 0]
        ib.close()
    assert summary.days[0].finalized
    orders, fills = table(lake, "orders", day), table(lake, "fills", day)
    positions, pnl = table(lake, "positions", day), table(lake, "pnl_daily", day)
    assert set(orders["mode"]) == {"ib_paper"} and set(orders["algo"]) == {"v3"}
    entries = orders.filter(pl.col("purpose") == "entry")
    # Every routed signal has exactly one entry order: sent, or refused with its reason.
    assert sorted(entries["signal_id"]) == sorted(offered["signal_id"])
    assert (entries.filter(pl.col("status") == "rejected")["reason"].str.len_chars() > 0).all()
    # One decision per episode: the later signals of a flow are skipped, never sent.
    skipped = entries.filter(pl.col("status") == "skipped")
    assert (skipped["reason"] == "same_episode").all()
    assert entries.height - skipped.height == offered["episode_id"].n_unique()
    sent = entries.filter(~pl.col("status").is_in(["rejected", "skipped"]))
    assert sent.height > 0 and (sent["status"] == "filled").all()
    # Each fill is one IB execution, its fee IB's commission report; the broker ends flat.
    assert fills.height == len(executions) > 0
    assert fills["fee"].sum() == pytest.approx(2.25 * fills["qty"].sum())
    assert open_positions == []
    assert positions.height == sent.height
    assert set(positions["exit_reason"]) <= {"stop", "target", "time_stop", "session_end"}
    assert orders.filter(pl.col("purpose") != "entry")["status"].eq("filled").all()
    (row,) = pnl.filter(pl.col("algo") == "v3").iter_rows(named=True)
    assert row["mode"] == "ib_paper" and row["trades"] == positions.height
    assert row["net_pnl"] == pytest.approx(positions["net_pnl"].sum())


def test_a_failing_broker_never_costs_the_days_data(world):
    """Real-time trading through a broker that fails (every send raises, its event queue raises
    once): the sends are rows whose outcome is unknown, the failure is a critical incident, and
    the date's windows, signals and outcomes are exactly batch detection's."""
    from ifd_core.broker.paper_broker import PaperBroker
    from jobs.live.runner import LiveOptions, LiveRunner

    class FailingBroker(PaperBroker):
        drained = 0

        def place(self, req):
            raise RuntimeError("send blew up")

        def drain(self):
            self.drained += 1
            if self.drained == 1:
                raise RuntimeError("event queue blew up")
            return super().drain()

    day = world["day"]
    lake = fresh_lake(world, "failing-broker")
    settings = get_settings(
        warehouse={"data_dir": lake.root},
        databento={"api_key": KEY},
        execution={"settle_s": 0.5},
        rollout={"incumbent": "v3", "challenger": "v1"},
    )
    with ReplayGateway(world["sim"], [KEY]) as gw:
        opts = LiveOptions("127.0.0.1", gw.port, day=day, exit_on_end=True)
        summary = LiveRunner(lake, settings, opts, broker=FailingBroker(fee_per_contract=2.5)).run()
    assert summary.days[0].finalized
    assert_same_as_batch(world, lake)
    incidents = table(lake, "incidents", day)
    assert "event queue blew up" in " ".join(incidents["detail"])
    orders = table(lake, "orders", day).filter(pl.col("purpose") == "entry")
    assert orders.height > 0 and (orders["status"] != "filled").all()
    assert orders["reason"].str.contains("send blew up|reconcile").any()
