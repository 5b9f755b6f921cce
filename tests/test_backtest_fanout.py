"""The backtest's days side by side (issue 20): the same signals, orders, fills, positions, daily
rows, labels, metrics, Monte Carlo and walk-forward whether the detection pass runs inline, on a
local pool of 2 processes or on a local Dask cluster of 2, and whether the baseline sessions'
windows were computed inline or by the pool; the nightly flow with runner=processes gives the
inline run's ledger. SYNTHETIC simulated sessions."""

from __future__ import annotations

import polars as pl
import pytest

from ifd_core.settings import ComputeSettings, get_settings
from ifd_core.simulator.market import simulate_market
from jobs.backtest import BacktestResult, metrics_of, run_backtest
from jobs.fanout import dask_mapper, inline_map, mapper_for
from warehouse.ingest import ingest_files
from warehouse.lake import Lake

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lakes(tmp_path_factory):
    """The same SYNTHETIC sessions ingested into two data roots: each runner computes the
    baseline sessions' windows on a lake that has none yet."""
    root = tmp_path_factory.mktemp("bt-fanout")
    summary = simulate_market(root / "sim", 8, 23, scale=0.2)  # SYNTHETIC
    out = []
    for name in ("a", "b"):
        lake = Lake(root / name)
        assert ingest_files(summary.files, lake).ok
        out.append(lake)
    return {"a": out[0], "b": out[1], "days": summary.days}


def settings_for(lake: Lake):
    return get_settings(warehouse={"data_dir": lake.root}, backtest={"mc_paths": 500})


def sorted_frame(df: pl.DataFrame, drop=("run_id",)) -> pl.DataFrame:
    df = df.drop([c for c in drop if c in df.columns])
    return df.sort(df.columns) if df.height else df


def assert_same(a: BacktestResult, b: BacktestResult) -> None:
    assert a.days == b.days and a.records == b.records and a.synthetic == b.synthetic
    for name in ("signals", "orders", "fills", "positions", "daily", "outcomes"):
        fa, fb = sorted_frame(getattr(a, name)), sorted_frame(getattr(b, name))
        assert fa.equals(fb), name
    assert sorted_frame(metrics_of(a)).equals(sorted_frame(metrics_of(b)))
    mc = [
        {k: {f: v for f, v in m.items() if f != "seconds"} for k, m in r.monte_carlo.items()}
        for r in (a, b)
    ]
    assert mc[0] == mc[1]
    assert a.walk_forward == b.walk_forward


def windows_of(lake: Lake) -> pl.DataFrame:
    return sorted_frame(lake.scan("pressure_windows").collect())


def test_inline_processes_and_dask_give_the_same_backtest(lakes):
    a, b, days = lakes["a"], lakes["b"], lakes["days"]
    run = dict(start=days[1], end=days[-1], algos=("v3", "v1"), walk_forward=True, write=False)
    inline = run_backtest(a, settings_for(a), mapper=inline_map, **run)
    assert inline.positions.height > 0 and inline.signals.height > 0, "the scenario should trade"
    steps: list[tuple[int, int]] = []
    with mapper_for(ComputeSettings(runner="processes", workers=2)) as pool:
        procs = run_backtest(
            b, settings_for(b), mapper=pool, days_done=lambda d, t: steps.append((d, t)), **run
        )
    assert steps == [(n, 2 * len(procs.days)) for n in range(2 * len(procs.days) + 1)]
    assert_same(inline, procs)
    # The baseline sessions' windows, computed one by one on a and by the pool on b.
    assert windows_of(a).height > 0
    assert windows_of(a).equals(windows_of(b))
    with dask_mapper(None, 2) as dask:
        on_dask = run_backtest(a, settings_for(a), mapper=dask, **run)
    assert_same(inline, on_dask)


def test_nightly_flow_on_a_process_pool_writes_the_inline_ledger(
    lakes, prefect_server, monkeypatch
):
    from flows.nightly_backtest import nightly_backtest

    a, days = lakes["a"], lakes["days"]
    monkeypatch.setenv("IFD_WAREHOUSE__DATA_DIR", str(a.root))
    monkeypatch.setenv("IFD_BACKTEST__MC_PATHS", "500")
    monkeypatch.setenv("IFD_COMPUTE__RUNNER", "processes")
    monkeypatch.setenv("IFD_COMPUTE__WORKERS", "2")
    start, end = days[1], days[-1]
    out = nightly_backtest(start=start, end=end)
    inline = run_backtest(a, settings_for(a), start, end, ("v3", "v1"), mode="ab", write=False)

    def stored(table: str) -> pl.DataFrame:
        rows = a.scan(table).filter(pl.col("run_id") == out["run_id"]).collect()
        return sorted_frame(rows.select([c for c in rows.columns if c != "run_id"]))

    assert stored("positions").height == inline.positions.height > 0
    for table, frame in (("positions", inline.positions), ("fills", inline.fills)):
        assert stored(table).equals(sorted_frame(frame.select(stored(table).columns))), table
    daily = stored("pnl_daily")
    assert daily.equals(sorted_frame(inline.daily.select(daily.columns)))


def test_a_loopback_dask_cluster_gives_the_inline_backtest(lakes, tmp_path, monkeypatch):
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1, reached through the
    settings as an operator would (IFD_COMPUTE__RUNNER=dask, IFD_COMPUTE__DASK_ADDRESS)."""
    from tests.fixtures.dask_cluster import start_cluster

    a, days = lakes["a"], lakes["days"]
    run = dict(start=days[1], end=days[-1], algos=("v3", "v1"), write=False)
    inline = run_backtest(a, settings_for(a), mapper=inline_map, **run)
    cluster = start_cluster(tmp_path / "dask")
    try:
        monkeypatch.setenv("IFD_COMPUTE__RUNNER", "dask")
        monkeypatch.setenv("IFD_COMPUTE__DASK_ADDRESS", cluster.address)
        compute = get_settings(None).compute
        assert compute.runner == "dask" and compute.dask_address == cluster.address
        from distributed import Client, get_task_stream

        with (
            Client(cluster.address) as watcher,
            get_task_stream(client=watcher) as stream,
            mapper_for(compute) as on_cluster,
        ):
            remote = run_backtest(a, settings_for(a), mapper=on_cluster, **run)
    finally:
        cluster.stop()
    assert_same(inline, remote)
    # The days ran on the cluster's two workers, not in this process.
    ran = [t for t in stream.data if t["key"].startswith("detect_for_backtest")]
    assert len(ran) == len(remote.days) and len({t["worker"] for t in ran}) == 2
