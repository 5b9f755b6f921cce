"""Baselines of pressure windows: what normal flow looks like, from earlier sessions only.

The history is every window of the previous N CME sessions, never the session judged, under two
keys (moneyness × days-to-expiry × right × time-of-day bucket, and the instrument itself); mean
and floored sample standard deviation; too few samples is "no baseline", said explicitly, never
invented; each row carries the sessions it used and its data quality (docs/algorithms.md §5).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import polars as pl

from ifd_core.units import NS

DAY_NS = 86_400 * NS
NY = "America/New_York"
# Moneyness as (strike / underlying − 1) in percent; bucket edges are symmetric around the money.
MONEYNESS_EDGES = [-6.0, -4.0, -2.0, -1.0, -0.5, 0.5, 1.0, 2.0, 4.0, 6.0]
DTE_EDGES = [0.5, 2.5, 7.5, 45.5]  # 0DTE | 1–2 | 3–7 (weekly) | 8–45 | beyond
METRICS = ("log_volume", "buy_volume", "sell_volume", "imbalance")
BUCKET_KEYS = ("moneyness_bucket", "dte_bucket", "right", "time_bucket")


@dataclass(frozen=True)
class BaselineParams:
    lookback_sessions: int = 20
    min_samples: int = 5
    std_floor: dict[str, float] = field(
        default_factory=lambda: {
            "log_volume": 0.5,
            "buy_volume": 5.0,
            "sell_volume": 5.0,
            "imbalance": 0.1,
        }
    )


def _bucket(x: pl.Expr, edges: list[float]) -> pl.Expr:
    """Left-closed interval label of ``x``: '(-inf, e0)', '[e0, e1)', ..., '[en, inf)'."""
    labels = [f"(-inf, {edges[0]})"]
    labels += [f"[{a}, {b})" for a, b in zip(edges, edges[1:], strict=False)]
    labels.append(f"[{edges[-1]}, inf)")
    expr = pl.when(x < edges[0]).then(pl.lit(labels[0]))
    for edge, label in zip(edges[1:], labels[1:-1], strict=True):
        expr = expr.when(x < edge).then(pl.lit(label))
    return expr.otherwise(pl.lit(labels[-1]))


def add_bucket_keys(windows: pl.DataFrame) -> pl.DataFrame:
    """Add the bucket keys and ``log_volume`` to pressure windows.

    Needs ``window_start`` (ns), ``strike`` (points), ``right`` ('C'/'P'), ``expiration`` (ns)
    and ``underlying_price`` (points, at the window's close).
    """
    money = (pl.col("strike") / pl.col("underlying_price") - 1.0) * 100.0
    dte = (pl.col("expiration").cast(pl.Int64) - pl.col("window_start").cast(pl.Int64)) / DAY_NS
    et = (
        pl.col("window_start")
        .cast(pl.Int64)
        .cast(pl.Datetime("ns", "UTC"))
        .dt.convert_time_zone(NY)
    )
    minute_of_day = et.dt.hour().cast(pl.Int32) * 60 + et.dt.minute().cast(pl.Int32)
    return windows.with_columns(
        _bucket(money, MONEYNESS_EDGES).alias("moneyness_bucket"),
        _bucket(dte, DTE_EDGES).alias("dte_bucket"),
        (minute_of_day // 30).alias("time_bucket"),
        (pl.col("buy_volume") + pl.col("sell_volume") + pl.col("unsigned_volume"))
        .cast(pl.Float64)
        .log1p()
        .alias("log_volume"),
    )


def _stats(df: pl.DataFrame, keys: list[str], p: BaselineParams) -> pl.DataFrame:
    aggs = [pl.len().alias("n"), pl.col("date").unique().sort().alias("sessions_used")]
    for m in METRICS:
        floor = p.std_floor.get(m, 0.0)
        aggs += [
            pl.col(m).cast(pl.Float64).mean().alias(f"mean_{m}"),
            pl.max_horizontal(
                pl.col(m).cast(pl.Float64).std(ddof=1).fill_null(0.0), pl.lit(floor)
            ).alias(f"std_{m}"),
        ]
    return df.group_by(keys).agg(aggs)


def build_baselines(
    history: pl.DataFrame,
    session: dt.date,
    sessions: list[dt.date],
    p: BaselineParams | None = None,
) -> dict[str, pl.DataFrame]:
    """Baselines for judging ``session``, from windows of ``sessions`` (the N sessions before it).

    ``history`` holds bucket-keyed windows (``add_bucket_keys``) with their session in ``date``.
    Returns {"bucket": ..., "instrument": ...}; rows below ``min_samples`` have
    ``has_baseline = False`` and are kept so the gap is visible.
    """
    p = p or BaselineParams()
    if session in sessions:
        raise ValueError(f"the baseline for {session} cannot include {session} itself")
    used = history.filter(pl.col("date").is_in(sessions))
    # Data quality is about the data, not the key: the share of the lookback's sessions the
    # warehouse has windows for. A bucket that simply saw no trades on a session is a smaller
    # sample (``n``, ``min_samples``), not missing data.
    with_data = set(used["date"].unique().to_list()) if used.height else set()
    quality = len(with_data) / max(len(sessions), 1)
    out = {}
    for kind, keys in (("bucket", list(BUCKET_KEYS)), ("instrument", ["instrument_id"])):
        stats = _stats(used, keys, p)
        out[kind] = stats.with_columns(
            pl.lit(session).alias("session"),
            (pl.col("n") >= p.min_samples).alias("has_baseline"),
            pl.lit(quality).alias("data_quality"),
            pl.lit(len(sessions)).alias("lookback_sessions"),
        )
    return out


def score(windows: pl.DataFrame, baselines: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """z-scores of each window against its bucket and its instrument baselines.

    A window with no baseline of a kind gets null z-scores and ``has_<kind>_baseline = False``.
    """
    out = windows
    for kind, keys in (("bucket", list(BUCKET_KEYS)), ("instrument", ["instrument_id"])):
        b = baselines[kind]
        cols = [f"mean_{m}" for m in METRICS] + [f"std_{m}" for m in METRICS]
        b = b.select(*keys, "n", "has_baseline", "data_quality", *cols).rename(
            {c: f"{kind}_{c}" for c in ["n", "has_baseline", "data_quality", *cols]}
        )
        out = out.join(b, on=keys, how="left").with_columns(
            pl.col(f"{kind}_has_baseline").fill_null(False)
        )
        ok = pl.col(f"{kind}_has_baseline")
        out = out.with_columns(
            pl.when(ok)
            .then(
                (pl.col(m).cast(pl.Float64) - pl.col(f"{kind}_mean_{m}"))
                / pl.col(f"{kind}_std_{m}")
            )
            .alias(f"{kind}_z_{m}")
            for m in METRICS
        )
    return out
