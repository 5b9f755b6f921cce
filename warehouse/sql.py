"""Read-only SQL over the catalog, safe to run while flows write the lake.

The catalog file is opened ``read_only`` for the duration of one query (DuckDB 2.0 locks files
exclusively, and the lake's writers never open it), and only statements that cannot change
anything are accepted, so `ifd sql` can never alter the warehouse.
"""

from __future__ import annotations

import re
import time

import duckdb
import polars as pl
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_fixed

from warehouse.lake import Lake
from warehouse.migrations import ensure_migrated

READ_ONLY_TYPES = {"SELECT", "EXPLAIN"}
VANISHED_ATTEMPTS = 5


class SqlError(ValueError):
    """A query that was refused or failed; the message is one line for the user."""


def _check(query: str) -> None:
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise SqlError(f"SQL does not parse: {str(exc).splitlines()[0]}") from exc
    if not statements:
        raise SqlError("empty query")
    for st in statements:
        kind = st.type.name
        if kind not in READ_ONLY_TYPES:
            raise SqlError(f"only read-only queries are allowed (SELECT, EXPLAIN); got {kind}")
        if kind == "EXPLAIN":
            # EXPLAIN ANALYZE runs what it wraps (a COPY would write files): only plain SELECTs.
            inner = re.sub(r"^\s*EXPLAIN\s+(ANALYZE\s+)?", "", st.query, flags=re.IGNORECASE)
            if re.match(r"^\s*EXPLAIN\s+ANALYZE", st.query, flags=re.IGNORECASE):
                raise SqlError("EXPLAIN ANALYZE executes its statement; use EXPLAIN (read-only)")
            _check(inner)


def connect_read_only(lake: Lake, timeout_s: float = 10.0) -> duckdb.DuckDBPyConnection:
    ensure_migrated(lake)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return duckdb.connect(str(lake.catalog_path), read_only=True)
        except duckdb.IOException as exc:  # a migration holds it for a moment
            if time.monotonic() > deadline:
                raise SqlError(f"catalog busy: {str(exc).splitlines()[0]}") from exc
            time.sleep(0.05)


def _file_vanished(exc: BaseException) -> bool:
    """A writer replaced or consolidated a file between DuckDB's glob and its read (the lake
    publishes by rename and removes superseded files): the next attempt sees the new set."""
    msg = str(exc)
    return isinstance(exc, duckdb.IOException) and (
        "No such file" in msg or "No files found" in msg or "Cannot open file" in msg
    )


@retry(retry=retry_if_exception(_file_vanished), stop=stop_after_attempt(VANISHED_ATTEMPTS),
       wait=wait_fixed(0.05), reraise=True)  # fmt: skip
def _run(lake: Lake, sql: str, params: list | None) -> pl.DataFrame:
    con = connect_read_only(lake)
    try:
        rel = con.sql(sql, params=params) if params else con.sql(sql)
        return rel.pl() if rel is not None else pl.DataFrame()
    finally:
        con.close()


def query(lake: Lake, sql: str, params: list | None = None) -> pl.DataFrame:
    _check(sql)
    try:
        return _run(lake, sql, params)
    except duckdb.Error as exc:
        raise SqlError(str(exc).splitlines()[0]) from exc
