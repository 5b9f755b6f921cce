"""Every view, column and macro of the catalog carries a DuckDB comment from one description."""

from __future__ import annotations

import duckdb
from typer.testing import CliRunner

from ifd_cli.app import app
from warehouse.descriptions import MACROS, VIEWS, column_doc, fingerprint, view_doc
from warehouse.migrations import _signal_episodes, ensure_migrated
from warehouse.sql import query
from warehouse.tables import TABLES

runner = CliRunner()

IFD_VIEWS = "SELECT view_name FROM duckdb_views() WHERE NOT internal AND NOT temporary"


def _ro(lake) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(lake.catalog_path), read_only=True)


def test_every_lake_column_has_a_meaning():
    missing = [(t, c) for t, tab in TABLES.items() for c in tab.schema if not column_doc(t, c)]
    assert missing == []


def test_every_view_and_column_of_a_new_catalog_is_commented(lake):
    ensure_migrated(lake)
    with _ro(lake) as con:
        views = {v for (v,) in con.execute(IFD_VIEWS).fetchall()}
        assert views == set(TABLES) | set(VIEWS)  # the description knows every view, no more
        uncommented = con.execute(
            f"SELECT table_name, column_name FROM duckdb_columns() "
            f"WHERE table_name IN ({IFD_VIEWS}) AND comment IS NULL"
        ).fetchall()
        assert uncommented == []
        n = con.execute(f"SELECT count(*) FROM duckdb_columns() WHERE table_name IN ({IFD_VIEWS})")
        assert n.fetchall()[0][0] > 500
        view_comments = dict(
            con.execute(
                "SELECT view_name, comment FROM duckdb_views() WHERE NOT internal"
            ).fetchall()
        )
        assert view_comments["signals"] == view_doc("signals")
        assert view_comments["cost_monthly"] == VIEWS["cost_monthly"].description
        # Notebook tools read information_schema; derived views inherit their sources' meanings.
        col = con.execute(
            "SELECT column_comment FROM information_schema.columns "
            "WHERE table_name = 'signals_with_outcomes' AND column_name = 'label'"
        ).fetchall()[0][0]
        assert col == column_doc("signal_outcomes", "label")
        macros = dict(
            con.execute(
                "SELECT function_name, comment FROM duckdb_functions() "
                "WHERE function_type = 'table_macro' AND NOT internal"
            ).fetchall()
        )
        assert macros == MACROS
        assert con.execute("SELECT value FROM catalog_meta WHERE key = 'comments'").fetchall() == [
            (fingerprint(),)
        ]


def test_a_catalog_made_before_comments_gets_them_on_first_use(lake):
    ensure_migrated(lake)
    con = duckdb.connect(str(lake.catalog_path))
    # As an older IFD left it: a view re-created by a migration (comments dropped), no
    # fingerprint of the descriptions.
    _signal_episodes(con, lake)
    con.execute("DELETE FROM catalog_meta WHERE key = 'comments'")
    n = con.execute(
        "SELECT count(*) FROM duckdb_columns() WHERE table_name = 'signal_episodes' "
        "AND comment IS NULL"
    ).fetchall()[0][0]
    con.close()
    assert n > 0  # the re-created view lost its comments
    assert ensure_migrated(lake) == []  # no migration was pending, yet ...
    with _ro(lake) as con:
        left = con.execute(
            f"SELECT count(*) FROM duckdb_columns() WHERE table_name IN ({IFD_VIEWS}) "
            "AND comment IS NULL"
        ).fetchall()[0][0]
    assert left == 0  # ... the comments came back


def test_views_pinned_by_a_query_explain_their_columns_too(lake):
    # `ifd sql` shadows the lake tables a query reads with TEMP views over one snapshot.
    out = query(
        lake,
        "SELECT database_name, count(*) AS n, count(comment) AS commented FROM duckdb_columns() "
        "WHERE table_name = 'signals' GROUP BY ALL ORDER BY ALL",
    )
    assert out["database_name"].to_list() == ["temp", "warehouse"]
    assert out["n"].to_list() == out["commented"].to_list()


def test_sql_help_lists_every_view_and_macro():
    res = runner.invoke(app, ["sql", "--help"], env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    for name in [*TABLES, *VIEWS, *MACROS]:
        assert f" {name}" in text, name
