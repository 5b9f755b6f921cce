"""The FlowEngine: the one place market logic runs, fed by any RecordSource.

Batches of DBN records in ts_recv order go through the instrument master, the L3 books, trade
signing, Black-76 deltas and the event-time pressure windows; closed windows come out with the
option's contract keys (from the definition, never the symbol), the underlying's last price and
their CME trade ``date``, and the detectors given to the engine run on every set it closes
(docs/architecture.md §One engine, three feeds; docs/algorithms.md §3–§4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import numpy as np
import polars as pl

from ifd_core.analysis import black76
from ifd_core.analysis.detectors import EngineContext, empty_signals
from ifd_core.analysis.order_book import BookSet
from ifd_core.analysis.pressure_windows import PressureWindows, WindowParams
from ifd_core.analysis.trade_sign import TradeSigner
from ifd_core.calendar import snap_to_sessions, trade_date
from ifd_core.marketdata.frames import (
    fixed_price,
    instruments_frame,
    open_interest_frame,
    statistics_frame,
)
from ifd_core.marketdata.record_source import RecordBatch
from ifd_core.units import to_points

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


class Detector(Protocol):
    name: str

    def on_windows(self, closed: pl.DataFrame, context: EngineContext) -> pl.DataFrame: ...


class EngineOutput(NamedTuple):
    """What one call produced: the windows it closed and the signals they raised."""

    windows: pl.DataFrame
    signals: pl.DataFrame


@dataclass
class EngineStats:
    records: int = 0
    option_trades: int = 0
    underlying_trades: int = 0
    other_trades: int = 0  # trades of instruments that are neither an option nor an underlying
    signals: dict[str, int] = field(default_factory=dict)


class FlowEngine:
    """Feed ``process`` every batch of a stream, then ``finish``; both return an
    ``EngineOutput`` (closed windows and the signals the detectors raised on them)."""

    def __init__(
        self,
        window_params: WindowParams | None = None,
        book: str = "fast",
        detectors: Sequence[Detector] = (),
    ) -> None:
        self.books = _make_books(book)
        self.signer = TradeSigner()
        self.windows = PressureWindows(window_params)
        self.instruments = pl.DataFrame(schema={c: t for c, t in _instrument_schema().items()})
        self._option_ids: set[int] = set()
        self._underlying_ids: set[int] = set()
        self._tape: list[pl.DataFrame] = []  # underlying trades (ts_event, underlying_id, price)
        # The underlying's last trade received so far (stream position, price in points).
        self._last_under = pl.DataFrame(schema=_LAST_UNDER)
        self._last_iv = pl.DataFrame(schema={"instrument_id": pl.UInt32, "iv": pl.Float64})
        self.stats = EngineStats()
        self.detectors = list(detectors)
        self._oi = pl.DataFrame(
            schema={"instrument_id": pl.UInt32, "ts_recv": pl.UInt64, "quantity": pl.Int64}
        )
        self.context = EngineContext(lambda: self._oi)
        self.last_option_trades = _NO_OPTION_TRADES

    # ------------------------------------------------------------------ feed
    def process(self, batch: RecordBatch) -> EngineOutput:
        self.stats.records += len(batch)
        self.last_option_trades = _NO_OPTION_TRADES
        if batch.schema == "definition":
            self._define(batch.records)
            return self._closed(self.windows.add(_empty_trades()))
        if batch.schema == "statistics":
            self._statistics(batch.records)
            return self._closed(self.windows.add(_empty_trades()))
        if batch.schema != "mbo":
            return self._closed(self.windows.add(_empty_trades()))
        pre = self.books.apply(batch.records, pre_trade=True)
        if pre is None or len(pre) == 0:
            return self._closed(self.windows.add(_empty_trades()))
        signed = self.signer.classify(pre)
        trades = pl.DataFrame(
            {
                "index": pre["index"],
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
        # The batch's option prints in order (a real-time trader's stops trigger on them).
        self.last_option_trades = options.select(
            "instrument_id", "ts_event", (pl.col("price") * 1e-9).alias("price")
        )
        self.stats.option_trades += options.height
        self.stats.underlying_trades += under.height
        self.stats.other_trades += trades.height - options.height - under.height
        if under.height:
            self._tape.append(
                under.select("ts_event", pl.col("instrument_id").alias("underlying_id"), "price")
            )
        options = self._with_delta(options, under)
        return self._closed(self.windows.add(options.drop("index")))

    def quote(self, instrument_id: int) -> tuple[float, float] | None:
        """(bid, ask) in points from the book as of the last batch; None unless both sides are
        quoted (a trader never takes a one-sided or empty market)."""
        bbo = self.books.bbo(instrument_id)
        if bbo is None or bbo.bid_sz <= 0 or bbo.ask_sz <= 0:
            return None
        return to_points(bbo.bid_px), to_points(bbo.ask_px)

    def finish(self) -> EngineOutput:
        self.books.flush()
        return self._closed(self.windows.flush())

    def _closed(self, raw_windows: pl.DataFrame) -> EngineOutput:
        windows = self._enrich(raw_windows)
        if windows.height == 0 or not self.detectors:
            return EngineOutput(windows, empty_signals())
        signals = [d.on_windows(windows, self.context) for d in self.detectors]
        for d, sig in zip(self.detectors, signals, strict=True):
            self.stats.signals[d.name] = self.stats.signals.get(d.name, 0) + sig.height
        out = pl.concat(signals)
        return EngineOutput(windows, out)

    # ------------------------------------------------------------------ greeks
    def _with_delta(self, options: pl.DataFrame, under: pl.DataFrame) -> pl.DataFrame:
        """Add each option trade's Black-76 delta (docs/algorithms.md §3)."""
        seen = pl.concat(
            [
                self._last_under,
                under.select(
                    "index",
                    pl.col("instrument_id").alias("underlying_id"),
                    fixed_price("price").alias("forward"),
                ).cast(_LAST_UNDER),
            ]
        )
        self._last_under = (
            seen.sort("index").group_by("underlying_id").last().select(list(_LAST_UNDER))
        )
        if options.height == 0:
            return options.with_columns(pl.lit(None, pl.Float64).alias("delta"))
        o = (
            options.join(
                self.instruments.select(
                    "instrument_id", "underlying_id", "strike", "expiration", "instrument_class"
                ),
                on="instrument_id",
                how="left",
            )
            .sort("index")
            .join_asof(
                seen.sort("index"),
                on="index",
                by="underlying_id",
                strategy="backward",
                check_sortedness=False,
            )
        )
        px = o.select(fixed_price("price"))["price"].to_numpy()
        f = o["forward"].fill_null(np.nan).to_numpy()
        k = o["strike"].fill_null(np.nan).to_numpy()
        tau = black76.tau_years(
            o["expiration"].cast(pl.Float64).fill_null(np.nan).to_numpy(),
            o["ts_event"].cast(pl.Float64).to_numpy(),
        )
        call = (o["instrument_class"] == "C").to_numpy()
        with np.errstate(invalid="ignore"):
            iv = black76.implied_vol(px, f, k, tau, call, self.windows.p.rate, iterations=40)
        o = o.with_columns(pl.Series("iv_trade", iv, pl.Float64).fill_nan(None))
        # The instrument's last good IV *before* this trade: previous batches, then this one.
        o = o.join(self._last_iv.rename({"iv": "iv_prev"}), on="instrument_id", how="left")
        o = o.with_columns(
            pl.coalesce(
                "iv_trade",
                pl.col("iv_trade").forward_fill().shift(1).over("instrument_id"),
                "iv_prev",
            ).alias("iv")
        )
        latest = (
            o.filter(pl.col("iv_trade").is_not_null())
            .group_by("instrument_id")
            .agg(pl.col("iv_trade").last().alias("iv"))
        )
        self._last_iv = (
            pl.concat([self._last_iv, latest.cast(self._last_iv.schema)])
            .group_by("instrument_id", maintain_order=True)
            .last()
        )
        iv_known = o["iv"].fill_null(np.nan).to_numpy()
        d = black76.delta(f, k, tau, iv_known, call, self.windows.p.rate)
        o = o.with_columns(pl.Series("delta", d, pl.Float64).fill_nan(None))
        return o.select(*options.columns, "delta")

    # ------------------------------------------------------------------ state
    def _statistics(self, records: np.ndarray) -> None:
        """Open interest as published (stat_type 9), kept with its receive time so a decision
        only ever sees what was known at that instant."""
        oi = open_interest_frame(statistics_frame(records))
        if oi.height:
            # Decisions are about windows closing now, so the latest few publications per
            # instrument are all a decision can need; a long-running engine stays bounded.
            self._oi = (
                pl.concat(
                    [
                        self._oi,
                        oi.select("instrument_id", "ts_recv", "quantity").cast(self._oi.schema),
                    ]
                )
                .sort("ts_recv")
                .group_by("instrument_id", maintain_order=True)
                .tail(3)
            )

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
            return out.with_columns(
                pl.lit(None, pl.Float64).alias("underlying_price"),
                pl.lit(None, pl.Date).alias("date"),
            )
        under = tape.select(
            "underlying_id",
            pl.col("ts_event").cast(pl.Int64).alias("tape_ts"),
            fixed_price("price").alias("underlying_price"),
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
        return snap_to_sessions(out.with_columns(trade_date("window_start")))


def _trim(tape: pl.DataFrame, closed_before: int | None) -> pl.DataFrame:
    """Keep what open windows can still need: trades since the oldest open window, plus the
    last earlier trade of each underlying (the price in force when that window began)."""
    if closed_before is None or tape.height == 0:
        return tape
    old = pl.col("ts_event") < closed_before
    last_old = tape.filter(old).group_by("underlying_id", maintain_order=True).last()
    return pl.concat([last_old.select(tape.columns), tape.filter(~old)]).sort("ts_event")


_NO_OPTION_TRADES = pl.DataFrame(
    schema={"instrument_id": pl.UInt32, "ts_event": pl.UInt64, "price": pl.Float64}
)
_LAST_UNDER = {"index": pl.Int64, "underlying_id": pl.UInt32, "forward": pl.Float64}


def _make_books(kind: str):
    """``fast``: the compiled book (numba); ``python``: the plain-dict reference book."""
    if kind == "python":
        return BookSet()
    if kind == "fast":
        from ifd_core.analysis.order_book_fast import FastBookSet

        return FastBookSet()
    raise ValueError(f"unknown book kind {kind!r}: 'fast' or 'python'")


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
