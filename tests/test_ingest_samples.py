"""Ingestion of the real Databento samples: each one is loaded or refused, never half-loaded."""

from __future__ import annotations

import pytest

from tests.conftest import DBPY, NT
from warehouse.ingest import ingest_files
from warehouse.sql import query

pytestmark = pytest.mark.usefixtures("samples")


def count(lake, table: str) -> int:
    return query(lake, f"SELECT count(*) AS n FROM {table}")["n"][0]


def test_every_sample_is_loaded_or_refused_with_one_line(lake, samples):
    paths = sorted(p for p in samples.rglob("*") if p.name.endswith((".dbn", ".dbn.zst")))
    assert len(paths) == 66
    report = ingest_files(paths, lake)
    by_name = {}
    for f in report.files:
        assert f.status in ("loaded", "refused", "quarantined")
        if not f.ok:
            assert f.reason and "\n" not in f.reason
        by_name.setdefault(f.path.name, []).append(f)
    # GLBX files with definitions load, in every DBN version.
    for name in ("test_data.mbo.v1.dbn.zst", "test_data.mbo.v2.dbn.zst", "test_data.mbo.v3.dbn"):
        assert by_name[name][0].status == "loaded"
    esm4 = "orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst"
    assert by_name[esm4][0].rows == {"mbo": 13796, "trades": 5}
    assert by_name["test_data.live.dbn.zst"][0].status == "loaded"
    assert by_name["test_data.live.dbn.zst"][0].skipped == {"mbp-10": 2}
    # Other datasets and unkept schemas are refused; data with no definition is quarantined.
    assert all(
        "IFD handles CME Globex" in f.reason
        for f in report.files
        if "OPRA" in str(f.path) or ".v1.dbn" in f.path.name and "definition" in f.path.name
    )
    assert "not kept" in by_name["test_data.mbp-10.dbn.zst"][0].reason
    esh4 = by_name["esh4-glbx-mdp3-20231225.mbo.dbn.zst"][0]
    assert esh4.status == "quarantined" and "no definition" in esh4.reason
    assert (esh4.quarantine_dir / "reason.txt").read_text().strip() == esh4.reason
    # ESM4, ESH1, the dbn fixtures (the same 2 records as v1, v2, v3 and v3 plain: loaded once), live
    assert count(lake, "mbo") == 13796 + 4 + 2 + 5


def test_reingest_leaves_exactly_the_same_rows(lake):
    files = [
        NT / "order_book_deltas_catalog/databento/orderbooks_definition.dbn.zst",
        NT
        / "order_book_deltas_catalog/databento/orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst",
        DBPY / "GLBX.MDP3/test_data.definition.dbn.zst",
        DBPY / "GLBX.MDP3/test_data.statistics.dbn.zst",
    ]
    assert ingest_files(files, lake).ok
    tables = ("mbo", "trades", "instruments", "statistics")
    first = {t: count(lake, t) for t in tables}
    digest = query(lake, "SELECT sum(hash(ts_recv, order_id, price, size)) AS h FROM mbo")["h"][0]
    assert first == {"mbo": 13796, "trades": 5, "instruments": 2, "statistics": 4}
    assert ingest_files(files, lake).ok
    assert {t: count(lake, t) for t in tables} == first
    assert (
        query(lake, "SELECT sum(hash(ts_recv, order_id, price, size)) AS h FROM mbo")["h"][0]
        == digest
    )
    # The raw file is kept once, and both runs are in the ingest log.
    assert len(list((lake.raw / "GLBX.MDP3" / "mbo").iterdir())) == 1
    assert count(lake, "ingest_log") == 8


def test_rows_carry_origin_and_trade_date(lake):
    files = [
        NT / "order_book_deltas_catalog/databento/orderbooks_definition.dbn.zst",
        NT
        / "order_book_deltas_catalog/databento/orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst",
    ]
    assert ingest_files(files, lake).ok
    rows = query(lake, "SELECT DISTINCT origin, date::VARCHAR AS d FROM mbo")
    assert rows.to_dicts() == [{"origin": "historical", "d": "2024-05-08"}]
    dq = query(
        lake,
        "SELECT dataset, bool_and(success) AS ok, count(*) AS n FROM dq_results GROUP BY 1 ORDER BY 1",
    )
    assert dq.to_dicts() == [
        {"dataset": "instruments", "ok": True, "n": 5},
        {"dataset": "mbo", "ok": True, "n": 9},
    ]


def test_globex_evening_records_belong_to_the_next_trade_date(lake):
    # ESU4 trades 2024-07-01 23:58 UTC (19:58 New York) are in the session of trade date 07-02.
    files = [
        NT / "historical_bars_catalog/databento/futures_definition.dbn.zst",
        NT
        / "historical_bars_catalog/databento/futures_trades_2024-07-01T23-58_2024-07-02T00-02.dbn.zst",
    ]
    assert ingest_files(files, lake).ok
    assert query(lake, "SELECT DISTINCT date::VARCHAR AS d FROM trades")["d"].to_list() == [
        "2024-07-02"
    ]


def test_open_interest_and_settlements_split_from_statistics(lake):
    files = [DBPY / "LIVE/test_data.live.dbn.zst"]
    assert ingest_files(files, lake).ok
    stats = query(lake, "SELECT stat_type, count(*) AS n FROM statistics GROUP BY 1 ORDER BY 1")
    oi = count(lake, "open_interest")
    settle = count(lake, "settlements")
    assert oi == stats.filter(stats["stat_type"] == 9)["n"].sum()
    assert settle == stats.filter(stats["stat_type"] == 3)["n"].sum()


def test_same_records_in_another_encoding_load_once(lake):
    base = SAMPLES_DBN = DBPY.parents[2] / "dbn" / "tests" / "data"
    defs = DBPY / "GLBX.MDP3/test_data.definition.dbn.zst"
    files = [
        base / f"test_data.mbo.{v}" for v in ("v1.dbn.zst", "v2.dbn.zst", "v3.dbn", "v3.dbn.zst")
    ]
    assert SAMPLES_DBN.exists()
    report = ingest_files([defs, *files], lake)
    assert report.ok
    assert count(lake, "mbo") == 2
    assert len(lake.files("mbo")) == 1


def test_failed_publish_rolls_back_every_table(lake, monkeypatch):
    files = [
        NT / "order_book_deltas_catalog/databento/orderbooks_definition.dbn.zst",
        NT
        / "order_book_deltas_catalog/databento/orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst",
    ]
    assert ingest_files(files[:1], lake).ok
    import os

    real_link = os.link

    def flaky(src, dst):
        if "/trades/" in str(dst):  # mbo's partition is linked, then the disk fills up
            raise OSError("disk full")
        return real_link(src, dst)

    monkeypatch.setattr("warehouse.lake.os.link", flaky)
    before = lake.snapshot_id()
    report = ingest_files(files[1:], lake)
    monkeypatch.setattr("warehouse.lake.os.link", real_link)
    assert lake.snapshot_id() == before
    assert report.files[0].status == "refused" and "disk full" in report.files[0].reason
    assert count(lake, "mbo") == 0 and count(lake, "trades") == 0
    assert not [p for p in lake.staging.iterdir() if p.suffix != ".raw"]
    assert not list((lake.store / "staging").iterdir())
    assert ingest_files(files[1:], lake).ok  # the garbage of the failed commit is no obstacle
    assert count(lake, "mbo") == 13796
