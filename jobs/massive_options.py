"""Massive's QQQ/NDX options trades of a window into the lake (``massive_option_trades``).

The optional cross-asset source of issue 21 §2 (docs/operations.md, "Massive (optional)"): the
client (``ifd_core.marketdata.massive_options``) returns the whole window signed, or raises one
``MassiveError``; this job writes what it returned as one lake commit keyed by the window, so a
failed fetch writes nothing and fetching the same window again replaces its rows rather than
adding them twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from ifd_core.calendar import trade_date_of
from ifd_core.marketdata.massive_options import MassiveOptionsClient, make_client
from ifd_core.settings import Settings
from warehouse.lake import Lake
from warehouse.tables import TABLES, conform

TABLE = "massive_option_trades"


@dataclass(frozen=True)
class FetchSummary:
    key: str
    trades: int
    contracts: int
    requests: int
    source_sha: str


def window_key(underlyings: list[str], start_ns: int, end_ns: int) -> str:
    """The lake key of one fetched window: re-fetching it replaces its rows."""
    return f"massive-{'-'.join(underlyings)}-{start_ns}-{end_ns}"


def lake_rows(trades: pl.DataFrame, source_sha: str) -> pl.DataFrame:
    """The client's frame as rows of ``massive_option_trades`` (trade date, lineage)."""
    dates = [trade_date_of(int(ts)) for ts in trades["ts"].to_list()]
    return conform(
        TABLE,
        trades.with_columns(
            pl.Series("date", dates, dtype=pl.Date), pl.lit(source_sha).alias("source_sha")
        ),
    )


def fetch_window(
    settings: Settings,
    lake: Lake,
    start_ns: int,
    end_ns: int,
    *,
    reference: Mapping[str, float] | None = None,
    client: MassiveOptionsClient | None = None,
) -> FetchSummary:
    """Fetch ``[start_ns, end_ns)`` and store it; raises ``MassiveError`` with nothing written."""
    client = client or make_client(settings)
    got = client.fetch(start_ns, end_ns, reference)
    key = window_key(got.underlyings, start_ns, end_ns)
    rows = lake_rows(got.trades, got.source_sha)
    if rows.height:
        lake.write(TABLE, rows, key)
    else:  # a window that once had trades and now has none: its old rows go
        for day in sorted({trade_date_of(start_ns), trade_date_of(end_ns - 1)}):
            if lake.files(TABLE, day):
                lake.replace_day(TABLE, day, TABLES[TABLE].empty(), key)
    return FetchSummary(key, rows.height, got.contracts, got.requests, got.source_sha)


__all__ = ["TABLE", "FetchSummary", "fetch_window", "lake_rows", "window_key"]
