"""One immutable market snapshot per evaluation time: the input of every chain analyzer.

A ``MarketSnapshot`` is built once from data that existed at ``as_of_ns`` (windows that *ended* by
then, open interest and settlements *received* by then), and every analyzer is a pure function of
it, so they cannot see five inconsistent snapshots or fall back to a hard-coded price.
``with_greeks`` adds Black-76 greeks, never with a default volatility. Fields and the chain's
column contract: docs/algorithms.md §9 (Snapshot).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from ifd_core.analysis import black76
from ifd_core.units import MULTIPLIER, NS

CHAIN_SCHEMA: dict[str, pl.DataType] = {
    "instrument_id": pl.UInt32,
    "root": pl.String,
    "expiration": pl.UInt64,
    "strike": pl.Float64,
    "right": pl.String,
    "open_interest": pl.Int64,
    "buy_volume": pl.Int64,
    "sell_volume": pl.Int64,
    "unsigned_volume": pl.Int64,
    "recent_buy_volume": pl.Int64,
    "recent_sell_volume": pl.Int64,
    "premium": pl.Float64,
    "last_price": pl.Float64,
    "settlement": pl.Float64,
}
GREEK_COLUMNS = ("tau", "iv", "iv_source", "atm_iv", "atm_strike", "delta", "gamma")

WINDOW_COLUMNS = (
    "instrument_id",
    "root",
    "right",
    "strike",
    "expiration",
    "underlying_id",
    "window_start",
    "window_end",
    "buy_volume",
    "sell_volume",
    "unsigned_volume",
    "vwap",
)
INSTRUMENT_COLUMNS = ("instrument_id", "root", "right", "strike", "expiration", "underlying_id")


@dataclass(frozen=True, eq=False)
class MarketSnapshot:
    """Everything the chain analyzers may know at ``as_of_ns`` (docs/algorithms.md §9)."""

    as_of_ns: int
    underlying_id: int
    underlying_price: float
    chain: pl.DataFrame
    futures_volume: int | None = None
    recent_s: int = 300
    data_quality: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not (math.isfinite(self.underlying_price) and self.underlying_price > 0):
            raise ValueError(
                f"underlying_price must be a positive finite price in points, got "
                f"{self.underlying_price!r}; pass the future's traded price, never a placeholder"
            )
        if self.futures_volume is not None and self.futures_volume < 0:
            raise ValueError(f"futures_volume must be ≥ 0 or None, got {self.futures_volume}")
        missing = [c for c in CHAIN_SCHEMA if c not in self.chain.columns]
        if missing:
            raise ValueError(f"chain lacks columns {missing}; see the snapshot column contract")
        chain = self.chain.with_columns(
            [pl.col(c).cast(t, strict=True) for c, t in CHAIN_SCHEMA.items()]
        )
        bad = chain.filter(~pl.col("right").is_in(["C", "P"]))
        if bad.height:
            raise ValueError(f"right must be 'C' or 'P'; got {bad['right'].unique().to_list()}")
        if chain["instrument_id"].n_unique() != chain.height:
            raise ValueError("chain has several rows for one instrument_id; aggregate first")
        object.__setattr__(self, "chain", chain)

    @property
    def has_greeks(self) -> bool:
        return all(c in self.chain.columns for c in GREEK_COLUMNS)

    @property
    def is_empty(self) -> bool:
        return self.chain.height == 0


def build_snapshot(
    windows: pl.DataFrame,
    open_interest: pl.DataFrame,
    settlements: pl.DataFrame | None,
    as_of_ns: int,
    *,
    underlying_price: float,
    recent_s: int = 300,
    futures_volume: int | None = None,
    underlying_id: int | None = None,
    instruments: pl.DataFrame | None = None,
) -> MarketSnapshot:
    """Snapshot of one underlying's option chain at ``as_of_ns``, without look-ahead.

    ``windows`` are pressure windows (``ifd_core.analysis.pressure_windows`` enriched with the
    contract keys); only windows with ``window_end <= as_of_ns`` are used, so a window still open
    (or closed later) can never leak into a decision. Volumes sum over all usable windows — pass
    the session's windows for "today so far". The recent columns sum the windows that closed in
    ``(as_of_ns − recent_s, as_of_ns]``: with 5-minute windows and ``recent_s = 300`` that is the
    latest closed window.

    ``open_interest`` (``instrument_id, open_interest``) and ``settlements``
    (``instrument_id, settlement``) may carry ``ts_recv``; then only rows received by
    ``as_of_ns`` count and the latest one per instrument wins. Without ``ts_recv`` the caller
    vouches that they are point in time, and duplicates are an error.

    ``instruments`` (``instrument_id, root, right, strike, expiration, underlying_id``) adds
    options that did not trade (their OI still matters to the gamma map); without it the chain
    is the options that traded, and ``data_quality`` says so.
    """
    _require(windows, WINDOW_COLUMNS, "windows")
    _require(open_interest, ("instrument_id", "open_interest"), "open_interest")
    if settlements is not None:
        _require(settlements, ("instrument_id", "settlement"), "settlements")
    if instruments is not None:
        _require(instruments, INSTRUMENT_COLUMNS, "instruments")
    flags: list[str] = []

    used = windows.filter(pl.col("window_end").cast(pl.Int64) <= as_of_ns)
    # Which future the chain is on is definition data, not market data: later windows may say.
    uid = _underlying(used if used.height else windows, instruments, underlying_id)
    used = used.filter(pl.col("underlying_id") == uid)

    chain = _aggregate(used, as_of_ns, recent_s)
    if instruments is not None:
        master = (
            instruments.filter((pl.col("underlying_id") == uid) & pl.col("right").is_in(["C", "P"]))
            .select(INSTRUMENT_COLUMNS[:-1])
            .cast({k: CHAIN_SCHEMA[k] for k in INSTRUMENT_COLUMNS[:-1]})
            .unique("instrument_id", keep="last", maintain_order=True)
        )
        traded = chain.drop("root", "right", "strike", "expiration")
        unlisted = chain.join(master, on="instrument_id", how="anti")  # traded, not in master
        chain = master.join(traded, on="instrument_id", how="left")
        chain = pl.concat([chain, unlisted.select(chain.columns)]).with_columns(
            pl.col(c).fill_null(0)
            for c in (
                "buy_volume",
                "sell_volume",
                "unsigned_volume",
                "recent_buy_volume",
                "recent_sell_volume",
                "premium",
            )
        )
    else:
        flags.append("chain_from_trades_only: options without trades are absent")

    oi = _point_in_time(open_interest, "open_interest", as_of_ns)
    chain = chain.join(oi, on="instrument_id", how="left")
    if settlements is not None:
        st = _point_in_time(settlements, "settlement", as_of_ns)
        chain = chain.join(st, on="instrument_id", how="left")
    else:
        chain = chain.with_columns(pl.lit(None, pl.Float64).alias("settlement"))
        flags.append("no_settlements")
    n_no_oi = chain.filter(pl.col("open_interest").is_null()).height
    if n_no_oi:
        flags.append(f"open_interest_missing:{n_no_oi}")
    if chain.height == 0:
        flags.append("no_data: no option windows closed by as_of")
    chain = chain.select(list(CHAIN_SCHEMA)).sort("expiration", "strike", "right")
    return MarketSnapshot(
        as_of_ns=as_of_ns,
        underlying_id=uid,
        underlying_price=underlying_price,
        chain=chain,
        futures_volume=futures_volume,
        recent_s=recent_s,
        data_quality=tuple(flags),
    )


def _require(df: pl.DataFrame, cols: tuple[str, ...], name: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}")


def _underlying(used: pl.DataFrame, instruments: pl.DataFrame | None, uid: int | None) -> int:
    if uid is not None:
        return int(uid)
    ids = set(used["underlying_id"].drop_nulls().to_list())
    if not ids and instruments is not None:
        ids = set(instruments["underlying_id"].drop_nulls().to_list())
    if len(ids) == 1:
        return int(ids.pop())
    if not ids:
        raise ValueError("no usable windows: pass underlying_id to build an (empty) snapshot")
    raise ValueError(f"windows span underlyings {sorted(ids)}; pass underlying_id to choose one")


def _aggregate(used: pl.DataFrame, as_of_ns: int, recent_s: int) -> pl.DataFrame:
    vol = [pl.col(c).cast(pl.Int64) for c in ("buy_volume", "sell_volume", "unsigned_volume")]
    total = vol[0] + vol[1] + vol[2]
    recent = pl.col("window_end").cast(pl.Int64) > as_of_ns - recent_s * NS
    return (
        used.with_columns(total.alias("_vol"))
        .sort("window_end")
        .group_by("instrument_id", maintain_order=True)
        .agg(
            pl.col("root").last(),
            pl.col("right").last(),
            pl.col("strike").cast(pl.Float64).last(),
            pl.col("expiration").cast(pl.UInt64).last(),
            vol[0].sum().alias("buy_volume"),
            vol[1].sum().alias("sell_volume"),
            vol[2].sum().alias("unsigned_volume"),
            vol[0].filter(recent).sum().alias("recent_buy_volume"),
            vol[1].filter(recent).sum().alias("recent_sell_volume"),
            # vwap × volume = Σ price × size exactly, so this is the premium actually traded.
            (pl.col("vwap").fill_null(0.0) * pl.col("_vol") * MULTIPLIER).sum().alias("premium"),
            pl.col("vwap").filter(pl.col("_vol") > 0).last().alias("last_price"),
        )
        .cast({k: CHAIN_SCHEMA[k] for k in ("instrument_id", "root", "right")})
    )


def _point_in_time(df: pl.DataFrame, value: str, as_of_ns: int) -> pl.DataFrame:
    if "ts_recv" in df.columns:
        df = (
            df.filter(pl.col("ts_recv").cast(pl.Int64) <= as_of_ns)
            .sort("ts_recv")
            .group_by("instrument_id", maintain_order=True)
            .last()
        )
    elif df["instrument_id"].n_unique() != df.height:
        raise ValueError(
            f"{value}: several rows per instrument_id and no ts_recv to choose the one in force"
        )
    return df.select(
        pl.col("instrument_id").cast(pl.UInt32), pl.col(value).cast(CHAIN_SCHEMA[value])
    )


def with_greeks(snapshot: MarketSnapshot, rate: float = black76.RATE) -> MarketSnapshot:
    """Add IV, delta and gamma (Black-76 at the snapshot's underlying price).

    IV source, in order: the option's ``last_price`` (intraday, closest to ``as_of``), its
    ``settlement``, then its expiry's ATM IV (mean IV of the solvable options at the strike
    nearest the underlying). Where none exists the IV, delta and gamma are NaN and
    ``data_quality`` counts them: a made-up default vol would silently drive every analyzer.
    Expired options (tau = 0) get Black-76's step delta and zero gamma.
    """
    c = snapshot.chain
    f = snapshot.underlying_price
    if c.height == 0:
        out = c.with_columns(
            pl.lit(None, pl.Float64).alias("tau"),
            pl.lit(None, pl.Float64).alias("iv"),
            pl.lit(None, pl.String).alias("iv_source"),
            pl.lit(None, pl.Float64).alias("atm_iv"),
            pl.lit(None, pl.Float64).alias("atm_strike"),
            pl.lit(None, pl.Float64).alias("delta"),
            pl.lit(None, pl.Float64).alias("gamma"),
        )
        return replace(snapshot, chain=out)
    k = c["strike"].to_numpy()
    call = (c["right"] == "C").to_numpy()
    tau = black76.tau_years(c["expiration"].to_numpy().astype(np.float64), snapshot.as_of_ns)
    iv = np.full(c.height, np.nan)
    source = np.full(c.height, None, dtype=object)
    for col, name in (("last_price", "last"), ("settlement", "settlement")):
        px = c[col].fill_null(np.nan).to_numpy()
        todo = np.isnan(iv) & np.isfinite(px) & (tau > 0)
        if todo.any():
            solved = black76.implied_vol(px, f, k, tau, call, rate)
            ok = todo & np.isfinite(solved)
            iv[ok] = solved[ok]
            source[ok] = name
    out = c.with_columns(
        pl.Series("tau", tau),
        pl.Series("iv", iv, dtype=pl.Float64),
        pl.Series("iv_source", source.tolist(), dtype=pl.String),
    )
    atm = (
        out.filter(pl.col("iv").is_not_nan() & (pl.col("tau") > 0))
        .with_columns((pl.col("strike") - f).abs().alias("_dist"))
        .filter(pl.col("_dist") == pl.col("_dist").min().over("expiration"))
        .group_by("expiration")
        .agg(pl.col("iv").mean().alias("atm_iv"), pl.col("strike").mean().alias("atm_strike"))
    )
    out = out.join(atm, on="expiration", how="left")
    fallback = pl.col("iv").is_nan() & pl.col("atm_iv").is_not_null() & (pl.col("tau") > 0)
    out = out.with_columns(
        pl.when(fallback).then(pl.col("atm_iv")).otherwise(pl.col("iv")).alias("iv"),
        pl.when(fallback).then(pl.lit("atm")).otherwise(pl.col("iv_source")).alias("iv_source"),
    )
    vol = out["iv"].to_numpy()
    live = tau > 0
    known = np.isfinite(vol) | ~live
    d = black76.delta(f, k, tau, np.where(np.isfinite(vol), vol, 0.0), call, rate)
    g = black76.gamma(f, k, tau, np.where(np.isfinite(vol), vol, 0.0), rate)
    out = out.with_columns(
        pl.Series("delta", np.where(known, d, np.nan)),
        pl.Series("gamma", np.where(known, g, np.nan)),
    )
    flags = list(snapshot.data_quality)
    n_atm = out.filter(pl.col("iv_source") == "atm").height
    n_missing = out.filter(pl.col("iv").is_nan() & (pl.col("tau") > 0)).height
    n_expired = int((~live).sum())
    if n_atm:
        flags.append(f"iv_from_atm_fallback:{n_atm}")
    if n_missing:
        flags.append(f"iv_missing:{n_missing} options have no price and no ATM IV in their expiry")
    if n_expired:
        flags.append(f"expired_options:{n_expired}")
    return replace(snapshot, chain=out, data_quality=tuple(flags))


def ensure_greeks(snapshot: MarketSnapshot) -> MarketSnapshot:
    """``snapshot`` itself if it already has greeks (e.g. supplied by a test), else with them."""
    return snapshot if snapshot.has_greeks else with_greeks(snapshot)
