"""Decoded views for people: ``<table>_decoded`` beside each raw market-data view.

The lake keeps what DBN sends: prices as fixed-point integers (1e-9, ``UNDEF_PRICE`` for "no
price") and instants as integer nanoseconds since the epoch. That is exact and cheap to join,
but nobody reads ``21450250000000``. A decoded view is the counterpart of Databento's
``to_df(price_type="float", pretty_ts=True)``: the same columns under the same names, prices as
DOUBLE in points (the sentinel as NULL) and instants as TIMESTAMPTZ (UTC), and the raw integers
kept beside them as ``<column>_raw`` (exact values, nanoseconds, joins with the raw views).
DuckDB's TIMESTAMPTZ holds microseconds: the decoded instant drops the last three digits, the
``_raw`` column keeps them. See warehouse/README.md ("Decoded views").

The views use ``SELECT * REPLACE``, so a column a table gains later shows up in its decoded view
without a new migration.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from ifd_core.units import FIXED, UNDEF_PRICE, UNDEF_TIMESTAMP

SUFFIX = "_decoded"
RAW = "_raw"


@dataclass(frozen=True)
class Decoding:
    """Which columns of one raw view are fixed-point values and which are instants."""

    fixed: tuple[str, ...]
    instants: tuple[str, ...]


DECODED: dict[str, Decoding] = {
    "mbo": Decoding(("price",), ("ts_recv", "ts_event")),
    "trades": Decoding(("price",), ("ts_recv", "ts_event")),
    "instruments": Decoding(
        ("strike_price", "min_price_increment", "display_factor", "unit_of_measure_qty"),
        ("expiration", "ts_event", "ts_recv"),
    ),
    "statistics": Decoding(("price",), ("ts_recv", "ts_event", "ts_ref")),
    "open_interest": Decoding((), ("ts_recv", "ts_event", "ts_ref")),
    "settlements": Decoding(("price",), ("ts_recv", "ts_event", "ts_ref")),
    "bbo": Decoding(("price", "bid_px", "ask_px"), ("ts_recv", "ts_event")),
    "ohlcv": Decoding(("open", "high", "low", "close"), ("ts_event",)),
    "status": Decoding((), ("ts_recv", "ts_event")),
}


def view_name(table: str) -> str:
    return f"{table}{SUFFIX}"


def fixed_sql(col: str) -> str:
    """A fixed-point integer as DOUBLE points; DBN's undefined price as NULL."""
    return f'CASE WHEN "{col}" = {UNDEF_PRICE} THEN NULL ELSE "{col}" / {float(FIXED)!r} END'


def instant_sql(col: str) -> str:
    """Nanoseconds since the epoch as TIMESTAMPTZ (microseconds, UTC); DBN's undefined
    timestamp as NULL."""
    return (
        f'CASE WHEN "{col}" = {UNDEF_TIMESTAMP} THEN NULL '
        f'ELSE CAST(make_timestamp(CAST("{col}" // 1000 AS BIGINT)) AS TIMESTAMPTZ) END'
    )


def view_sql(table: str) -> str:
    d = DECODED[table]
    replaced = [f'{fixed_sql(c)} AS "{c}"' for c in d.fixed]
    replaced += [f'{instant_sql(c)} AS "{c}"' for c in d.instants]
    raw = [f'"{table}"."{c}" AS "{c}{RAW}"' for c in (*d.fixed, *d.instants)]
    return (
        f'CREATE OR REPLACE VIEW "{view_name(table)}" AS '
        f'SELECT * REPLACE ({", ".join(replaced)}), {", ".join(raw)} FROM "{table}"'
    )


def create_decoded_views(con: duckdb.DuckDBPyConnection, lake: object = None) -> None:
    """The migration: one ``<table>_decoded`` view per raw market-data view."""
    for table in DECODED:
        con.execute(view_sql(table))
