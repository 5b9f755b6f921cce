"""Dead Simple v1: today's option volume against prior-session open interest.

docs/algorithms.md §7 with its fixes: volume and premium come from aggressor-signed prints
(premium = Σ size × price × $20 actually traded, not last price × volume); the view follows the
*signed* flow (calls bought or puts sold are bullish, calls sold or puts bought bearish); open
interest 0 is a brand-new strike (ratio ∞, flagged), not a skip; a target and a stop exist only
when the strike lies on the profitable side of the entry. Thresholds are inclusive (≥), as the
reference implements them.

Input: one row per option for the day so far — ``strike``, ``right`` ('C'/'P'),
``buy_volume``, ``sell_volume``, ``unsigned_volume``, ``premium`` ($ traded, all sides),
``open_interest`` (prior session, point in time), ``underlying_price``; other columns pass through.
"""

from __future__ import annotations

import polars as pl

from ifd_core.settings import V1Settings

TIER_ORDER = {"EXTREME": 0, "VERY_HIGH": 1, "HIGH": 2, "MODERATE": 3}


def detect_v1(flow: pl.DataFrame, p: V1Settings | None = None) -> pl.DataFrame:
    """Signals of the day: one row per option passing every gate, strongest first."""
    p = p or V1Settings()
    volume = pl.col("buy_volume") + pl.col("sell_volume") + pl.col("unsigned_volume")
    oi = pl.col("open_interest")
    ratio = pl.when(oi > 0).then(volume / oi).otherwise(float("inf"))
    net = pl.col("buy_volume").cast(pl.Int64) - pl.col("sell_volume").cast(pl.Int64)
    bullish = ((pl.col("right") == "C") & (net > 0)) | ((pl.col("right") == "P") & (net < 0))
    bearish = ((pl.col("right") == "C") & (net < 0)) | ((pl.col("right") == "P") & (net > 0))
    out = (
        flow.with_columns(
            volume.alias("volume"),
            ratio.alias("vol_oi_ratio"),
            (oi == 0).alias("new_strike"),
            pl.when(net >= 0).then(pl.lit("BUY")).otherwise(pl.lit("SELL")).alias("direction"),
            pl.when(bullish)
            .then(pl.lit("BULLISH"))
            .when(bearish)
            .then(pl.lit("BEARISH"))
            .otherwise(pl.lit("NEUTRAL"))
            .alias("view"),
        )
        .filter(
            (pl.col("volume") > 0)
            & (pl.col("vol_oi_ratio") >= p.min_vol_oi_ratio)
            & (pl.col("volume") >= p.min_volume)
            & (pl.col("premium") >= p.min_dollar_size)
            & (pl.col("view") != "NEUTRAL")
        )
        .with_columns(
            pl.when(pl.col("vol_oi_ratio") >= p.tier_extreme)
            .then(pl.lit("EXTREME"))
            .when(pl.col("vol_oi_ratio") >= p.tier_very_high)
            .then(pl.lit("VERY_HIGH"))
            .when(pl.col("vol_oi_ratio") >= p.tier_high)
            .then(pl.lit("HIGH"))
            .otherwise(pl.lit("MODERATE"))
            .alias("tier")
        )
    )
    return _plan(out, p).sort(
        pl.col("tier").replace_strict(TIER_ORDER, return_dtype=pl.Int8),
        pl.col("premium"),
        descending=[False, True],
    )


def _plan(signals: pl.DataFrame, p: V1Settings) -> pl.DataFrame:
    entry = pl.col("underlying_price")
    d = (entry - pl.col("strike")).abs()
    long_ = pl.col("view") == "BULLISH"
    profitable = pl.when(long_).then(pl.col("strike") > entry).otherwise(pl.col("strike") < entry)
    stop = pl.when(long_).then(entry - 0.5 * d).otherwise(entry + 0.5 * d)
    distance = d / entry * 100.0
    return signals.with_columns(
        pl.when(long_).then(pl.lit("LONG")).otherwise(pl.lit("SHORT")).alias("trade_side"),
        pl.when(profitable).then(pl.col("strike")).alias("target_price"),
        pl.when(profitable).then(stop).alias("stop_price"),
        distance.alias("distance_percent"),
        (distance <= p.max_distance_percent).alias("actionable"),
    )
