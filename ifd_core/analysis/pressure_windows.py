"""Pressure windows: aggressor-signed option volume per instrument and 5-minute window.

Event time only: a window closes when the watermark (largest ``ts_event`` seen − grace) passes its
end, every closed window is emitted once, and one batch or many chunks give identical windows.
The state is the trades of still-open windows, so memory is bounded by the window length. Input
trades are polars frames with ``ts_event`` (ns), ``instrument_id``, ``price`` (fixed 1e-9),
``size``, ``aggressor`` ('B', 'A', else unsigned) and an optional Black-76 ``delta``. The fields
and cases: docs/algorithms.md §4.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from ifd_core.analysis.black76 import RATE
from ifd_core.marketdata.frames import fixed_price
from ifd_core.units import MULTIPLIER, NS

TRADE_COLUMNS = {
    "ts_event": pl.UInt64,
    "instrument_id": pl.UInt32,
    "price": pl.Int64,
    "size": pl.UInt32,
    "aggressor": pl.String,
    "delta": pl.Float64,
}


@dataclass(frozen=True)
class WindowParams:
    window_s: int = 300
    grace_s: int = 30
    multiplier: float = MULTIPLIER  # $ per index point per contract (NQ options)
    large_print: int = 50  # contracts; a print at least this large counts as large
    ratio_cap: float = 100.0  # the legacy B/S ratio, never infinite
    alpha: float = 1.0  # contracts added to both sides of the log ratio
    dominance: float = 0.2  # |imbalance| above which a side dominates
    confidence_trades: int = 20  # trades for full sample-size confidence
    rate: float = RATE  # Black-76 discount rate of each trade's implied vol and delta


class PressureWindows:
    """Streaming aggregator; call ``add`` per batch, ``flush`` at the end of the stream."""

    def __init__(self, params: WindowParams | None = None) -> None:
        self.p = params or WindowParams()
        self._open = pl.DataFrame(schema=TRADE_COLUMNS)
        self._max_ts: int | None = None
        self._closed_before: int | None = None  # windows starting before this are emitted
        self.late_trades = pl.DataFrame(schema=TRADE_COLUMNS)

    @property
    def closed_before(self) -> int | None:
        """Windows starting before this instant have been emitted."""
        return self._closed_before

    @property
    def watermark(self) -> int | None:
        return None if self._max_ts is None else self._max_ts - self.p.grace_s * NS

    def add(self, trades: pl.DataFrame) -> pl.DataFrame:
        """Take a batch of trades; return the windows this batch closed."""
        if trades.height:
            if "delta" not in trades.columns:
                trades = trades.with_columns(pl.lit(None, pl.Float64).alias("delta"))
            trades = trades.select([pl.col(c).cast(t) for c, t in TRADE_COLUMNS.items()])
            trades = self._drop_late(trades)
            self._open = pl.concat([self._open, trades])
            batch_max = int(trades["ts_event"].max()) if trades.height else None
            if batch_max is not None:
                self._max_ts = batch_max if self._max_ts is None else max(self._max_ts, batch_max)
        wm = self.watermark
        if wm is None:
            return self._aggregate(self._open.clear())
        w = self.p.window_s * NS
        # A window [s, s + W) is closed once s + W <= watermark.
        cutoff = ((wm // w) * w) if wm >= 0 else 0
        return self._emit_before(cutoff)

    def flush(self) -> pl.DataFrame:
        """End of stream: every open window closes."""
        w = self.p.window_s * NS
        if self._open.height == 0:
            return self._aggregate(self._open)
        last = int(self._open["ts_event"].max())
        return self._emit_before((last // w + 1) * w)

    def _drop_late(self, trades: pl.DataFrame) -> pl.DataFrame:
        # A trade for a window already emitted cannot be added without changing published
        # output: it is kept aside and counted, never silently merged or dropped.
        if self._closed_before is None:
            return trades
        late = pl.col("ts_event") < self._closed_before
        n_late = trades.select(late.sum()).item()
        if n_late:
            self.late_trades = pl.concat([self.late_trades, trades.filter(late)])
            trades = trades.filter(~late)
        return trades

    def _emit_before(self, cutoff: int) -> pl.DataFrame:
        if self._closed_before is not None and cutoff <= self._closed_before:
            return self._aggregate(self._open.clear())
        self._closed_before = cutoff
        done = self._open.filter(pl.col("ts_event") < cutoff)
        self._open = self._open.filter(pl.col("ts_event") >= cutoff)
        return self._aggregate(done)

    def _aggregate(self, trades: pl.DataFrame) -> pl.DataFrame:
        return aggregate_windows(trades, self.p)


def pressure_measures(p: WindowParams) -> list[pl.Expr]:
    """Finite, symmetric pressure from ``buy_volume`` and ``sell_volume`` (docs/algorithms.md §4):
    imbalance in [−1, 1], the log ratio with ``alpha`` contracts added to both sides, and the
    legacy B/S ratio capped at ``ratio_cap`` (never infinite)."""
    b = pl.col("buy_volume").cast(pl.Float64)
    s = pl.col("sell_volume").cast(pl.Float64)
    return [
        pl.when(b + s > 0).then((b - s) / (b + s)).otherwise(0.0).alias("imbalance"),
        ((b + p.alpha) / (s + p.alpha)).log().alias("log_ratio"),
        pl.when(s > 0)
        .then(pl.min_horizontal(b / s, pl.lit(p.ratio_cap)))
        .when(b > 0)
        .then(pl.lit(p.ratio_cap))
        .otherwise(1.0)
        .alias("pressure_ratio"),
    ]


def aggregate_windows(trades: pl.DataFrame, p: WindowParams) -> pl.DataFrame:
    """Closed windows of ``trades`` (all of whose windows are complete)."""
    w = p.window_s * NS
    px = fixed_price("price")
    size = pl.col("size").cast(pl.Int64)
    buy = pl.col("aggressor") == "B"
    sell = pl.col("aggressor") == "A"
    unsigned = ~(buy | sell)
    premium = px * size * p.multiplier
    sign = pl.when(buy).then(1).when(sell).then(-1).otherwise(0)
    delta = pl.col("delta")
    keyed = trades.with_columns(((pl.col("ts_event") // w) * w).alias("window_start"))
    # Aggressive orders: one match time and side of one instrument (a sweep's prints together).
    orders = (
        keyed.filter(buy | sell)
        .group_by("window_start", "instrument_id", "ts_event", "aggressor")
        .agg(size.sum().alias("q"))
        .group_by("window_start", "instrument_id")
        .agg(
            (pl.col("q") ** 2).filter(pl.col("aggressor") == "B").sum().alias("buy_size_sq"),
            (pl.col("q") ** 2).filter(pl.col("aggressor") == "A").sum().alias("sell_size_sq"),
        )
    )
    out = (
        keyed.group_by("window_start", "instrument_id")
        .agg(
            size.filter(buy).sum().alias("buy_volume"),
            size.filter(sell).sum().alias("sell_volume"),
            size.filter(unsigned).sum().alias("unsigned_volume"),
            buy.sum().cast(pl.Int64).alias("buy_trades"),
            sell.sum().cast(pl.Int64).alias("sell_trades"),
            unsigned.sum().cast(pl.Int64).alias("unsigned_trades"),
            premium.filter(buy).sum().alias("buy_premium"),
            premium.filter(sell).sum().alias("sell_premium"),
            size.max().alias("max_print"),
            (size >= p.large_print).sum().cast(pl.Int64).alias("large_prints"),
            (size >= p.large_print).filter(buy).sum().cast(pl.Int64).alias("large_buy_prints"),
            (size >= p.large_print).filter(sell).sum().cast(pl.Int64).alias("large_sell_prints"),
            ((px * size).sum() / size.sum()).alias("vwap"),
            (sign * size * delta).sum().alias("delta_volume"),
            size.filter(delta.is_null() & (buy | sell)).sum().alias("delta_unknown_volume"),
            pl.col("ts_event").min().alias("first_trade_ts"),
            pl.col("ts_event").max().alias("last_trade_ts"),
        )
        .join(orders, on=["window_start", "instrument_id"], how="left")
        .with_columns(pl.col("buy_size_sq", "sell_size_sq").fill_null(0).cast(pl.Int64))
    )
    b = pl.col("buy_volume").cast(pl.Float64)
    s = pl.col("sell_volume").cast(pl.Float64)
    signed = b + s
    trades_n = pl.col("buy_trades") + pl.col("sell_trades") + pl.col("unsigned_trades")
    return (
        out.with_columns(
            (pl.col("window_start") + w).alias("window_end"),
            trades_n.alias("trades"),
            pl.when(signed > 0).then(b / signed).otherwise(0.5).alias("buy_share"),
            *pressure_measures(p),
        )
        .with_columns(
            pl.when(pl.col("imbalance") > p.dominance)
            .then(pl.lit("BUY"))
            .when(pl.col("imbalance") < -p.dominance)
            .then(pl.lit("SELL"))
            .otherwise(pl.lit("NEUTRAL"))
            .alias("dominant_side"),
            (
                pl.min_horizontal(pl.col("trades") / p.confidence_trades, pl.lit(1.0))
                * pl.col("imbalance").abs()
            ).alias("confidence"),
            (pl.col("buy_volume") + pl.col("sell_volume") + pl.col("unsigned_volume")).alias(
                "volume"
            ),
        )
        .sort("window_start", "instrument_id")
    )
