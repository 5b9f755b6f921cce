"""IB's trades of the underlying future into the lake, for the labeller (``underlying_ticks``).

``ifd ib record-underlying --date D`` streams the futures under the day's options (from the
``instruments`` table) until the session's end (or ``--seconds``), writing what arrived every
few seconds; a lost connection is retried, the gap said. ``label_day`` continues each future's
Databento trades with these after the last one the lake holds (``ifd_core.trading.labels``).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import polars as pl

from ifd_core.analysis.flow_engine import OPTION_CLASSES
from ifd_core.broker.ib_quotes import FutureContract, QuotesUnavailable, UnderlyingRecorder
from ifd_core.calendar import NEW_YORK as NY
from ifd_core.calendar import trade_date_of
from ifd_core.settings import Settings
from ifd_core.units import NS
from warehouse.lake import Lake
from warehouse.tables import TABLES

FLUSH_EVERY_S = 2.0
RECONNECT_EVERY_S = 5.0


@dataclass
class RecordSummary:
    futures: list[str]
    ticks: int = 0
    files: int = 0
    reconnects: int = 0
    lost: list[str] = field(default_factory=list)  # what was said about connection losses


def futures_of(lake: Lake, day: dt.date) -> list[FutureContract]:
    """The futures underlying the options defined on or before ``day`` that have not expired,
    by their latest definition."""
    inst = (
        lake.scan("instruments")
        .filter(pl.col("date") <= day)
        .sort("date", "ts_recv")
        .collect()
        .unique("instrument_id", keep="last")
    )
    start = int(dt.datetime.combine(day, dt.time(), NY).timestamp() * NS)
    opts = inst.filter(pl.col("instrument_class").is_in(OPTION_CLASSES))
    opts = opts.filter(pl.col("expiration") >= start)
    futs = inst.filter(pl.col("instrument_id").is_in(opts["underlying_id"].unique().implode()))
    out = []
    for r in futs.sort("expiration").iter_rows(named=True):
        exp = dt.datetime.fromtimestamp(r["expiration"] / 1e9, NY).date()
        out.append(
            FutureContract(int(r["instrument_id"]), r["raw_symbol"], exp, symbol=r["asset"] or "NQ")
        )
    return out


def record_underlying(
    lake: Lake,
    settings: Settings,
    until_wall_s: float,
    futures: Sequence[FutureContract],
    *,
    recorder: UnderlyingRecorder | None = None,
    progress: Callable[[str], None] = lambda m: None,
    stopped: Callable[[], bool] = lambda: False,
) -> RecordSummary:
    """Record until ``until_wall_s`` (epoch seconds) or ``stopped()``; QuotesUnavailable when
    the first connection or a subscription fails."""
    if not futures:
        raise QuotesUnavailable("no future to record: no option of the date is defined")
    rec = recorder or UnderlyingRecorder(settings.ib)
    summary = RecordSummary([f.raw_symbol for f in futures])
    run = uuid.uuid4().hex[:8]

    def start() -> None:
        rec.connect()
        for f in futures:
            rec.subscribe(f)

    start()
    until = dt.datetime.fromtimestamp(until_wall_s, dt.UTC)
    progress(f"recording {', '.join(summary.futures)} from IB until {until:%Y-%m-%d %H:%M:%S} UTC")
    retry_at = 0.0
    try:
        while not stopped():
            left = until_wall_s - time.time()
            if left <= 0:
                break
            if rec.connected:
                rec.wait(min(FLUSH_EVERY_S, left))
            elif time.time() >= retry_at:
                retry_at = time.time() + RECONNECT_EVERY_S
                try:
                    start()
                    summary.reconnects += 1
                    progress("IB reconnected; recording again")
                except QuotesUnavailable as exc:
                    said = f"IB lost at {dt.datetime.now(dt.UTC):%H:%M:%S} UTC: {exc}"
                    summary.lost.append(said)
                    progress(said + f"; retrying in {RECONNECT_EVERY_S:.0f} s")
            else:
                time.sleep(min(0.2, left))
            _write(lake, rec.take(), run, summary)
    finally:
        _write(lake, rec.take(), run, summary)
        rec.close()
    return summary


def _write(lake: Lake, rows: list[dict], run: str, summary: RecordSummary) -> None:
    if not rows:
        return
    schema = TABLES["underlying_ticks"].pl_schema
    df = pl.DataFrame(rows).with_columns(
        pl.Series("date", [trade_date_of(r["ts_event"]) for r in rows], dtype=pl.Date)
    )
    df = df.select([pl.col(c).cast(t) for c, t in schema.items()])
    summary.files += 1
    lake.write("underlying_ticks", df, f"ib-{run}-{summary.files:06d}")
    summary.ticks += df.height
