"""Versioned warehouse migrations, applied on first use.

The catalog (``warehouse.duckdb``) holds only views over the lake plus bookkeeping; it is opened
read-write for the few milliseconds a migration takes and read-only by everyone else. A migration
is a function of (connection, lake); the versions applied are recorded in ``schema_migrations``,
and the data root they were applied for in ``catalog_meta`` (views hold absolute paths, so a
moved data root re-applies the view migrations).

After any migration, and whenever a description changes, every view, column and macro gets its
DuckDB comment from ``warehouse/descriptions.py`` (``CREATE OR REPLACE VIEW`` drops comments);
``catalog_meta`` keeps the descriptions' fingerprint, so existing catalogs catch up on first use.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

import duckdb

from warehouse.cost_views import create_cost_views
from warehouse.decoded import create_decoded_views
from warehouse.descriptions import apply_comments, fingerprint
from warehouse.lake import Lake
from warehouse.tables import TABLES

Migration = Callable[[duckdb.DuckDBPyConnection, Lake], None]


def _view_sql(lake: Lake, table: str) -> str:
    glob = lake.table_glob(table).replace("'", "''")
    return (
        f"CREATE OR REPLACE VIEW \"{table}\" AS SELECT * FROM read_parquet('{glob}', "
        "union_by_name = true, hive_partitioning = false)"
    )


def _tables_and_views(tables: list[str]) -> Migration:
    def apply(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
        for t in tables:
            con.execute(_view_sql(lake, t))

    return apply


def _seed_all(lake: Lake) -> None:
    """Every table gets a zero-row file of its current schema (so its view binds before any data
    lands and knows columns added since), all in one lake commit before the views are made."""
    import polars as pl

    with lake.transaction("seed tables"):
        for t, table in TABLES.items():
            seed = lake.seed_file(t)
            if not seed.exists() or dict(pl.read_parquet_schema(seed)) != dict(table.pl_schema):
                lake.write_seed(t)


def _snapshot_views(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """Views read ``lake/<table>/*/*.parquet``: one partition level, through the snapshot links."""
    for t in TABLES:
        if t != "trades":  # `trades` is the one-source view over trades_all
            con.execute(_view_sql(lake, t))
    _trades_one_source(con, lake)


def _point_in_time_macros(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    # The definition in force on a trade date: the latest one published on or before it.
    con.execute(
        """
        CREATE OR REPLACE MACRO instruments_asof(d) AS TABLE
        SELECT * EXCLUDE (rn) FROM (
            SELECT *, row_number() OVER (PARTITION BY instrument_id
                                         ORDER BY date DESC, ts_recv DESC) AS rn
            FROM instruments WHERE date <= CAST(d AS DATE)) WHERE rn = 1
        """
    )
    # Open interest as known at instant t (TIMESTAMPTZ): published (ts_recv) at or before t.
    con.execute(
        """
        CREATE OR REPLACE MACRO open_interest_asof(t) AS TABLE
        SELECT * EXCLUDE (rn) FROM (
            SELECT *, row_number() OVER (PARTITION BY instrument_id
                                         ORDER BY ts_recv DESC) AS rn
            FROM open_interest WHERE ts_recv <= epoch_ns(CAST(t AS TIMESTAMPTZ))) WHERE rn = 1
        """
    )
    con.execute(
        """
        CREATE OR REPLACE VIEW dq_summary AS
        SELECT run_id, dataset, source_file, any_value(batch_success) AS batch_success,
               count(*) AS expectations, count(*) FILTER (WHERE NOT success) AS failed,
               min(validated_at) AS validated_at
        FROM dq_results GROUP BY ALL
        """
    )


def _trades_one_source(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """`trades` keeps one source per (date, instrument): mbo T records, else trades, else tbbo.

    The same prints arrive through several schemas; summing them all would double the volume.
    `trades_all` keeps every row for audits.
    """
    glob = lake.table_glob("trades").replace("'", "''")
    con.execute(
        f"CREATE OR REPLACE VIEW trades_all AS SELECT * FROM read_parquet('{glob}', "
        "union_by_name = true, hive_partitioning = false)"
    )
    con.execute(
        """
        CREATE OR REPLACE VIEW trades AS
        SELECT * EXCLUDE (src_rank, best_rank) FROM (
            SELECT *, min(src_rank) OVER (PARTITION BY date, instrument_id) AS best_rank
            FROM (SELECT *, CASE schema WHEN 'mbo' THEN 0 WHEN 'trades' THEN 1 ELSE 2 END
                            AS src_rank FROM trades_all))
        WHERE src_rank = best_rank
        """
    )


ANALYTICS_TABLES = [
    "pressure_windows",
    "option_flow_daily",
    "engine_runs",
    "baselines",
    "signals",
    "signal_outcomes",
]


def _analytics(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """The engine's and detectors' tables, and signals joined with their outcomes."""
    _tables_and_views(ANALYTICS_TABLES)(con, lake)
    _signals_with_outcomes(con)


def _signals_with_outcomes(con: duckdb.DuckDBPyConnection, extra: str = "") -> None:
    con.execute(
        f"""
        CREATE OR REPLACE VIEW signals_with_outcomes AS
        SELECT s.*, o.label, o.ref_price, o.barrier_points, o.horizon_s, o.resolved_ts,
               o.move_at_horizon, o.max_favorable, o.max_adverse{extra}
        FROM signals s LEFT JOIN signal_outcomes o USING (signal_id)
        """
    )


LIVE_TABLES = ["gaps", "incidents", "signal_latency"]
LEDGER_TABLES = ["orders", "fills", "positions", "pnl_daily"]
OPS_TABLES = ["rollout_events", "alerts"]
IB_TABLES = ["underlying_ticks"]
CROSS_CHECK_TABLES = ["barchart_chain"]
MASSIVE_TABLES = ["massive_option_trades", "cross_asset_confirmations"]


def _ib_prices(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """IB's underlying ticks; outcomes say which prices labelled them (seed rewritten)."""
    _tables_and_views(["signal_outcomes", *IB_TABLES])(con, lake)
    _signals_with_outcomes(con, ", o.price_source")


def _ops(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """Rollout and alert event tables, and their current state as views (state = latest event)."""
    _tables_and_views(OPS_TABLES)(con, lake)
    con.execute(
        """
        CREATE OR REPLACE VIEW rollout_state AS
        SELECT * FROM rollout_events
        QUALIFY row_number() OVER (PARTITION BY challenger ORDER BY ts DESC, event_id DESC) = 1
        """
    )
    con.execute(
        """
        CREATE OR REPLACE VIEW alerts_open AS
        SELECT * FROM alerts
        QUALIFY row_number() OVER (PARTITION BY episode_id ORDER BY ts DESC, alert_id DESC) = 1
              AND state <> 'RESOLVED'
        """
    )


def _live(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """The live path's tables; the windows' seed file is rewritten for its new column."""
    _tables_and_views(["pressure_windows", *LIVE_TABLES])(con, lake)


def _windows_sq(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """Windows gain Σ q² per side (IFD v3 breadth); the seed is rewritten by ``_seed_all`` and
    the view reads older files, which lack the columns, as null (``union_by_name``)."""
    _tables_and_views(["pressure_windows"])(con, lake)


def _signal_episodes(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """Signals and outcomes carry ``episode_id`` and ``pnl_daily`` counts ``episodes`` (their
    seeds are rewritten, so older partitions without the column read as NULL), and
    ``signal_episodes``: one row per episode.

    The episode's outcome is the label of its first signal (``decision_ts``, then
    ``signal_id``): the one the executor acts on. A signal detected before episodes existed has
    no id; it shows as a row of its own with ``episode_id`` NULL until ``ifd detect`` re-runs its
    date (never grouped with other id-less signals into one false episode).
    """
    _tables_and_views(["signals", "signal_outcomes", "pnl_daily"])(con, lake)
    con.execute(
        """
        CREATE OR REPLACE VIEW signal_episodes AS
        WITH s AS (
            SELECT *, coalesce(episode_id, 'signal:' || signal_id) AS _ep,
                   row_number() OVER (PARTITION BY algo, date,
                                      coalesce(episode_id, 'signal:' || signal_id)
                                      ORDER BY decision_ts, signal_id) AS _rn
            FROM signals
        ), g AS (
            SELECT algo, date, _ep,
                   list_sort(list_distinct(list(raw_symbol))) AS instruments,
                   list_sort(list_distinct(list(instrument_id))) AS instrument_ids,
                   min(window_start) AS first_window_start,
                   max(window_end) AS last_window_end,
                   count(*) AS n_signals,
                   max(confidence) AS peak_confidence,
                   sum(volume) AS total_volume
            FROM s GROUP BY algo, date, _ep
        )
        SELECT f.episode_id, g.algo, g.date, g.instruments, g.instrument_ids,
               f.option_type, f.expiration, f.view, f.direction,
               g.first_window_start, g.last_window_end, g.n_signals, g.peak_confidence,
               g.total_volume, f.signal_id AS first_signal_id, f.decision_ts,
               o.label, o.resolved_ts
        FROM g
        JOIN s f ON f.algo = g.algo AND f.date = g.date AND f._ep = g._ep AND f._rn = 1
        LEFT JOIN signal_outcomes o ON o.signal_id = f.signal_id
        """
    )


MIGRATIONS: list[tuple[int, str, Migration]] = [
    (
        1,
        "market data, data quality and cost tables",
        _tables_and_views(
            [
                t
                for t in TABLES
                if t
                not in ANALYTICS_TABLES
                + LIVE_TABLES
                + LEDGER_TABLES
                + OPS_TABLES
                + IB_TABLES
                + CROSS_CHECK_TABLES
                + MASSIVE_TABLES
            ]
        ),
    ),
    (2, "point-in-time macros and dq summary", _point_in_time_macros),
    (3, "trades from one source per date and instrument; trades_all", _trades_one_source),
    (4, "flow engine, baselines, signals and outcomes", _analytics),
    (5, "live path: gaps, incidents, signal latency; windows carry `complete`", _live),
    (6, "trading ledger: orders, fills, positions, pnl_daily", _tables_and_views(LEDGER_TABLES)),
    (7, "ops: rollout_events (+ rollout_state), alerts (+ alerts_open)", _ops),
    (8, "cost views: cost_daily, cost_monthly, cost_per_signal", create_cost_views),
    (9, "underlying_ticks from IB; signal_outcomes carry price_source", _ib_prices),
    (10, "lake snapshots: views read lake/<table>/*/*.parquet", _snapshot_views),
    (11, "windows carry buy_size_sq/sell_size_sq (older files read them as null)", _windows_sq),
    (12, "signal episodes: episode_id on signals and outcomes; signal_episodes", _signal_episodes),
    (
        13,
        "decoded views <table>_decoded: prices in points, instants as TIMESTAMPTZ",
        create_decoded_views,
    ),
    (
        14,
        "barchart_chain: Barchart OnDemand's options chain (optional OI cross-check)",
        _tables_and_views(CROSS_CHECK_TABLES),
    ),
    (
        15,
        "Massive (optional): massive_option_trades, cross_asset_confirmations",
        _tables_and_views(MASSIVE_TABLES),
    ),
]
LATEST = max(v for v, _, _ in MIGRATIONS)
ALL_VERSIONS = frozenset(v for v, _, _ in MIGRATIONS)


class CatalogBusy(RuntimeError):
    """Another process holds the catalog and the migration could not take it in time."""


def _connect_rw(lake: Lake, timeout_s: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return duckdb.connect(str(lake.catalog_path))
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise CatalogBusy(
                    f"the catalog {lake.catalog_path} is locked by another process and needs a "
                    "migration; close open `ifd sql` sessions or notebooks and retry"
                ) from exc
            time.sleep(0.05)


def _state(con: duckdb.DuckDBPyConnection) -> tuple[frozenset[int], str | None, str | None]:
    """The versions applied (a set: numbers may have gaps, and a version merged in later with a
    lower number than one already applied must still run), the data root and the fingerprint of
    the descriptions the comments were made from."""
    has = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
    ).fetchall()[0][0]
    if not has:
        return frozenset(), None, None
    versions = con.execute("SELECT version FROM schema_migrations").fetchall()
    meta = dict(con.execute("SELECT key, value FROM catalog_meta").fetchall())
    return frozenset(int(v[0]) for v in versions), meta.get("data_root"), meta.get("comments")


def current_state(lake: Lake) -> tuple[frozenset[int] | None, str | None, str | None]:
    """Applied versions, data root and comments' fingerprint; None for the versions while a
    migrating process holds the catalog read-write."""
    if not lake.catalog_path.exists():
        return frozenset(), None, None
    try:
        con = duckdb.connect(str(lake.catalog_path), read_only=True)
    except duckdb.IOException:
        return None, None, None  # held read-write by a migrating process; the caller waits
    try:
        return _state(con)
    finally:
        con.close()


def ensure_migrated(lake: Lake, timeout_s: float = 30.0) -> list[int]:
    """Apply every pending migration; returns the versions applied (empty when up to date).

    First, what a killed writer left is rolled back (``Lake.recover``): every command that
    writes comes through here, so the next command repairs the lake."""
    lake.ensure_dirs()
    lake.recover()
    deadline = time.monotonic() + timeout_s
    done, root, comments = current_state(lake)
    while done is None:  # another process is migrating right now: wait for it, don't race it
        if time.monotonic() > deadline:
            raise CatalogBusy(
                f"the catalog {lake.catalog_path} is held read-write by another process "
                "(a migration); retry in a moment"
            )
        time.sleep(0.05)
        done, root, comments = current_state(lake)
    if done >= ALL_VERSIONS and root == str(lake.root) and comments == fingerprint():
        return []
    con = _connect_rw(lake, timeout_s)
    try:
        con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
            "name VARCHAR, applied_at TIMESTAMPTZ)"
        )
        con.execute(
            "CREATE TABLE IF NOT EXISTS catalog_meta (key VARCHAR PRIMARY KEY, value VARCHAR)"
        )
        done, root, comments = _state(con)
        relocated = root is not None and root != str(lake.root)
        _seed_all(lake)
        applied = []
        for v, name, fn in sorted(MIGRATIONS, key=lambda m: m[0]):  # every one not applied yet
            if v not in done or relocated:
                con.execute("BEGIN")
                fn(con, lake)
                con.execute(
                    "INSERT OR REPLACE INTO schema_migrations VALUES (?, ?, ?)",
                    [v, name, dt.datetime.now(dt.UTC)],
                )
                con.execute("COMMIT")
                applied.append(v)
        if applied or comments != fingerprint():
            con.execute("BEGIN")
            apply_comments(con)  # after the views: re-creating a view drops its comments
            con.execute(
                "INSERT OR REPLACE INTO catalog_meta VALUES ('comments', ?)", [fingerprint()]
            )
            con.execute("COMMIT")
        con.execute("INSERT OR REPLACE INTO catalog_meta VALUES ('data_root', ?)", [str(lake.root)])
        return applied
    finally:
        con.close()
