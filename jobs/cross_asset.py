"""The cross-asset confirmation of a day's v3 episodes, stored beside the signals.

``confirm_day`` reads the day's v3 signals, groups them into episodes
(``ifd_core.analysis.cross_asset.episode_spans``), fetches the QQQ/NDX options trades of the
episodes' minutes from Massive (``jobs.massive_options.fetch_window``, one fetch per run of
overlapping minutes) and writes ``cross_asset_confirmations`` for the day as one commit. A failed
fetch raises before that commit: the day's confirmations are all new or all as before (the trades
of windows already fetched stay, each window whole).

Strike bands: NDX around the median NQ price the day's signals carry (NQ tracks the index within
its basis, well inside the band); any other underlying (QQQ) around its own last trade before
the window. ``reference`` overrides both.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from ifd_core.analysis.cross_asset import cross_asset_confirmation, episode_spans
from ifd_core.marketdata.massive_options import ORIGIN, MassiveOptionsClient, make_client
from ifd_core.settings import Settings
from jobs.massive_options import TABLE as TRADES
from jobs.massive_options import fetch_window
from warehouse.lake import Lake
from warehouse.tables import TABLES, conform

TABLE = "cross_asset_confirmations"
KEY = "massive"
ALGO = "v3"
_MINUTE_NS = 60 * 10**9


@dataclass(frozen=True)
class ConfirmSummary:
    day: dt.date
    episodes: int
    windows: int
    trades: int
    requests: int


def merged_windows(spans: pl.DataFrame) -> list[tuple[int, int]]:
    """The episodes' minutes ([first window start floored, last window end ceiled) each) merged
    where they overlap or touch: one fetch per merged window, no minute fetched twice."""
    out: list[tuple[int, int]] = []
    rows = sorted(
        (
            int(r["first_window_start"]) // _MINUTE_NS * _MINUTE_NS,
            -(-int(r["last_window_end"]) // _MINUTE_NS) * _MINUTE_NS,
        )
        for r in spans.iter_rows(named=True)
    )
    for start, end in rows:
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _v3_signals(lake: Lake, day: dt.date) -> pl.DataFrame:
    return lake.scan("signals").filter((pl.col("date") == day) & (pl.col("algo") == ALGO)).collect()


def confirm_day(
    settings: Settings,
    lake: Lake,
    day: dt.date,
    *,
    reference: Mapping[str, float] | None = None,
    client: MassiveOptionsClient | None = None,
) -> ConfirmSummary:
    """Fetch and store the confirmation of every v3 episode of ``day``; see the module doc."""
    client = client or make_client(settings)
    signals = _v3_signals(lake, day)
    if signals.height == 0:
        if lake.files(TABLE, day):  # the episodes are gone (re-detected): so are their rows
            lake.replace_day(TABLE, day, TABLES[TABLE].empty(), KEY)
        return ConfirmSummary(day, 0, 0, 0, 0)
    spans = episode_spans(signals)
    nq = signals["underlying_price"].drop_nulls().median()
    windows = merged_windows(spans)
    requests = 0
    for start, end in windows:
        ref = dict(reference or {})
        for u in client.underlyings:
            if u in ref:
                continue
            if u == "NDX" and nq is not None:
                ref[u] = float(nq)
            else:
                ref[u] = client.last_trade_price(u, start)
                requests += 1
        got = fetch_window(settings, lake, start, end, reference=ref, client=client)
        requests += got.requests
    trades = (
        lake.scan(TRADES)
        .filter(pl.col("date") == day)
        .collect()
        .unique(["ticker", "ts", "sequence", "price", "size"], keep="first")
        .sort("ts", "ticker", "sequence", "source_sha")
    )
    conf = cross_asset_confirmation(spans, trades)
    lineage = ",".join(sorted(trades["source_sha"].unique().drop_nulls().to_list()))
    rows = conform(
        TABLE,
        conf.with_columns(
            pl.lit(day).alias("date"),
            pl.lit(ALGO).alias("algo"),
            pl.lit(",".join(client.underlyings)).alias("underlyings"),
            pl.lit(ORIGIN).alias("origin"),
            pl.lit(hashlib.sha256(lineage.encode()).hexdigest()[:16]).alias("source_sha"),
        ),
    )
    lake.replace_day(TABLE, day, rows, KEY)
    return ConfirmSummary(day, rows.height, len(windows), int(conf["trades"].sum()), requests)


__all__ = ["TABLE", "ConfirmSummary", "confirm_day", "merged_windows"]
