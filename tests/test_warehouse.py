"""Catalog migrations, read-only SQL, and SQL while another process ingests."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest
from typer.testing import CliRunner

from ifd_cli.app import EXIT_USAGE, app
from tests.conftest import NT
from tests.fixtures import dbn_factory as f
from warehouse.lake import Lake
from warehouse.migrations import LATEST, MIGRATIONS, ensure_migrated
from warehouse.sql import SqlError, query
from warehouse.tables import TABLES

runner = CliRunner()


def test_migrations_apply_once_and_create_every_view(lake):
    assert ensure_migrated(lake) == [v for v, _, _ in MIGRATIONS]
    assert ensure_migrated(lake) == []
    con = duckdb.connect(str(lake.catalog_path), read_only=True)
    views = {
        r[0]
        for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    }
    versions = con.execute("SELECT max(version) FROM schema_migrations").fetchall()[0][0]
    con.close()
    assert set(TABLES) | {"dq_summary"} <= views
    assert versions == LATEST
    for table in TABLES:  # every view answers, with the table's columns, before any data exists
        df = query(lake, f"SELECT * FROM {table}")
        assert df.height == 0 and df.columns == list(TABLES[table].schema)


def test_moved_data_root_gets_new_views(tmp_path):
    a = Lake(tmp_path / "a")
    ensure_migrated(a)
    os.rename(tmp_path / "a", tmp_path / "b")
    b = Lake(tmp_path / "b")
    assert ensure_migrated(b) == [v for v, _, _ in MIGRATIONS]
    assert query(b, "SELECT count(*) AS n FROM mbo")["n"][0] == 0


@pytest.mark.parametrize(
    "sql",
    ["DELETE FROM mbo", "CREATE TABLE x (a INT)", "COPY (SELECT 1) TO 'x.csv'", "ATTACH 'y.db'"],
)
def test_sql_is_read_only(lake, sql):
    with pytest.raises(SqlError, match="read-only"):
        query(lake, sql)


def test_a_file_replaced_under_a_query_is_read_again_not_reported(lake, monkeypatch):
    """The live flow publishes and consolidates files while users query: a file gone between
    DuckDB's glob and its read is retried (a few times), any other error is not."""
    import warehouse.sql as sql_mod

    real = sql_mod.connect_read_only
    calls = {"n": 0}

    class Vanishing:
        def __init__(self, con, message):
            self.con, self.message = con, message

        def sql(self, *a, **k):
            raise duckdb.IOException(self.message)

        def close(self):
            self.con.close()

    def flaky(lk, message="IO Error: No files found that match the pattern x.parquet", **kw):
        calls["n"] += 1
        con = real(lk, **kw)
        return Vanishing(con, message) if calls["n"] <= 2 else con

    monkeypatch.setattr(sql_mod, "connect_read_only", flaky)
    assert query(lake, "SELECT count(*) AS n FROM mbo")["n"][0] == 0
    assert calls["n"] == 3
    calls["n"] = 0
    monkeypatch.setattr(
        sql_mod, "connect_read_only", lambda lk, **kw: flaky(lk, "IO Error: disk full", **kw)
    )
    with pytest.raises(SqlError, match="disk full"):
        query(lake, "SELECT count(*) AS n FROM mbo")
    assert calls["n"] == 1


def test_sql_command_formats(data_dir):
    res = runner.invoke(app, ["sql", "SELECT 42 AS answer, 'NQ' AS root", "--json"])
    assert res.exit_code == 0 and '"answer": 42' in res.output
    res = runner.invoke(app, ["sql", "SELECT 42 AS answer", "--csv"])
    assert res.output.strip().splitlines() == ["answer", "42"]
    res = runner.invoke(app, ["sql", "DROP VIEW mbo"])
    assert res.exit_code == EXIT_USAGE and "read-only" in res.stderr
    res = runner.invoke(app, ["sql", "SELECT * FROM no_such_table"])
    assert res.exit_code == EXIT_USAGE and "no_such_table" in res.stderr


def _ingest_script(paths: list[Path], data_dir: Path, rounds: int) -> list[str]:
    code = (
        "import sys; from warehouse.lake import Lake; from warehouse.ingest import ingest_files\n"
        f"paths = {[str(p) for p in paths]!r}\n"
        f"for _ in range({rounds}):\n"
        f"    assert ingest_files(paths, Lake({str(data_dir)!r})).ok\n"
        "print('writer done')\n"
    )
    return [sys.executable, "-c", code]


@pytest.mark.slow
def test_sql_works_while_another_process_ingests(tmp_path, data_dir):
    ensure_migrated(Lake(data_dir))
    mbo = (
        NT
        / "order_book_deltas_catalog/databento/orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst"
    )
    defs = NT / "order_book_deltas_catalog/databento/orderbooks_definition.dbn.zst"
    extra = [f.definition_file(tmp_path / "d.dbn.zst", {"NQM6 C21000": (5001, 21000.0)})]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    writer = subprocess.Popen(
        _ingest_script([defs, mbo, *extra], data_dir, 6),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    counts, errors = [], []
    try:
        while writer.poll() is None:
            reader = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "ifd_cli.app",
                    "sql",
                    "SELECT count(*) AS n FROM mbo",
                    "--csv",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if reader.returncode:
                errors.append(reader.stderr)
            else:
                counts.append(int(reader.stdout.split()[-1]))
            time.sleep(0.05)
    finally:
        out, err = writer.communicate(timeout=300)
    assert writer.returncode == 0, err
    assert not errors, errors[:3]
    assert len(counts) >= 2
    assert set(counts) <= {0, 13796}  # a reader sees the whole file or none of it, never a part
    assert counts[-1] in (0, 13796)
    assert query(Lake(data_dir), "SELECT count(*) AS n FROM mbo")["n"][0] == 13796


def test_warehouse_readme_lists_every_table_as_the_code_defines_it():
    from warehouse.docs import README, render

    assert README.read_text() == render(), "run: uv run python -m warehouse.docs"


def test_trades_view_counts_each_print_once(lake):
    from tests.conftest import DBPY
    from warehouse.ingest import ingest_files

    g = DBPY / "GLBX.MDP3"
    files = [
        g / "test_data.definition.dbn.zst",
        g / "test_data.trades.dbn.zst",
        g / "test_data.tbbo.dbn.zst",
    ]
    assert ingest_files(files, lake).ok
    both = query(lake, "SELECT schema, count(*) AS n FROM trades_all GROUP BY 1 ORDER BY 1")
    assert both.to_dicts() == [{"schema": "tbbo", "n": 4}, {"schema": "trades", "n": 4}]
    assert query(lake, "SELECT DISTINCT schema FROM trades")["schema"].to_list() == ["trades"]


def test_open_interest_asof_never_sees_the_future(lake):
    from tests.conftest import DBPY
    from warehouse.ingest import ingest_files

    assert ingest_files([DBPY / "LIVE/test_data.live.dbn.zst"], lake).ok
    published = query(lake, "SELECT min(ts_recv) AS t FROM open_interest")["t"][0]
    before = query(
        lake,
        f"SELECT count(*) AS n FROM open_interest_asof(make_timestamptz({published // 1000 - 1}))",
    )
    after = query(
        lake,
        f"SELECT count(*) AS n FROM open_interest_asof(make_timestamptz({published // 1000 + 1}))",
    )
    assert before["n"][0] == 0 and after["n"][0] == 1


def test_a_query_reads_the_snapshot_it_started_on(lake):
    """`ifd sql` pins the lake tables its query reaches (through views too) to one snapshot: a
    commit during the query does not move it, the next query sees the commit."""
    from warehouse.sql import connect_read_only

    ensure_migrated(lake)
    con = connect_read_only(lake, pin_for="SELECT count(*) FROM dq_summary")
    first = con.execute("SELECT count(*) FROM dq_summary").fetchone()[0]
    row = {c: None for c in TABLES["dq_results"].schema} | {
        "date": dt.date(2026, 3, 2),
        "run_id": "r1",
        "dataset": "GLBX.MDP3",
        "source_file": "x",
        "batch_success": True,
        "success": True,
    }
    lake.write("dq_results", pl.DataFrame([row], schema=TABLES["dq_results"].pl_schema), "k")
    assert con.execute("SELECT count(*) FROM dq_summary").fetchone()[0] == first == 0
    con.close()
    assert query(lake, "SELECT count(*) AS n FROM dq_summary")["n"][0] == 1


def test_a_migration_numbered_below_the_latest_applied_still_runs(lake, monkeypatch):
    """Version numbers may land out of order (12 merged before 11): the runner applies every
    version it has not applied yet, in number order, not only those above the highest."""
    import warehouse.migrations as m

    full = list(MIGRATIONS)
    assert {11, 12} <= m.ALL_VERSIONS
    without = [mig for mig in full if mig[0] != 11]
    monkeypatch.setattr(m, "MIGRATIONS", without)
    monkeypatch.setattr(m, "ALL_VERSIONS", frozenset(v for v, _, _ in without))
    assert ensure_migrated(lake) == [v for v, _, _ in without]
    monkeypatch.setattr(m, "MIGRATIONS", full)
    monkeypatch.setattr(m, "ALL_VERSIONS", frozenset(v for v, _, _ in full))
    assert ensure_migrated(lake) == [11]
    assert ensure_migrated(lake) == []
