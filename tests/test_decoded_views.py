"""Decoded views (`<table>_decoded`): the real Databento samples read as Databento's own
``to_df(price_type="float", pretty_ts=True)`` reads them, the raw integers kept beside."""

from __future__ import annotations

import datetime as dt

import databento as db
import polars as pl
import pytest

from ifd_core.units import UNDEF_PRICE
from tests.conftest import DBPY, NT
from warehouse.decoded import DECODED, RAW, view_name
from warehouse.descriptions import FIXED, NS_UTC, column_doc
from warehouse.ingest import ingest_files
from warehouse.migrations import ensure_migrated
from warehouse.sql import query
from warehouse.tables import TABLES

pytestmark = pytest.mark.usefixtures("samples")

GLBX = DBPY / "GLBX.MDP3"
UTC = dt.UTC


@pytest.fixture
def loaded(lake):
    files = [GLBX / f"test_data.{s}.dbn.zst" for s in ("definition", "mbo", "statistics")]
    files.append(GLBX / "test_data.ohlcv-1m.dbn.zst")
    assert ingest_files(files, lake).ok
    return lake


def test_a_known_price_decodes_to_its_decimal_and_keeps_the_raw_integer(loaded):
    # ESH1's first MBO record of the sample: 3675.75 points at 20:00:25.061045683 UTC.
    row = query(
        loaded,
        "SELECT price, price_raw, ts_event, ts_event_raw, typeof(ts_event) AS t "
        "FROM mbo_decoded WHERE price_raw = 3675750000000",
    ).row(0, named=True)
    assert row["price"] == 3675.75 and row["price_raw"] == 3_675_750_000_000
    assert row["t"] == "TIMESTAMP WITH TIME ZONE"
    assert row["ts_event"] == dt.datetime(2020, 12, 27, 20, 0, 25, 61045, tzinfo=UTC)
    assert row["ts_event_raw"] == 1_609_099_225_061_045_683


def test_the_undefined_price_sentinel_decodes_to_null(lake):
    # ESM4's file opens with an R (clear book) record and the live capture carries an open-
    # interest statistic: neither has a price, so DBN sends UNDEF_PRICE (int64 max).
    files = [
        NT / "order_book_deltas_catalog/databento/orderbooks_definition.dbn.zst",
        NT / "order_book_deltas_catalog/databento/"
        "orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst",
        DBPY / "LIVE/test_data.live.dbn.zst",
    ]
    assert ingest_files(files, lake).ok
    clear = query(lake, "SELECT price, price_raw FROM mbo_decoded WHERE action = 'R'")
    assert clear.rows() == [(None, UNDEF_PRICE)]
    oi = query(lake, "SELECT price, price_raw FROM statistics_decoded WHERE stat_type = 9")
    assert oi.height > 0 and set(oi.rows()) == {(None, UNDEF_PRICE)}
    settle = query(lake, "SELECT DISTINCT price FROM statistics_decoded WHERE stat_type = 3")
    assert settle["price"].to_list() == [4753.75]


def test_definitions_decode_tick_and_expiration(loaded):
    row = query(
        loaded,
        "SELECT strike_price, min_price_increment, min_price_increment_raw, expiration "
        "FROM instruments_decoded WHERE instrument_id = 5482",
    ).row(0, named=True)
    assert row["strike_price"] is None  # a future has no strike
    assert row["min_price_increment"] == 0.25 and row["min_price_increment_raw"] == 250_000_000
    assert row["expiration"] == dt.datetime(2021, 3, 19, 13, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("schema", "table", "columns"),
    [
        ("mbo", "mbo", ("price", "ts_event", "ts_recv")),
        ("statistics", "statistics", ("price", "ts_event", "ts_recv", "ts_ref")),
        ("ohlcv-1m", "ohlcv", ("open", "high", "low", "close", "ts_event")),
    ],
)
def test_decoded_values_match_databentos_own_decoding(loaded, schema, table, columns):
    """Every row, compared with the SDK's float prices and pretty timestamps (µs: DuckDB's
    TIMESTAMPTZ; NaN, the SDK's undefined price, is NULL here)."""
    ref = db.DBNStore.from_file(GLBX / f"test_data.{schema}.dbn.zst").to_df(
        price_type="float", pretty_ts=True
    )
    ref = pl.from_pandas(ref.reset_index()[list(columns)]).with_columns(
        pl.col(pl.Float64).fill_nan(None),
        pl.col(pl.Datetime).dt.cast_time_unit("us"),
    )
    got = query(loaded, f"SELECT {', '.join(columns)} FROM {view_name(table)}")
    key = list(columns)
    assert got.sort(key).equals(ref.sort(key)), (got.head(3), ref.head(3))


def test_every_fixed_point_and_nanosecond_column_of_the_market_tables_is_decoded():
    """The descriptions say which columns are fixed-point or nanosecond instants; a decoded view
    leaves none of them raw (a new price column must be added to warehouse/decoded.py)."""
    for table, d in DECODED.items():
        for col, dtype in TABLES[table].schema.items():
            doc = column_doc(table, col) or ""
            if FIXED in doc or "fixed-point 1e-9" in doc:
                assert col in d.fixed, (table, col)
            if NS_UTC in doc and dtype == pl.UInt64:
                assert col in d.instants, (table, col)


def test_decoded_views_keep_every_raw_column_and_comment_every_column(lake):
    ensure_migrated(lake)
    for table, d in DECODED.items():
        got = query(lake, f"DESCRIBE {view_name(table)}")
        names = got["column_name"].to_list()
        raw = [f"{c}{RAW}" for c in (*d.fixed, *d.instants)]
        assert names == [*TABLES[table].schema, *raw]
        types = dict(zip(names, got["column_type"], strict=True))
        assert {types[c] for c in d.fixed} <= {"DOUBLE"}
        assert {types[c] for c in d.instants} <= {"TIMESTAMP WITH TIME ZONE"}
        comments = query(
            lake,
            "SELECT column_name, comment FROM duckdb_columns() WHERE table_name = ?",
            [view_name(table)],
        )
        assert comments["comment"].null_count() == 0, table
