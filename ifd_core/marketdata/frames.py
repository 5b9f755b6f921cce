"""Decoded DBN arrays → polars frames in the lake's column contract.

Vectorised end to end: numpy structured arrays become polars columns without per-record Python.
The trade date of each row is computed from ``ts_recv`` (``ts_event`` for bars, which have no
receive time) with the Globex convention: after the 17:00 New York close a record belongs to the
next CME session (weekends and holidays skipped). Definition records are dated by ``ts_recv``
because their ``ts_event`` is the exchange's last update of the instrument, possibly months old.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from ifd_core.calendar import calendar_dates, snap_to_sessions
from ifd_core.units import UNDEF_PRICE

UNDEF_I32 = np.iinfo(np.int32).max
UNDEF_TS = np.iinfo(np.uint64).max
STAT_OPEN_INTEREST = 9
STAT_SETTLEMENT = 3
F_LAST, F_TOB, F_SNAPSHOT, F_MBP, F_BAD_TS_RECV, F_MAYBE_BAD_BOOK = 128, 64, 32, 16, 8, 4
NY = "America/New_York"
# One unit of a fixed-point price (DBN prices are integers of 1e-9).
PRICE_UNIT = 1e-9


def fixed_price(col: str) -> pl.Expr:
    """A fixed-point price column as float, by multiplying by ``PRICE_UNIT``.

    Not ``/ 1e9``: polars divides a column by a literal exactly when it is short and by
    multiplying with the reciprocal when it is longer, so the same trade priced in a small live
    micro-batch and in a whole day's batch came out one ulp apart (0.15 vs 0.15000000000000002).
    A multiplication is one IEEE operation whatever the length: live and batch agree exactly."""
    return pl.col(col).cast(pl.Float64) * PRICE_UNIT


def _chars(a: np.ndarray) -> np.ndarray:
    """Fixed-width byte strings (S1, S71...) → str objects only where needed, via numpy."""
    return np.char.decode(a, "ascii", errors="replace")


def _char1(a: np.ndarray) -> pl.Series:
    # One-byte enums (action, side): decode through a 256-entry lookup instead of per-row str.
    codes = a.view(np.uint8)
    return (
        pl.Series(codes)
        .cast(pl.UInt8)
        .replace_strict({i: chr(i) for i in range(256)}, return_dtype=pl.String)
    )


def _base(a: np.ndarray, names: list[str]) -> dict[str, np.ndarray | pl.Series]:
    return {n: a[n] for n in names}


def mbo_frame(a: np.ndarray) -> pl.DataFrame:
    cols = _base(
        a,
        [
            "ts_recv",
            "ts_event",
            "instrument_id",
            "publisher_id",
            "channel_id",
            "order_id",
            "price",
            "size",
            "flags",
            "ts_in_delta",
            "sequence",
        ],
    )
    cols["action"] = _char1(a["action"])
    cols["side"] = _char1(a["side"])
    return pl.DataFrame(cols).with_columns(calendar_dates(a["ts_recv"]))


def trades_from_mbo(mbo: pl.DataFrame) -> pl.DataFrame:
    """Trades are the aggressor's T records; F records are the passive side of the same print."""
    return (
        mbo.filter(pl.col("action") == "T")
        .select(
            "date",
            "ts_recv",
            "ts_event",
            "instrument_id",
            "price",
            "size",
            "side",
            "flags",
            "sequence",
        )
        .with_columns(pl.lit("mbo").alias("schema"))
    )


def trades_frame(a: np.ndarray, schema: str) -> pl.DataFrame:
    cols = _base(a, ["ts_recv", "ts_event", "instrument_id", "price", "size", "flags", "sequence"])
    cols["side"] = _char1(a["side"])
    df = pl.DataFrame(cols).with_columns(
        calendar_dates(a["ts_recv"]), pl.lit(schema).alias("schema")
    )
    return df


def bbo_frame(a: np.ndarray, schema: str) -> pl.DataFrame:
    n = len(a)
    names = a.dtype.names
    cols = _base(a, ["ts_recv", "ts_event", "instrument_id", "price", "size", "flags", "sequence"])
    cols["side"] = _char1(a["side"])
    cols["action"] = (
        _char1(a["action"]) if "action" in names else pl.Series([None] * n, dtype=pl.String)
    )
    for ours, theirs in [
        ("bid_px", "bid_px_00"),
        ("ask_px", "ask_px_00"),
        ("bid_sz", "bid_sz_00"),
        ("ask_sz", "ask_sz_00"),
        ("bid_ct", "bid_ct_00"),
        ("ask_ct", "ask_ct_00"),
    ]:
        cols[ours] = a[theirs]
    return pl.DataFrame(cols).with_columns(
        calendar_dates(a["ts_recv"]), pl.lit(schema).alias("schema")
    )


def ohlcv_frame(a: np.ndarray, schema: str) -> pl.DataFrame:
    cols = _base(a, ["ts_event", "instrument_id", "open", "high", "low", "close", "volume"])
    return pl.DataFrame(cols).with_columns(
        calendar_dates(a["ts_event"]), pl.lit(schema).alias("schema")
    )


def status_frame(a: np.ndarray) -> pl.DataFrame:
    cols = _base(a, ["ts_recv", "ts_event", "instrument_id", "action", "reason", "trading_event"])
    for c in ("is_trading", "is_quoting", "is_short_sell_restricted"):
        cols[c] = _char1(a[c])
    return pl.DataFrame(cols).with_columns(calendar_dates(a["ts_recv"]))


def statistics_frame(a: np.ndarray) -> pl.DataFrame:
    cols = _base(
        a,
        [
            "ts_recv",
            "ts_event",
            "ts_ref",
            "instrument_id",
            "stat_type",
            "price",
            "quantity",
            "sequence",
            "ts_in_delta",
            "channel_id",
            "update_action",
            "stat_flags",
        ],
    )
    return pl.DataFrame(cols).with_columns(calendar_dates(a["ts_recv"]))


def open_interest_frame(stats: pl.DataFrame) -> pl.DataFrame:
    return stats.filter(pl.col("stat_type") == STAT_OPEN_INTEREST).select(
        "date", "ts_recv", "ts_event", "ts_ref", "instrument_id", "quantity", "stat_flags"
    )


def settlements_frame(stats: pl.DataFrame) -> pl.DataFrame:
    return stats.filter(pl.col("stat_type") == STAT_SETTLEMENT).select(
        "date", "ts_recv", "ts_event", "ts_ref", "instrument_id", "price", "stat_flags"
    )


def _undef_to_null(values: np.ndarray, undef: int) -> pl.Series:
    s = pl.Series(values)
    return s.set(s == undef, None) if len(s) else s


def instruments_frame(a: np.ndarray) -> pl.DataFrame:
    strike = a["strike_price"].astype(np.int64)
    cols: dict[str, object] = {
        "instrument_id": a["instrument_id"],
        "raw_symbol": _chars(a["raw_symbol"]),
        "asset": _chars(a["asset"]),
        "group": _chars(a["group"]),
        "security_type": _chars(a["security_type"]),
        "instrument_class": _char1(a["instrument_class"]),
        "strike_price": _undef_to_null(strike, UNDEF_PRICE),
        "expiration": a["expiration"],
        "underlying": _chars(a["underlying"]),
        "underlying_id": a["underlying_id"],
        "min_price_increment": _undef_to_null(a["min_price_increment"], UNDEF_PRICE),
        "display_factor": a["display_factor"],
        "contract_multiplier": _undef_to_null(a["contract_multiplier"], UNDEF_I32),
        "unit_of_measure_qty": _undef_to_null(a["unit_of_measure_qty"], UNDEF_PRICE),
        "tick_rule": a["tick_rule"],
        "currency": _chars(a["currency"]),
        "exchange": _chars(a["exchange"]),
        "security_update_action": _char1(a["security_update_action"]),
        "ts_event": a["ts_event"],
        "ts_recv": a["ts_recv"],
    }
    df = pl.DataFrame(cols)
    return df.with_columns(
        fixed_price("strike_price").alias("strike"), calendar_dates(a["ts_recv"])
    )


def tables_of(schema: str, a: np.ndarray) -> dict[str, pl.DataFrame]:
    """Every lake table a decoded array of ``schema`` feeds, each row on its CME trade date."""
    return {t: snap_to_sessions(df) for t, df in _tables_of(schema, a).items()}


def _tables_of(schema: str, a: np.ndarray) -> dict[str, pl.DataFrame]:
    if schema == "mbo":
        mbo = mbo_frame(a)
        return {"mbo": mbo, "trades": trades_from_mbo(mbo)}
    if schema == "trades":
        return {"trades": trades_frame(a, schema)}
    if schema in ("tbbo", "mbp-1", "bbo-1s", "bbo-1m"):
        out = {"bbo": bbo_frame(a, schema)}
        if schema == "tbbo":  # a tbbo record is a trade with the BBO just before it
            out["trades"] = trades_frame(a, schema)
        return out
    if schema.startswith("ohlcv"):
        return {"ohlcv": ohlcv_frame(a, schema)}
    if schema == "status":
        return {"status": status_frame(a)}
    if schema == "statistics":
        stats = statistics_frame(a)
        return {
            "statistics": stats,
            "open_interest": open_interest_frame(stats),
            "settlements": settlements_frame(stats),
        }
    if schema == "definition":
        # A definition re-sent unchanged (live sessions do) is the same fact, not a new row.
        return {"instruments": instruments_frame(a).unique(maintain_order=True)}
    raise ValueError(f"no lake table for schema {schema}")
