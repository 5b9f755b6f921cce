"""The FlowEngine: the one place market logic runs, fed by any RecordSource.

DESIGN.md "One engine": batches of DBN records in ts_recv order go through the instrument
master (definition records), the L3 books, trade signing (the exchange's aggressor side, else
Lee–Ready against the book just before the trade, else the tick test) and the event-time
pressure windows. Closed windows come out enriched with the option's contract keys (root,
expiration, strike, right — from the definition, never from the symbol) and the underlying
future's last trade price at the window's end.

This is the first slice of issue #3: baselines are built from its windows by
``ifd_core.analysis.baselines``; detectors, analyzers and signals come next.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from ifd_core.analysis.order_book import BookSet
from ifd_core.analysis.pressure_windows import PressureWindows, WindowParams
from ifd_core.analysis.trade_sign import TradeSigner
from ifd_core.marketdata.frames import instruments_frame
from ifd_core.marketdata.record_source import RecordBatch

FIXED = 1_000_000_000
OPTION_CLASSES = ("C", "P")
INSTRUMENT_COLS = [
    "instrument_id",
    "raw_symbol",
    "asset",
    "instrument_class",
    "strike",
    "expiration",
    "underlying_id",
]


@dataclass
class EngineStats:
    records: int = 0
    option_trades: int = 0
    underlying_trades: int = 0
    other_trades: int = 0  # trades of instruments that are neither an option nor an underlying


class FlowEngine:
    """Feed ``process`` every batch of a stream, then ``finish``; both return closed windows."""

    def __init__(self, window_params: WindowParams | None = None) -> None:
        self.books = BookSet()
        self.signer = TradeSigner()
        self.windows = PressureWindows(window_params)
        self.instruments = pl.DataFrame(schema={c: t for c, t in _instrument_schema().items()})
        self._option_ids: set[int] = set()
        self._underlying_ids: set[int] = set()
        self._tape: list[pl.DataFrame] = []  # underlying trades (ts_event, underlying_id, price)
        self.stats = EngineStats()

    # ------------------------------------------------------------------ feed
    def process(self, batch: RecordBatch) -> pl.DataFrame:
        self.stats.records += len(batch)
        if batch.schema == "definition":
            self._define(batch.records)
            return self._enrich(self.windows.add(_empty_trades()))
        if batch.schema != "mbo":
            return self._enrich(self.windows.add(_empty_trades()))
        pre = self.books.apply(batch.records, pre_trade=True)
        if pre is None or len(pre) == 0:
            return self._enrich(self.windows.add(_empty_trades()))
        signed = self.signer.classify(pre)
        trades = pl.DataFrame(
            {
                "ts_event": pre["ts_event"],
                "instrument_id": pre["instrument_id"],
                "price": pre["price"],
                "size": pre["size"],
                "aggressor": np.char.decode(signed.aggressor, "ascii"),
            }
        )
        is_option = pl.col("instrument_id").is_in(list(self._option_ids))
        is_under = pl.col("instrument_id").is_in(list(self._underlying_ids))
        options = trades.filter(is_option)
        under = trades.filter(is_under & ~is_option)
        self.stats.option_trades += options.height
        self.stats.underlying_trades += under.height
        self.stats.other_trades += trades.height - options.height - under.height
        if under.height:
            self._tape.append(
                under.select("ts_event", pl.col("instrument_id").alias("underlying_id"), "price")
            )
        return self._enrich(self.windows.add(options))

    def finish(self) -> pl.DataFrame:
        self.books.flush()
        return self._enrich(self.windows.flush())

    # ------------------------------------------------------------------ state
    def _define(self, records: np.ndarray) -> None:
        defs = instruments_frame(records).select(INSTRUMENT_COLS)
        self.instruments = pl.concat([self.instruments, defs.cast(_instrument_schema())]).unique(
            "instrument_id", keep="last", maintain_order=True
        )
        opts = self.instruments.filter(pl.col("instrument_class").is_in(OPTION_CLASSES))
        self._option_ids = set(opts["instrument_id"].to_list())
        self._underlying_ids = set(opts["underlying_id"].to_list())

    def _enrich(self, windows: pl.DataFrame) -> pl.DataFrame:
        out = windows.join(self.instruments, on="instrument_id", how="left").rename(
            {"asset": "root", "instrument_class": "right"}
        )
        tape = (
            pl.concat(self._tape).sort("ts_event")
            if self._tape
            else pl.DataFrame(
                schema={"ts_event": pl.UInt64, "underlying_id": pl.UInt32, "price": pl.Int64}
            )
        )
        if self._tape:
            self._tape = [_trim(tape, self.windows.closed_before)]
        if out.height == 0:
            return out.with_columns(pl.lit(None, pl.Float64).alias("underlying_price"))
        under = tape.select(
            "underlying_id",
            pl.col("ts_event").cast(pl.Int64).alias("tape_ts"),
            (pl.col("price").cast(pl.Float64) / FIXED).alias("underlying_price"),
        )
        out = (
            out.with_columns(pl.col("window_end").cast(pl.Int64).alias("_end"))
            .sort("_end")
            .join_asof(
                under.sort("tape_ts"),
                left_on="_end",
                right_on="tape_ts",
                by="underlying_id",
                strategy="backward",
                check_sortedness=False,
            )
            .drop("_end", "tape_ts")
            .sort("window_start", "instrument_id")
        )
        return out


def _trim(tape: pl.DataFrame, closed_before: int | None) -> pl.DataFrame:
    """Keep what open windows can still need: trades since the oldest open window, plus the
    last earlier trade of each underlying (the price in force when that window began)."""
    if closed_before is None or tape.height == 0:
        return tape
    old = pl.col("ts_event") < closed_before
    last_old = tape.filter(old).group_by("underlying_id", maintain_order=True).last()
    return pl.concat([last_old.select(tape.columns), tape.filter(~old)]).sort("ts_event")


def _instrument_schema() -> dict[str, pl.DataType]:
    return {
        "instrument_id": pl.UInt32,
        "raw_symbol": pl.String,
        "asset": pl.String,
        "instrument_class": pl.String,
        "strike": pl.Float64,
        "expiration": pl.UInt64,
        "underlying_id": pl.UInt32,
    }


def _empty_trades() -> pl.DataFrame:
    from ifd_core.analysis.pressure_windows import TRADE_COLUMNS

    return pl.DataFrame(schema=TRADE_COLUMNS)
