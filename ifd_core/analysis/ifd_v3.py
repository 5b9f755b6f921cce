"""IFD v3: institutional-flow scoring of pressure windows (algorithms.md §4.4 PROPOSAL).

Input: windows scored against their baselines (``baselines.score``) and enriched by the engine.
For each window:

1. Gates: volume, trade count, |imbalance|, premium.
2. View: the underlying direction of the aggressor flow — the sign of the window's delta-signed
   volume Σ aggressor sign × size × Black-76 delta (calls bought or puts sold BULLISH, calls
   sold or puts bought BEARISH); where no trade had a known delta, the right's delta sign.
   ``direction`` is the aggressor side in the option itself (BUY/SELL).
3. Features in [0, 1]: size (normal CDF of the log-volume z-score), imbalance anomaly in the
   flow's own direction (normal CDF of the z-score of the dominant side's volume — bought
   contracts for a buying flow — times |imbalance|; the z-score of the imbalance ratio itself
   says little, since most windows are a print or two and sit at ±1), persistence (share of
   the instrument's last k windows with a same-sign gated imbalance), trend (the imbalance
   moving further in the flow's direction), premium
   concentration within the expiry's window, cross-strike coordination (other strikes of the same
   expiry and window with the same view), and data quality (baseline sessions present / N). Data
   quality is read from the bucket baseline, which spans the whole lookback; an instrument's own
   history is short by nature for a weekly listed days ago, which says nothing about the data.
4. Score: a weighted mean of the features (weights sum to 1), times (1 − market-making
   likelihood) and the data-quality factor. Market making / volatility trades: the same strike's
   other right traded in the same window with a similar size and the *opposite* view (a
   straddle), or a large unsigned (spread-leg) share.
5. Tiers from fixed, reachable thresholds; deterministic for a given input order.

A window without a baseline scores its baseline features as neutral (0.5) with data quality
lowered, never with invented statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import polars as pl

TIERS = (("EXTREME", 0.9), ("VERY_HIGH", 0.8), ("HIGH", 0.7), ("MODERATE", 0.0))


@dataclass(frozen=True)
class V3Params:
    min_total_volume: int = 100
    min_trades: int = 5
    min_imbalance: float = 0.33
    min_premium: float = 0.0
    min_confidence: float = 0.7
    min_data_quality: float = 0.0  # below it no signal at all (profiles: 0.85-0.95)
    persistence_windows: int = 3
    coordination_band_pct: float = 0.5
    coordination_full_count: int = 3
    trend_full_step: float = 0.2  # imbalance rising this much per window is a full trend
    straddle_size_balance: float = 0.5
    no_baseline_quality: float = 0.5
    weights: dict[str, float] = field(
        default_factory=lambda: {
            "size": 0.35,
            "imbalance": 0.30,
            "persistence": 0.10,
            "trend": 0.05,
            "concentration": 0.05,
            "coordination": 0.15,
        }
    )


def _phi(z: pl.Expr) -> pl.Expr:
    """Standard normal CDF (erf is not a polars expression; tanh approximation, |err| < 4e-4)."""
    return 0.5 * (1.0 + (math.sqrt(2.0 / math.pi) * (z + 0.044715 * z**3)).tanh())


def score_v3(windows: pl.DataFrame, p: V3Params | None = None) -> pl.DataFrame:
    """All windows with features, gate results, MM likelihood, score, tier and ``signal``."""
    p = p or V3Params()
    if abs(sum(p.weights.values()) - 1.0) > 1e-9:
        raise ValueError("v3 feature weights must sum to 1")
    net = pl.col("buy_volume").cast(pl.Int64) - pl.col("sell_volume").cast(pl.Int64)
    right_sign = pl.when(pl.col("right") == "C").then(1).otherwise(-1)
    flow_sign = pl.when(net > 0).then(1).when(net < 0).then(-1).otherwise(0)
    premium = pl.col("buy_premium") + pl.col("sell_premium")
    dv = pl.col("delta_volume") if "delta_volume" in windows.columns else pl.lit(None, pl.Float64)
    delta_sign = pl.when(dv > 0).then(1).when(dv < 0).then(-1).otherwise(None)
    w = windows.sort("window_start", "instrument_id").with_columns(
        premium.alias("premium"),
        flow_sign.alias("flow_sign"),
        pl.when(flow_sign == 0)
        .then(0)
        .otherwise(pl.coalesce(delta_sign, flow_sign * right_sign))
        .alias("view_sign"),
    )
    gated = (
        (pl.col("volume") >= p.min_total_volume)
        & (pl.col("trades") >= p.min_trades)
        & (pl.col("imbalance").abs() >= p.min_imbalance)
        & (pl.col("premium") >= p.min_premium)
    )
    w = w.with_columns(gated.alias("passes_gates"))

    # Baseline features: prefer the instrument's own history, else its bucket; else neutral.
    def z(m: str) -> pl.Expr:
        return pl.coalesce(
            pl.col(f"instrument_z_{m}").cast(pl.Float64), pl.col(f"bucket_z_{m}").cast(pl.Float64)
        )

    has_base = pl.col("instrument_has_baseline") | pl.col("bucket_has_baseline")
    quality = pl.coalesce(
        pl.when(pl.col("bucket_has_baseline")).then(pl.col("bucket_data_quality").cast(pl.Float64)),
        pl.when(pl.col("instrument_has_baseline")).then(
            pl.col("instrument_data_quality").cast(pl.Float64)
        ),
        pl.lit(p.no_baseline_quality),
    )
    w = w.with_columns(
        pl.when(has_base).then(_phi(z("log_volume"))).otherwise(0.5).alias("f_size"),
        pl.when(has_base)
        .then(
            _phi(pl.when(pl.col("flow_sign") > 0).then(z("buy_volume")).otherwise(z("sell_volume")))
            * pl.col("imbalance").abs()
        )
        .otherwise(0.5 * pl.col("imbalance").abs())
        .alias("f_imbalance"),
        quality.clip(0.0, 1.0).alias("data_quality"),
    )

    # Persistence and trend over the instrument's own recent windows (current included).
    k = p.persistence_windows
    same_sign = ((pl.col("imbalance").abs() >= p.min_imbalance) & (pl.col("flow_sign") != 0)).cast(
        pl.Float64
    ) * pl.col("flow_sign")
    w = w.with_columns(same_sign.alias("_signed_hit")).with_columns(
        (
            pl.col("_signed_hit").rolling_sum(k, min_samples=1).over("instrument_id")
            * pl.col("flow_sign")
            / k
        )
        .clip(0.0, 1.0)
        .alias("f_persistence"),
        (
            (pl.col("imbalance") - pl.col("imbalance").shift(1).over("instrument_id")).fill_null(
                0.0
            )
            * pl.col("flow_sign")
            / p.trend_full_step
        )
        .clip(0.0, 1.0)
        .alias("f_trend"),
    )
    # Premium concentration within the same expiry and window.
    w = w.with_columns(
        (pl.col("premium") / pl.col("premium").sum().over("expiration", "window_start"))
        .fill_nan(0.0)
        .alias("f_concentration")
    )
    w = _market_making(w, p)
    w = _coordination(w, p)
    weights = p.weights
    raw = sum(pl.col(f"f_{name}") * wt for name, wt in weights.items())
    score = raw * (1.0 - pl.col("mm_likelihood")) * pl.col("data_quality")
    tier = pl.when(score >= TIERS[0][1]).then(pl.lit(TIERS[0][0]))
    for name, threshold in TIERS[1:]:
        tier = tier.when(score >= threshold).then(pl.lit(name))
    return w.with_columns(
        raw.alias("raw_score"),
        score.alias("confidence"),
        tier.alias("tier"),
        pl.when(pl.col("view_sign") > 0)
        .then(pl.lit("BULLISH"))
        .otherwise(pl.lit("BEARISH"))
        .alias("view"),
        pl.when(pl.col("flow_sign") > 0)
        .then(pl.lit("BUY"))
        .otherwise(pl.lit("SELL"))
        .alias("direction"),
        (
            pl.col("passes_gates")
            & (score >= p.min_confidence)
            & (pl.col("view_sign") != 0)
            & (pl.col("data_quality") >= p.min_data_quality)
        ).alias("signal"),
    ).drop("_signed_hit")


def _market_making(w: pl.DataFrame, p: V3Params) -> pl.DataFrame:
    """Straddle/strangle evidence: the other right at the same strike, expiry and window with
    a similar size and the opposite view; plus the unsigned (spread-leg) share."""
    other = w.select(
        "expiration",
        "strike",
        "window_start",
        pl.col("right").replace_strict({"C": "P", "P": "C"}, default=None).alias("right"),
        pl.col("volume").alias("_o_volume"),
        pl.col("view_sign").alias("_o_view"),
    )
    j = w.join(other, on=["expiration", "strike", "window_start", "right"], how="left")
    balance = pl.min_horizontal("volume", "_o_volume") / pl.max_horizontal("volume", "_o_volume")
    straddle = (
        pl.when((pl.col("_o_view") == -pl.col("view_sign")) & (pl.col("view_sign") != 0))
        .then(pl.when(balance >= p.straddle_size_balance).then(balance).otherwise(balance * 0.5))
        .otherwise(0.0)
        .fill_null(0.0)
    )
    unsigned_share = pl.col("unsigned_volume") / pl.col("volume")
    return j.with_columns(
        straddle.alias("straddle_likelihood"),
        pl.max_horizontal(straddle, unsigned_share.fill_nan(0.0))
        .clip(0.0, 1.0)
        .alias("mm_likelihood"),
    ).drop("_o_volume", "_o_view")


def _coordination(w: pl.DataFrame, p: V3Params) -> pl.DataFrame:
    """Other strikes of the same expiry and window, within ±band % of the underlying, whose
    gated flow has the same view: min(count / full, 1) × their mean pre-coordination score."""
    others_w = {k: v for k, v in p.weights.items() if k != "coordination"}
    total = sum(others_w.values()) or 1.0
    pre = sum(pl.col(f"f_{k}") * v for k, v in others_w.items()) / total
    w = w.with_row_index("_row").with_columns(pre.alias("_pre"))
    cand = w.filter(pl.col("passes_gates")).select(
        "expiration",
        "window_start",
        pl.col("strike").alias("_s"),
        pl.col("view_sign").alias("_v"),
        pl.col("_pre").alias("_p"),
        pl.col("_row").alias("_r"),
    )
    band = pl.col("underlying_price") * p.coordination_band_pct / 100.0
    pairs = (
        w.select("_row", "expiration", "window_start", "strike", "view_sign", "underlying_price")
        .join(cand, on=["expiration", "window_start"], how="inner")
        .filter(
            (pl.col("_r") != pl.col("_row"))
            & (pl.col("_v") == pl.col("view_sign"))
            & (pl.col("view_sign") != 0)
            & ((pl.col("_s") - pl.col("strike")).abs() <= band)
        )
        .group_by("_row")
        .agg(pl.len().alias("coordinated_strikes"), pl.col("_p").mean().alias("_mean_p"))
    )
    return (
        w.join(pairs, on="_row", how="left")
        .with_columns(
            pl.col("coordinated_strikes").fill_null(0),
            (
                pl.min_horizontal(
                    pl.col("coordinated_strikes").fill_null(0) / p.coordination_full_count,
                    pl.lit(1.0),
                )
                * pl.col("_mean_p").fill_null(0.0)
            ).alias("f_coordination"),
        )
        .sort("_row")
        .drop("_row", "_pre", "_mean_p")
    )
