"""Superseded snapshots are collected once no reader can need them; what is current stays."""

from __future__ import annotations

import datetime as dt
import os

import polars as pl

import warehouse.lake as lake_mod
from warehouse.tables import TABLES


def _rows(i: int) -> pl.DataFrame:
    row = {c: None for c in TABLES["incidents"].schema} | {
        "date": dt.date(2026, 3, 2),
        "run_id": f"r{i}",
        "kind": "test",
    }
    return pl.DataFrame([row], schema=TABLES["incidents"].pl_schema)


def test_old_snapshots_and_versions_are_collected_after_the_retention(lake, monkeypatch):
    for i in range(5):
        lake.write("incidents", _rows(i), f"k{i}")
    snaps = lambda: [p for p in os.listdir(lake.store / "snap") if p.isdigit()]  # noqa: E731
    pvs = lambda: os.listdir(lake.store / "pv" / "incidents" / "date=2026-03-02")  # noqa: E731
    assert len(snaps()) == 5 + 1 and len(pvs()) == 5  # retained: younger than RETENTION_S
    monkeypatch.setattr(lake_mod, "RETENTION_S", 0.0)
    monkeypatch.setattr(lake_mod, "GC_EVERY_S", 0.0)
    lake.write("incidents", _rows(5), "k5")
    assert sorted(map(int, snaps())) == [5, 6]  # the newest KEEP_SNAPSHOTS
    assert len(pvs()) == 2
    assert lake.scan("incidents").collect()["run_id"].sort().to_list() == [
        f"r{i}" for i in range(6)
    ]


def test_a_dead_writers_transaction_is_rolled_back_and_reported(lake):
    lake.write("incidents", _rows(0), "k0")
    tx = lake._begin("ingest something")  # a writer that dies: its lock is released
    tx.put("incidents", _rows(1), "k1")
    os.close(tx._lockfd)
    tx._lockfd = -1
    assert (lake.store / "staging" / tx.txn).exists()
    rolled = lake.recover()
    assert [r["unit"] for r in rolled] == ["ingest something"]
    assert not (lake.store / "staging" / tx.txn).exists()
    assert lake.scan("incidents").collect().height == 1


def test_a_live_writers_transaction_is_left_alone(lake):
    tx = lake._begin("still running")
    assert lake.recover() == []
    assert (lake.store / "staging" / tx.txn).exists()
    lake._end(tx)
