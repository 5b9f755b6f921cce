"""Lake compaction: an old partition's many small append-only files become one with the same
rows; recent dates, dates a live run has not finished and source-keyed tables are left alone."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest

from warehouse.compaction import compact_lake
from warehouse.lake import Lake
from warehouse.migrations import ensure_migrated
from warehouse.ops_events import write_incident_rows
from warehouse.sql import query

TODAY = dt.date(2026, 3, 20)


def _incidents(lake: Lake, day: dt.date, n: int) -> None:
    for i in range(n):
        at = dt.datetime(day.year, day.month, day.day, 14, i, tzinfo=dt.UTC)
        write_incident_rows(
            lake,
            [
                {
                    "run_id": f"r{i}",
                    "kind": "feed_stale",
                    "state": "open",
                    "severity": "warning",
                    "opened_at": at,
                    "resolved_at": None,
                    "detail": f"incident {i}",
                }
            ],
        )


@pytest.fixture
def lake(tmp_path) -> Lake:
    lake = Lake(tmp_path)
    ensure_migrated(lake)
    return lake


def test_an_old_partition_becomes_one_file_with_the_same_rows(lake):
    old, recent, busy = dt.date(2026, 3, 10), dt.date(2026, 3, 19), dt.date(2026, 3, 11)
    for day in (old, recent, busy):
        _incidents(lake, day, 9)
    live = lake.root / "live"
    live.mkdir()
    (live / f"checkpoint-{busy}.json").write_text(
        json.dumps({"day": str(busy), "finalized": False})
    )
    before = lake.scan("incidents").collect().sort("opened_at")
    sql_before = query(lake, "SELECT count(*) AS n FROM incidents")["n"][0]

    done = compact_lake(lake, today=TODAY, min_files=8, min_age_days=2)

    assert [(c.table, c.day, c.files_before, c.rows) for c in done] == [("incidents", old, 9, 9)]
    assert len(lake.files("incidents", old)) == 1
    assert len(lake.files("incidents", recent)) == 9  # younger than two days
    assert len(lake.files("incidents", busy)) == 9  # a live run may still rewrite it
    after = lake.scan("incidents").collect().sort("opened_at")
    assert after.equals(before)
    assert query(lake, "SELECT count(*) AS n FROM incidents")["n"][0] == sql_before == 27
    # Again: nothing left to do (one file is below the threshold).
    assert compact_lake(lake, today=TODAY) == []


def test_source_keyed_tables_are_refused(lake):
    with pytest.raises(ValueError, match="keyed by source"):
        compact_lake(lake, tables=["signals"], today=TODAY)


def test_the_flow_reports_what_it_merged(lake, monkeypatch, prefect_server):
    from flows.lake_compaction import lake_compaction

    _incidents(lake, dt.date(2020, 1, 6), 8)
    monkeypatch.setenv("IFD_WAREHOUSE__DATA_DIR", str(lake.root))
    out = lake_compaction(min_files=8)
    assert out["partitions"] == 1 and out["files_before"] == 8
    assert pl.read_parquet(lake.files("incidents", dt.date(2020, 1, 6))).height == 8
