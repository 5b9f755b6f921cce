"""A multi-file ingest through a real loopback Dask cluster (``dask scheduler`` + two ``dask
worker`` processes) lands what the in-process run does; with a worker SIGKILLed after the first
file, Dask reschedules its work and the lake still holds every row exactly once."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.dask_cluster import start_cluster
from tests.helpers import lake_tables
from warehouse.ingest import ingest_files
from warehouse.lake import Lake

pytestmark = pytest.mark.slow
MARKET = ["instruments", "statistics", "open_interest", "settlements", "mbo", "trades"]


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """Three SYNTHETIC sessions (9 files) ingested in process: the reference."""
    from ifd_core.simulator.market import simulate_market

    root = tmp_path_factory.mktemp("synthetic-dask")
    summary = simulate_market(root / "sim", 3, 5, scale=0.02)  # SYNTHETIC
    report = ingest_files(summary.files, Lake(root / "inline"))
    assert report.ok
    return {"root": root, "files": summary.files, "inline": report}


@pytest.fixture
def cluster(tmp_path):
    c = start_cluster(tmp_path / "dask")
    yield c
    c.stop()


def test_ingest_on_a_dask_cluster_equals_the_in_process_run(market, cluster, tmp_path, monkeypatch):
    from ifd_core.settings import get_settings
    from jobs.fanout import mapper_for

    monkeypatch.setenv("IFD_COMPUTE__RUNNER", "dask")
    monkeypatch.setenv("IFD_COMPUTE__DASK_ADDRESS", cluster.address)
    compute = get_settings(None).compute
    with mapper_for(compute) as mapper:
        report = ingest_files(market["files"], Lake(tmp_path / "dask-lake"), mapper=mapper)
    assert report.ok
    ref = market["inline"]
    assert [(r.path, r.status, r.rows, r.duplicates, len(r.dq)) for r in report.files] == [
        (r.path, r.status, r.rows, r.duplicates, len(r.dq)) for r in ref.files
    ]
    want, got = lake_tables(market["root"] / "inline"), lake_tables(tmp_path / "dask-lake")
    for t in want:
        assert want[t].equals(got[t]), t
    # the work really ran on the cluster's workers, not here
    logs = "".join((tmp_path / "dask" / f"worker-{i}.log").read_text() for i in range(2))
    assert "Starting established connection" in logs or "Registered to" in logs


def test_a_worker_killed_mid_run_loses_and_doubles_nothing(market, cluster, tmp_path):
    from distributed import Client, as_completed

    killed = []
    with Client(cluster.address) as client:

        def mapper(fn, items, done=None):
            futures = client.map(fn, list(items), pure=False)
            market_files = len(items) > 1 and any(".mbo." in j.path.name for j in items)
            if market_files and not killed:  # kill a worker once one market file is in
                next(as_completed(futures))
                killed.append(cluster.kill_worker(0))
            return client.gather(futures)

        report = ingest_files(market["files"], Lake(tmp_path / "killed"), mapper=mapper)
    assert killed
    assert report.ok, [r.reason for r in report.files if not r.ok]
    want = lake_tables(market["root"] / "inline", MARKET)
    got = lake_tables(tmp_path / "killed", MARKET)
    for t in MARKET:
        assert want[t].equals(got[t]), t  # every row once: none lost, none doubled
    log = Lake(tmp_path / "killed").scan("ingest_log").collect()
    added = sum(sum(json.loads(x).values()) for x in log["rows"])
    assert added == sum(sum(r.rows.values()) for r in market["inline"].files)
    # what the dead worker staged is rolled back by the next writer (docs/lake.md)
    lake = Lake(tmp_path / "killed")
    lake.recover()
    assert not [p for p in (lake.store / "staging").iterdir() if not p.name.startswith(".")]
