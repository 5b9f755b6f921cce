"""Read-only SQL over the catalog, safe to run while flows write the lake.

Each query opens the catalog ``read_only`` in ``connect_read_only``, accepts one statement that
cannot change anything, may read files only under the data root and
``warehouse.sql_allowed_directories`` (no other file, URL or extension; configuration locked), and
runs in a worker thread so a timeout or Ctrl-C can stop it at once with DuckDB's ``interrupt()``.
Rules and output formats: README "SQL"; the snapshot a query pins: docs/lake.md.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import duckdb
import polars as pl
from duckdb.sqltypes import DuckDBPyType
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_fixed

from warehouse.descriptions import comment_temp_view
from warehouse.lake import Lake
from warehouse.migrations import ensure_migrated
from warehouse.tables import TABLES

READ_ONLY_TYPES = {"SELECT", "EXPLAIN"}
VANISHED_ATTEMPTS = 5
# After a timeout or Ctrl-C, how long to wait for the worker to wind down (DuckDB answers an
# interrupt within milliseconds; only a catalog-busy wait or a big result's conversion is slower).
STOP_GRACE_S = 10.0
_POLL_S = 0.05

# Run after `allowed_directories` is set, in this order. With external access off, DuckDB still
# reads the allowed directories (and its own temp directory, <catalog>.tmp in the data root), and
# refuses every other path, URL, INSTALL/LOAD, getenv(). The lock comes last.
LOCK_DOWN = (
    # TIMESTAMPTZ values (the decoded views' instants) print in UTC, as every IFD instant is
    # stated, whatever the machine's zone; a notebook's own connection keeps its zone.
    "SET TimeZone = 'UTC'",
    "SET enable_external_access = false",
    # A query on http:// or s3:// fails at once: httpfs is never downloaded nor loaded.
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET python_enable_replacements = false",  # no scans of the caller's Python variables
    "SET enable_progress_bar = false",  # DuckDB would draw it on stdout, amid CSV or JSON
    "SET lock_configuration = true",
)


class SqlError(ValueError):
    """A query that was refused or failed; the message is one line for the user."""


class SqlTimeout(SqlError):
    """The query ran past its timeout and was interrupted."""


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# Whitespace and comments, which may sit between EXPLAIN, its options and what it wraps.
_GAP = r"(?:\s|--[^\n]*(?:\n|$)|/\*.*?\*/)*"
_EXPLAIN = re.compile(
    rf"{_GAP}EXPLAIN\b{_GAP}(?:\((?P<options>[^)]*)\))?{_GAP}(?P<analyze>ANALY[SZ]E\b)?",
    re.IGNORECASE | re.DOTALL,
)


def _check(query: str) -> str:
    """Accept exactly one read-only statement; return its text without the comments and
    semicolons around it (duckdb's relations wrap the text, where a trailing ``; -- note``
    would not parse)."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise SqlError(f"SQL does not parse: {_first_line(exc)}") from exc
    if not statements:
        raise SqlError("empty query")
    if len(statements) > 1:
        # duckdb would run them all and return the last result: refuse rather than guess.
        raise SqlError(f"only one statement is allowed; got {len(statements)}")
    _check_statement(statements[0], explain_ok=True)
    return _without_trailing_noise(statements[0].query)


def _without_trailing_noise(text: str) -> str:
    cut = len(text)
    for pos, kind in reversed(duckdb.tokenize(text)):
        if kind != duckdb.token_type.comment and text[pos] != ";":
            break
        cut = pos
    return text[:cut].rstrip()


def _check_statement(st, *, explain_ok: bool) -> None:
    kind = st.type.name
    if kind not in READ_ONLY_TYPES or (kind == "EXPLAIN" and not explain_ok):
        raise SqlError(f"only read-only queries are allowed (SELECT, EXPLAIN); got {kind}")
    if kind == "EXPLAIN":
        # EXPLAIN ANALYZE runs what it wraps (a COPY would write files): only plain SELECTs.
        m = _EXPLAIN.match(st.query)
        if m is None:
            raise SqlError("cannot tell what this EXPLAIN wraps; EXPLAIN a SELECT")
        if m["analyze"] or re.search(r"\bANALY[SZ]E\b", m["options"] or "", re.IGNORECASE):
            raise SqlError("EXPLAIN ANALYZE executes its statement; use EXPLAIN (read-only)")
        try:
            inner = duckdb.extract_statements(st.query[m.end() :])
        except duckdb.Error as exc:
            raise SqlError(f"SQL does not parse: {_first_line(exc)}") from exc
        if len(inner) != 1:
            raise SqlError("cannot tell what this EXPLAIN wraps; EXPLAIN a SELECT")
        _check_statement(inner[0], explain_ok=False)


def _open_read_only(lake: Lake, busy_timeout_s: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + busy_timeout_s
    while True:
        try:
            return duckdb.connect(str(lake.catalog_path), read_only=True)
        except duckdb.IOException as exc:  # a migration holds it for a moment
            if time.monotonic() > deadline:
                raise SqlError(f"catalog busy: {_first_line(exc)}") from exc
            time.sleep(0.05)


def _dir_prefix(d: Path | str) -> str:
    return str(Path(d).expanduser().resolve()).rstrip("/") + "/"


def connect_read_only(
    lake: Lake,
    busy_timeout_s: float = 10.0,
    *,
    allowed_directories: Iterable[Path | str] = (),
    pin_for: str | None = None,
) -> duckdb.DuckDBPyConnection:
    """The connection every query runs on: the catalog opened read-only, then locked down.

    Steps, in order (add new per-connection setup, e.g. TEMP views, between 2 and 3, or before
    the final ``lock_configuration`` if it needs a SET):
      1. open the catalog ``read_only``, waiting up to ``busy_timeout_s`` while a migration
         holds it;
      2. DuckDB's ``allowed_directories`` = the data root, the catalog's directory and
         ``allowed_directories``;
      3. with ``pin_for`` (a query), the lake tables it reads, directly or through the
         catalog's views, are pinned to the current snapshot by TEMP views of the same names
         (they shadow the catalog's, inside other views too): the query reads one consistent
         state even while writers commit (docs/lake.md);
      4. `LOCK_DOWN`: external access off (those directories stay readable), no extension
         install or autoload, no Python replacement scans, configuration locked.
    """
    ensure_migrated(lake)
    con = _open_read_only(lake, busy_timeout_s)
    try:
        dirs = [lake.root, lake.catalog_path.parent, *allowed_directories]
        con.execute("SET allowed_directories = ?", [sorted({_dir_prefix(d) for d in dirs})])
        if pin_for is not None:
            _pin(con, lake, pin_for)
        for statement in LOCK_DOWN:
            con.execute(statement)
    except BaseException:
        con.close()
        raise
    return con


_WORD = re.compile(r"[a-z_][a-z0-9_]*")


def _pin(con: duckdb.DuckDBPyConnection, lake: Lake, sql: str) -> None:
    """TEMP views over the current snapshot for the lake tables ``sql`` reaches."""
    views = dict(
        con.execute(
            "SELECT lower(view_name), lower(sql) FROM duckdb_views() "
            "WHERE NOT internal AND NOT temporary"
        ).fetchall()
    )
    seen: set[str] = set()
    todo = _WORD.findall(sql.lower())
    while todo:
        word = todo.pop()
        if word not in seen:
            seen.add(word)
            todo += _WORD.findall(views.get(word, ""))
    snap = lake.snapshot_dir()
    for table in TABLES:
        name = "trades_all" if table == "trades" else table  # `trades` is a view over it
        if name in seen:
            glob = str(snap / table / "*" / "*.parquet").replace("'", "''")
            con.execute(
                f"CREATE TEMP VIEW \"{name}\" AS SELECT * FROM read_parquet('{glob}', "
                "union_by_name = true, hive_partitioning = false)"
            )
            comment_temp_view(con, name)  # the shadow explains its columns as the catalog does


def _file_vanished(exc: BaseException) -> bool:
    """A writer replaced or consolidated a file between DuckDB's glob and its read (the lake
    publishes by rename and removes superseded files): the next attempt sees the new set."""
    msg = str(exc)
    return isinstance(exc, duckdb.IOException) and (
        "No such file" in msg or "No files found" in msg or "Cannot open file" in msg
    )


# --------------------------------------------------------------------------- result shapes
# A shape projects a query's relation (columns by position: names may repeat) before it is
# fetched as polars. Each maps a DuckDB type to an expression template over "{0}", or None.
_NESTED = {"list", "array", "struct", "map"}
# Types polars cannot import (interval, union: an error or a panic), or imports wrongly (bit:
# DuckDB's internal bytes; time with time zone: the offset dropped; uhugeint: wrapped around;
# bignum: opaque bytes). They become DuckDB's text.
_NOT_FOR_POLARS = {"interval", "union", "bit", "time with time zone", "uhugeint", "bignum"}


def _has_unsafe(t: DuckDBPyType) -> bool:
    if t.id in _NOT_FOR_POLARS:
        return True
    if t.id in _NESTED:
        return any(isinstance(c, DuckDBPyType) and _has_unsafe(c) for _, c in t.children)
    return False


def _for_polars(t: DuckDBPyType) -> str | None:
    if t.id == "hugeint":  # polars gets DECIMAL(38,0) anyway: a wider value errs, not rounded
        return "CAST({0} AS DECIMAL(38,0))"
    if t.id in _NOT_FOR_POLARS:
        return "CAST({0} AS VARCHAR)"
    if t.id in _NESTED and _has_unsafe(t):
        return "CAST(to_json({0}) AS VARCHAR)"
    return None


def _as_text(t: DuckDBPyType) -> str | None:
    """One line of text per value, as DuckDB writes it; nested values as JSON, BLOB as hex."""
    if t.id == "blob":
        return "lower(hex({0}))"
    if t.id in _NESTED:
        return "CAST(to_json({0}) AS VARCHAR)"
    return None if t.id == "varchar" else "CAST({0} AS VARCHAR)"


# 6 significant digits, never fewer than 2 decimals (a price keeps its cents), at most 15.
_READABLE_FLOAT = (
    "CASE WHEN isfinite({0}) AND {0} <> 0 THEN CAST(round({0}, CAST(least(15, greatest(2, "
    "5 - floor(log10(abs({0}))))) AS INTEGER)) AS VARCHAR) ELSE CAST({0} AS VARCHAR) END"
)


def _as_rounded_text(t: DuckDBPyType) -> str | None:
    """`_as_text`, with FLOAT and DOUBLE rounded for reading (0.796092, not
    0.7960924868198468; 8181.0, not 8181.000000000001). DECIMAL stays exact."""
    if t.id in ("float", "double"):
        return _READABLE_FLOAT
    return _as_text(t)


def _as_json(t: DuckDBPyType) -> str | None:
    """One JSON value per value (DuckDB's to_json): numbers, decimals and huge integers exact;
    timestamps, intervals, UUIDs as strings; BLOB as a hex string; NaN/±inf as strings."""
    if t.id == "blob":
        return "to_json(lower(hex({0})))::VARCHAR"
    if t.id == "bit":
        return "to_json(CAST({0} AS VARCHAR))::VARCHAR"
    if t.id in ("float", "double"):  # bare NaN/Infinity are not JSON
        return (
            "CASE WHEN isfinite({0}) THEN to_json({0}) ELSE to_json(CAST({0} AS VARCHAR)) END"
            "::VARCHAR"
        )
    return "CAST(to_json({0}) AS VARCHAR)"


Shape = Callable[[DuckDBPyType], "str | None"]


def _project(rel: duckdb.DuckDBPyRelation, shape: Shape) -> duckdb.DuckDBPyRelation:
    exprs, changed = [], False
    for i, (name, t) in enumerate(zip(rel.columns, rel.types, strict=True), 1):
        template = shape(t)
        changed |= template is not None
        expr = template.format(f"#{i}") if template else f"#{i}"
        exprs.append(f'{expr} AS "{name.replace(chr(34), chr(34) * 2)}"' if name else expr)
    return rel.project(", ".join(exprs)) if changed else rel


# --------------------------------------------------------------------------- running
class _Stopped(Exception):
    """The waiting thread gave up (timeout, Ctrl-C) before this attempt started."""


class _Watch:
    """Shared by the worker that runs the query and the thread that waits for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._con = None
        self.stopped = False
        self.done = threading.Event()
        self.result: pl.DataFrame | None = None
        self.error: BaseException | None = None

    def attach(self, con) -> None:
        with self._lock:
            self._con = con
            if self.stopped:
                raise _Stopped()

    def close(self, con) -> None:
        with self._lock:  # never close while the other thread interrupts it
            self._con = None
            con.close()

    def interrupt(self) -> None:
        with self._lock:
            self.stopped = True
            if self._con is not None:
                with contextlib.suppress(Exception):  # closing under us: nothing to stop
                    self._con.interrupt()

    def work(self, fn: Callable[[], pl.DataFrame]) -> None:
        try:
            self.result = fn()
        except BaseException as exc:  # handed to the waiting thread  # noqa: BLE001
            self.error = exc
        finally:
            self.done.set()

    def stop(self) -> None:
        """Interrupt until the worker is done, at most `STOP_GRACE_S` (an interrupt that lands
        before DuckDB starts the query is lost, so repeat it); another Ctrl-C changes nothing."""
        end = time.monotonic() + STOP_GRACE_S
        while True:
            self.interrupt()
            try:
                if self.done.wait(_POLL_S) or time.monotonic() > end:
                    return
            except KeyboardInterrupt:
                continue


@retry(
    retry=retry_if_exception(_file_vanished),
    stop=stop_after_attempt(VANISHED_ATTEMPTS),
    wait=wait_fixed(0.05),
    reraise=True,
)
def _run(
    lake: Lake, sql: str, params: list | None, dirs: tuple, shape: Shape | None, watch: _Watch
) -> pl.DataFrame:
    # Only what differs from the defaults is passed (simple stand-ins in tests take just lake).
    con = connect_read_only(lake, allowed_directories=dirs, pin_for=sql)
    try:
        watch.attach(con)
        rel = con.sql(sql, params=params) if params else con.sql(sql)
        if rel is None:
            return pl.DataFrame()
        return (_project(rel, shape) if shape else rel).pl()
    finally:
        watch.close(con)


def _execute(
    lake: Lake,
    sql: str,
    params: list | None,
    timeout_s: float | None,
    allowed_directories: Iterable[Path | str],
    shape: Shape | None,
) -> pl.DataFrame:
    sql = _check(sql)
    if timeout_s is not None and not timeout_s > 0:
        raise SqlError(f"the timeout must be a positive number of seconds, got {timeout_s}")
    watch = _Watch()
    dirs = tuple(allowed_directories)
    worker = threading.Thread(
        target=watch.work,
        args=(lambda: _run(lake, sql, params, dirs, shape, watch),),
        name="ifd-sql",
        daemon=True,
    )
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        worker.start()
        while not watch.done.wait(_POLL_S):
            if deadline is not None and time.monotonic() >= deadline:
                watch.stop()
                if watch.error is not None or watch.result is None:
                    raise SqlTimeout(f"query timed out after {timeout_s:g} s and was interrupted")
                break  # it finished just as the time ran out
    except KeyboardInterrupt:
        watch.stop()
        raise
    err = watch.error
    if err is None:
        return watch.result if watch.result is not None else pl.DataFrame()
    if isinstance(err, duckdb.Error):
        raise SqlError(_first_line(err)) from err
    if isinstance(err, pl.exceptions.PolarsError) or type(err).__name__ == "PanicException":
        raise SqlError(f"cannot convert the result: {_first_line(err)}") from err
    raise err


def query(
    lake: Lake,
    sql: str,
    params: list | None = None,
    *,
    timeout_s: float | None = None,
    allowed_directories: Iterable[Path | str] = (),
) -> pl.DataFrame:
    """One read-only statement's result as polars. Types polars cannot hold faithfully
    (INTERVAL, UNION, BIT, TIME WITH TIME ZONE, UHUGEINT, BIGNUM, and nested values holding one)
    arrive as DuckDB's text (nested ones as JSON text); HUGEINT as DECIMAL(38,0).

    ``timeout_s``: interrupt the query after that many seconds (`SqlTimeout`); None: no limit.
    ``allowed_directories``: readable besides the data root. Raises `SqlError` (one line).
    """
    return _execute(lake, sql, params, timeout_s, allowed_directories, _for_polars)


def query_text(
    lake: Lake,
    sql: str,
    params: list | None = None,
    *,
    as_json: bool = False,
    rounded: bool = False,
    timeout_s: float | None = None,
    allowed_directories: Iterable[Path | str] = (),
) -> pl.DataFrame:
    """The result for printing, every column a string: DuckDB's text of each value (nested
    values as JSON, BLOB as lowercase hex), or with ``as_json`` each value's JSON (see
    `json_document`). ``rounded`` rounds FLOAT/DOUBLE text for a table a person reads (CSV and
    JSON keep every digit). NULL stays null. Same checks, limits and errors as `query`."""
    shape = _as_json if as_json else _as_rounded_text if rounded else _as_text
    return _execute(lake, sql, params, timeout_s, allowed_directories, shape)


def json_document(frame: pl.DataFrame) -> str:
    """The records of a `query_text(..., as_json=True)` frame as a JSON array, one per line."""
    names = [json.dumps(c) for c in frame.columns]
    rows = [
        " {" + ", ".join(f"{n}: {v or 'null'}" for n, v in zip(names, r, strict=True)) + "}"
        for r in frame.iter_rows()
    ]
    return "[\n" + ",\n".join(rows) + "\n]\n" if rows else "[]\n"
