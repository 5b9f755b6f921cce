"""Every SQL example of the README, the docs and examples/ runs against the catalog's schema, and
examples that sum the trading ledger pick a run or a mode (the ledger keeps every run)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import polars as pl
import pytest

from warehouse.migrations import ensure_migrated
from warehouse.sql import query
from warehouse.tables import TABLES

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "warehouse" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# `ifd sql "SELECT ..."` in prose or code blocks (not the QUERY placeholder, nor
# `"$(cat file.sql)"`: the files of examples/ are tested below).
_INLINE = re.compile(r'ifd sql "((?:[^"\\]|\\.)+)"')
LEDGER = ("orders", "fills", "positions", "pnl_daily")


def examples() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for m in _INLINE.finditer(doc.read_text()):
            if re.match(r"\s*(SELECT|WITH|EXPLAIN|FROM)\b", m.group(1), re.IGNORECASE):
                found.append((f"{doc.relative_to(ROOT)}: {m.group(1)[:60]}", m.group(1)))
    for sql in sorted((ROOT / "examples").glob("*.sql")):
        found.append((str(sql.relative_to(ROOT)), sql.read_text()))
    return found


EXAMPLES = examples()


def test_the_docs_have_sql_examples_to_check():
    names = " ".join(n for n, _ in EXAMPLES)
    assert len(EXAMPLES) >= 8 and "examples/" in names
    assert any("FROM positions" in s for _, s in EXAMPLES)


@pytest.mark.parametrize("sql", [s for _, s in EXAMPLES], ids=[n for n, _ in EXAMPLES])
def test_every_documented_query_binds_against_the_catalog(lake, sql):
    ensure_migrated(lake)
    query(lake, sql)  # DuckDB binds every table, column and function: a renamed one fails here


@pytest.mark.parametrize("sql", [s for _, s in EXAMPLES], ids=[n for n, _ in EXAMPLES])
def test_examples_that_aggregate_the_ledger_pick_a_run_or_a_mode(sql):
    words = set(re.findall(r"[a-z_]+", sql.lower()))
    aggregates = words & {"sum", "count", "avg", "group"}
    if words & set(LEDGER) and aggregates:
        assert words & {"run_id", "mode"}, f"sums every run of the ledger: {sql}"


def _positions(run_id: str, mode: str, pnls: list[float]) -> pl.DataFrame:
    """SYNTHETIC ledger rows: one closed position per P&L, all on one trade date."""
    n = len(pnls)
    cols = {
        "date": [dt.date(2026, 3, 30)] * n,
        "run_id": [run_id] * n,
        "mode": [mode] * n,
        "algo": ["v3"] * n,
        "origin": ["synthetic"] * n,
        "position_id": [f"{run_id}-{i}" for i in range(n)],
        "exit_reason": ["target"] * n,
        "net_pnl": pnls,
    }
    return (
        pl.DataFrame(cols)
        .with_columns(
            pl.lit(None, dtype=t).alias(c)
            for c, t in TABLES["positions"].schema.items()
            if c not in cols
        )
        .select([pl.col(c).cast(t) for c, t in TABLES["positions"].schema.items()])
    )


def test_the_readme_positions_example_sums_one_run_not_all_of_them(lake):
    """As after `ifd demo`: a backtest and two extended-test runs over the same days."""
    ensure_migrated(lake)
    for run_id, mode in [
        ("bt-20260330T120000-aaaaaa", "backtest"),
        ("bt-20260330T120100-bbbbbb", "extended"),
        ("bt-20260330T120200-cccccc", "extended"),
    ]:
        lake.write("positions", _positions(run_id, mode, [1000.0, 1727.0]), run_id)
    readme = [s for n, s in EXAMPLES if n.startswith("README.md") and "FROM positions" in s]
    one_run = next(s for s in readme if "max(run_id)" in s)
    assert query(lake, one_run)["net_pnl"].sum() == 2727.0
    assert query(lake, "SELECT sum(net_pnl) AS s FROM positions")["s"][0] == 3 * 2727.0
