"""Render warehouse/README.md from the table definitions, so the doc cannot drift from the code.

Run `uv run python -m warehouse.docs` after changing tables or migrations; a test fails when the
committed README differs from what this renders.
"""

from __future__ import annotations

from pathlib import Path

from warehouse.descriptions import MACROS, VIEWS, column_doc
from warehouse.migrations import MIGRATIONS
from warehouse.tables import TABLES

README = Path(__file__).with_name("README.md")

HEADER = """# The IFD warehouse

A Parquet lake plus a DuckDB catalog of views over it (see docs/lake.md).

* Data root: `./data` by default, `IFD_WAREHOUSE__DATA_DIR` to move it. Inside it: `raw/` (immutable
  DBN files, `<dataset>/<schema>/<sha16>-<name>`), `lake/<table>/date=YYYY-MM-DD/<key>.parquet`
  (`lake` is a symlink to the current immutable snapshot under `lake.d/`; see docs/lake.md),
  `warehouse.duckdb` (the catalog), `quarantine/` (failed batches with `reason.txt`), `staging/`
  (raw files being copied; never read), `incoming/` (downloads of `ifd fetch`), `reports/`.
* Writers never open the catalog. A batch, a detection run or a compaction commits all its
  tables as one new snapshot, switched in by one atomic rename: readers see all of it or none of
  it, also when the writer is killed. Overlapping raw files are loaded as the multiset union of
  their records (a record counts as often as in the one file holding it most), so re-ingesting
  a file or a piece of one adds nothing. Readers (`ifd sql`, notebooks) open the catalog
  read-only; views glob `lake/<table>/*/*.parquet`.
* Every lake file carries all its table's columns, `date` (the CME Globex trade date: a session
  opening at 18:00 New York belongs to the next date) included. Prices are DBN fixed-point
  integers (1e-9); timestamps are integer nanoseconds since the epoch, UTC.
* Market rows carry `origin` (synthetic, replay, historical, live, backfill) and `source_sha`
  (the raw file they came from).
* The `trades` lake table holds MBO `T` records (`schema = 'mbo'`) and records of trades/tbbo files.
  The `trades` view keeps one source per (date, instrument): mbo, else trades, else tbbo, so the
  same prints are never counted twice; `trades_all` shows every row.
* **Decoded views for people** (the counterpart of Databento's `price_type="float"` and
  `pretty_ts`): every market-data view has a `<table>_decoded` twin (`mbo_decoded`,
  `trades_decoded`, `instruments_decoded`, `statistics_decoded`, `open_interest_decoded`,
  `settlements_decoded`, `bbo_decoded`, `ohlcv_decoded`, `status_decoded`) with the same columns
  under the same names, prices in points as DOUBLE (DBN's undefined price `UNDEF_PRICE` as NULL)
  and instants as `TIMESTAMPTZ` in UTC (microseconds; DBN's undefined time as NULL), and the raw
  integers beside them as `<column>_raw` (exact, nanoseconds; join the raw views on these):
  `ifd sql "SELECT ts_event, price, size, side FROM trades_decoded ORDER BY ts_event_raw LIMIT 5"`.
  `ifd sql` shows instants in UTC whatever the machine's time zone.

## Migrations

Applied on first use by any command (`warehouse/migrations.py`); recorded in `schema_migrations`.

| version | what |
|---|---|
"""


def render() -> str:
    lines = [HEADER.rstrip("\n")]
    lines += [f"| {v} | {name} |" for v, name, _ in MIGRATIONS]
    lines += [
        "",
        "Every view, column and macro carries a DuckDB comment from `warehouse/descriptions.py`",
        "(the meanings below): `SELECT table_name, column_name, comment FROM duckdb_columns()`.",
        "",
        "## Views over lake tables",
        "",
    ]
    for t in TABLES.values():
        lines += [f"### `{t.name}`", "", f"{t.description} Grain: {t.grain}.", ""]
        lines += ["| column | type | meaning |", "|---|---|---|"]
        lines += [f"| {c} | {dtype} | {column_doc(t.name, c)} |" for c, dtype in t.schema.items()]
        lines.append("")
    lines += ["## Other views", ""]
    for name, view in VIEWS.items():
        lines += [f"### `{name}`", "", view.description, ""]
        if view.inherits:
            lines += [f"Other columns as in {', '.join(f'`{b}`' for b in view.inherits)}.", ""]
        if view.columns:
            lines += ["| column | meaning |", "|---|---|"]
            lines += [f"| {c} | {doc} |" for c, doc in view.columns.items()]
            lines.append("")
    lines += ["## Table macros", ""]
    lines += [f"* `{name}`: {doc}" for name, doc in MACROS.items()]
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    README.write_text(render())
    print(f"wrote {README}")
