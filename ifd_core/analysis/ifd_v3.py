"""IFD v3: institutional-flow scoring of pressure windows (docs/algorithms.md §6).

Input: windows scored against their baselines (``baselines.score``) and enriched by the engine.
Each window passes gates, gets a view, three evidence features (size, imbalance, independent
prints) raised by optional support (persistence, trend, concentration, coordination), then a score
= raw × breadth × market-making factor × data quality, and a tier. The formulas, the reasons for
their shapes and hand-computed cases are in docs/algorithms.md §6; every parameter is a field of
``V3Params``, built from the ``analysis.v3`` settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import polars as pl

TIERS = (("EXTREME", 0.9), ("VERY_HIGH", 0.8), ("HIGH", 0.7), ("MODERATE", 0.0))
EVIDENCE = ("size", "imbalance", "prints")
SUPPORT = ("persistence", "trend", "concentration", "coordination")


@dataclass(frozen=True)
class V3Params:
    min_total_volume: int = 100
    min_trades: int = 5
    min_imbalance: float = 0.33
    min_premium: float = 0.0
    min_confidence: float = 0.7
    min_data_quality: float = 0.0  # below it no signal at all (profiles: 0.85-0.95)
    persistence_windows: int = 3  # the current window and the k − 1 before it
    coordination_band_pct: float = 0.5
    coordination_full_count: int = 3
    trend_full_step: float = 0.2  # imbalance rising this much per window is a full trend
    straddle_size_balance: float = 0.5
    no_baseline_quality: float = 0.5
    size_full_ratio: float = 1000.0  # window volume / normal volume where f_size reaches 1
    full_breadth_prints: float = 3.0  # independent orders on the flow side for full breadth
    mm_floor: float = 0.25  # market-making likelihood below which it does not discount
    weights: dict[str, float] = field(
        default_factory=lambda: {"size": 0.35, "imbalance": 0.30, "prints": 0.35}
    )
    support_gains: dict[str, float] = field(
        default_factory=lambda: {
            "persistence": 0.4,
            "trend": 0.1,
            "concentration": 0.1,
            "coordination": 0.5,
        }
    )


def _phi(z: pl.Expr) -> pl.Expr:
    """Standard normal CDF (erf is not a polars expression; tanh approximation, |err| < 4e-4)."""
    return 0.5 * (1.0 + (math.sqrt(2.0 / math.pi) * (z + 0.044715 * z**3)).tanh())


def _check(p: V3Params) -> None:
    if set(p.weights) - set(EVIDENCE):
        raise ValueError(f"v3 evidence weights are for {EVIDENCE}, got {sorted(p.weights)}")
    if abs(sum(p.weights.values()) - 1.0) > 1e-9:
        raise ValueError("v3 feature weights must sum to 1")
    if set(p.support_gains) - set(SUPPORT):
        raise ValueError(f"v3 support gains are for {SUPPORT}, got {sorted(p.support_gains)}")
    if any(not 0.0 <= g <= 1.0 for g in p.support_gains.values()):
        raise ValueError("v3 support gains must lie in [0, 1]")
    if p.full_breadth_prints <= 1.0 or p.size_full_ratio <= 1.0 or not 0.0 <= p.mm_floor < 1.0:
        raise ValueError("v3: full_breadth_prints > 1, size_full_ratio > 1, mm_floor in [0, 1)")


# Columns a frame may lack: windows stored before engine-3, or scored without a baseline.
_OPTIONAL = {
    "delta_volume": pl.Float64,
    "buy_size_sq": pl.Int64,
    "sell_size_sq": pl.Int64,
    "max_print": pl.Int64,
    **{f"{k}_mean_log_volume": pl.Float64 for k in ("instrument", "bucket")},
}


def score_v3(windows: pl.DataFrame, p: V3Params | None = None) -> pl.DataFrame:
    """All windows with features, gate results, MM likelihood, score, tier and ``signal``."""
    p = p or V3Params()
    _check(p)
    missing = [pl.lit(None, t).alias(c) for c, t in _OPTIONAL.items() if c not in windows.columns]
    windows = windows.with_columns(missing) if missing else windows
    net = pl.col("buy_volume").cast(pl.Int64) - pl.col("sell_volume").cast(pl.Int64)
    right_sign = pl.when(pl.col("right") == "C").then(1).otherwise(-1)
    flow_sign = pl.when(net > 0).then(1).when(net < 0).then(-1).otherwise(0)
    premium = pl.col("buy_premium") + pl.col("sell_premium")
    dv = pl.col("delta_volume")
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
    w = _evidence(w, p)
    w = _support(w, p)
    w = _market_making(w, p)
    w = _coordination(w, p)
    gains = p.support_gains
    doubt = pl.lit(1.0)
    for name, gain in gains.items():
        doubt = doubt * (1.0 - gain * pl.col(f"f_{name}").clip(0.0, 1.0))
    raw = 1.0 - (1.0 - pl.col("evidence")) * doubt
    score = raw * pl.col("breadth") * pl.col("mm_factor") * pl.col("data_quality")
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
    )


def _evidence(w: pl.DataFrame, p: V3Params) -> pl.DataFrame:
    """Size, one-sidedness and independent prints; their weighted mean; breadth; data quality."""

    # Baseline features: prefer the instrument's own history, else its bucket; else neutral.
    def z(m: str) -> pl.Expr:
        return pl.coalesce(
            pl.col(f"instrument_z_{m}").cast(pl.Float64), pl.col(f"bucket_z_{m}").cast(pl.Float64)
        )

    has_base = pl.col("instrument_has_baseline") | pl.col("bucket_has_baseline")
    net_volume = pl.col("buy_volume").cast(pl.Int64) - pl.col("sell_volume").cast(pl.Int64)
    normal_log = pl.coalesce(
        pl.when(pl.col("instrument_has_baseline")).then(pl.col("instrument_mean_log_volume")),
        pl.when(pl.col("bucket_has_baseline")).then(pl.col("bucket_mean_log_volume")),
    ).cast(pl.Float64)
    log_ratio = net_volume.abs().cast(pl.Float64).log1p() - normal_log
    quality = pl.coalesce(
        pl.when(pl.col("bucket_has_baseline")).then(pl.col("bucket_data_quality").cast(pl.Float64)),
        pl.when(pl.col("instrument_has_baseline")).then(
            pl.col("instrument_data_quality").cast(pl.Float64)
        ),
        pl.lit(p.no_baseline_quality),
    )
    buying = pl.col("flow_sign") > 0
    side_volume = pl.when(buying).then("buy_volume").otherwise("sell_volume").cast(pl.Float64)
    side_sq = pl.when(buying).then("buy_size_sq").otherwise("sell_size_sq").cast(pl.Float64)
    # Unknown order sizes (older windows): the fewest prints of max_print that carry the side.
    fewest = side_volume / pl.col("max_print").cast(pl.Float64).clip(lower_bound=1.0)
    n = (
        pl.when((pl.col("flow_sign") == 0) | (side_volume <= 0))
        .then(0.0)
        .otherwise(
            pl.coalesce(pl.when(side_sq > 0).then(side_volume**2 / side_sq), fewest, pl.lit(1.0))
        )
        .clip(lower_bound=0.0)
    )
    w = w.with_columns(
        log_ratio.exp().alias("volume_ratio"),
        pl.when(has_base & normal_log.is_not_null())
        .then((log_ratio / math.log(p.size_full_ratio)).clip(0.0, 1.0))
        .otherwise(0.5)
        .alias("f_size"),
        pl.when(has_base)
        .then(_phi(pl.when(buying).then(z("buy_volume")).otherwise(z("sell_volume"))))
        .otherwise(0.5)
        .mul(pl.col("imbalance").abs())
        .alias("f_imbalance"),
        n.alias("independent_prints"),
        quality.clip(0.0, 1.0).alias("data_quality"),
    ).with_columns(
        pl.when(pl.col("independent_prints") > 1.0)
        .then(1.0 - 1.0 / pl.col("independent_prints"))
        .otherwise(0.0)
        .alias("f_prints"),
        ((pl.col("independent_prints") - 1.0) / (p.full_breadth_prints - 1.0))
        .clip(0.0, 1.0)
        .alias("breadth"),
    )
    evidence = sum(pl.col(f"f_{name}") * wt for name, wt in p.weights.items())
    return w.with_columns(evidence.alias("evidence"))


def _support(w: pl.DataFrame, p: V3Params) -> pl.DataFrame:
    """Persistence and trend over the instrument's own recent windows; premium concentration."""
    before = max(p.persistence_windows - 1, 1)
    hit = (pl.col("passes_gates") & (pl.col("flow_sign") != 0)).cast(pl.Float64) * pl.col(
        "flow_sign"
    )
    w = w.with_columns(hit.alias("_signed_hit")).with_columns(
        (
            pl.col("_signed_hit").shift(1).rolling_sum(before, min_samples=1).over("instrument_id")
            * pl.col("flow_sign")
            / before
        )
        .fill_null(0.0)
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
        (pl.col("premium") / pl.col("premium").sum().over("expiration", "window_start"))
        .fill_nan(0.0)
        .alias("f_concentration"),
    )
    return w.drop("_signed_hit")


def _market_making(w: pl.DataFrame, p: V3Params) -> pl.DataFrame:
    """Straddle/strangle evidence: the other right at the same strike, expiry and window with
    a similar size and the opposite view; plus the unsigned (spread-leg) share. ``mm_factor``
    discounts only the part above ``mm_floor``."""
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
    mm = pl.max_horizontal(straddle, unsigned_share.fill_nan(0.0)).clip(0.0, 1.0)
    return j.with_columns(
        straddle.alias("straddle_likelihood"),
        mm.alias("mm_likelihood"),
        (1.0 - ((mm - p.mm_floor) / (1.0 - p.mm_floor)).clip(0.0, 1.0)).alias("mm_factor"),
    ).drop("_o_volume", "_o_view")


def _coordination(w: pl.DataFrame, p: V3Params) -> pl.DataFrame:
    """Other strikes of the same expiry and window, within ±band % of the underlying, whose
    gated flow has the same view: min(count / full, 1) × their mean pre-coordination score
    (evidence × breadth, so a one-order window lends no coordination either)."""
    pre = pl.col("evidence") * pl.col("breadth")
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
