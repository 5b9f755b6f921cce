"""Risk analysis, "who has more skin in the game", per expiry.

Premium at stake of out-of-the-money options by side, dealer gamma/delta exposure by strike under
``DealerPositioning``, strike roles from the price side, and a verdict with urgency, all from
``RiskParams`` thresholds. Empty or unusable inputs give status "no_data" and no verdict.
Definitions: docs/algorithms.md §9 (Risk analysis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from ifd_core.analysis import black76
from ifd_core.analysis.chain.positioning import DealerPositioning
from ifd_core.analysis.chain.snapshot import MULTIPLIER, MarketSnapshot, ensure_greeks

VERSION = "1.0"
VERDICTS = (
    "EXTREME_CALL_DOMINANCE",
    "STRONG_CALL_DOMINANCE",
    "MODERATE_CALL_DOMINANCE",
    "SLIGHT_CALL_DOMINANCE",
    "BALANCED",
    "MODERATE_PUT_DOMINANCE",
    "STRONG_PUT_DOMINANCE",
)
VERDICT_BIAS = ("UPWARD",) * 4 + ("SIDEWAYS",) + ("DOWNWARD",) * 2


@dataclass(frozen=True)
class RiskParams:
    multiplier: float = MULTIPLIER  # $ per point per option
    significance_floor_usd: float = 10_000.0  # a strike's stake below this is insignificant
    battle_zone_share: float = 0.15  # battle zone: stake ≥ this share of the expiry's total
    strike_dominance: float = 1.2  # a side dominates a strike at ≥ 1.2× the other
    region_pct: float = 0.5  # region: strikes within ±0.5 % of the price
    region_dominance: float = 1.5  # a side dominates the region at ≥ 1.5× the other
    verdict_levels: tuple[float, ...] = (3.0, 2.0, 1.5, 1.2, 0.67, 0.5)  # call/put ratio cuts
    critical_pct: float = 1.0  # urgency CRITICAL below this % distance
    high_pct: float = 2.0  # urgency HIGH below this % distance
    # proximity tiers (docs/algorithms.md §9 parameters) for the danger ranking
    immediate_points: float = 10.0
    near_points: float = 25.0
    medium_points: float = 50.0
    immediate_weight: float = 3.0
    near_weight: float = 2.0
    medium_weight: float = 1.0
    distant_weight: float = 0.5
    heavy_ratio: float = 1.0  # volume / OI above this: HEAVY_REINFORCEMENTS
    moderate_ratio: float = 0.5  # above this: MODERATE_ACTIVITY
    stake_basis: str = "otm"  # "otm" | "extrinsic"
    top_zones: int = 5
    positioning: DealerPositioning = field(default_factory=DealerPositioning)

    def __post_init__(self) -> None:
        if self.stake_basis not in ("otm", "extrinsic"):
            raise ValueError(f"stake_basis must be 'otm' or 'extrinsic', not {self.stake_basis!r}")
        if len(self.verdict_levels) != len(VERDICTS) - 1:
            raise ValueError(f"verdict_levels needs {len(VERDICTS) - 1} cuts")
        if list(self.verdict_levels) != sorted(self.verdict_levels, reverse=True):
            raise ValueError("verdict_levels must be descending")


@dataclass(frozen=True, eq=False)
class ExpiryRisk:
    expiration_ns: int
    status: str  # "ok" | "no_data"
    call_stake: float
    put_stake: float
    ratio: float | None  # call / put stake; inf when only calls are at stake
    verdict: str | None
    bias: str | None  # UPWARD | SIDEWAYS | DOWNWARD
    region_dominance: str  # CALL | PUT | CONTESTED | NONE
    nearest_call_threat: float | None  # strike of the nearest significant call stake above
    nearest_put_threat: float | None  # strike of the nearest significant put stake below
    proximity_bias: str | None  # UPWARD if the call threat is nearer, DOWNWARD if the put
    net_dealer_gamma: float | None  # futures per point, NaN-free options only
    net_dealer_delta: float | None  # futures
    strikes: pl.DataFrame  # per strike: stakes, roles, dominance, urgency, exposures
    battle_zones: pl.DataFrame  # top zones by danger
    notional_premium: float  # $ traded in this expiry (for tie-breaks)


@dataclass(frozen=True, eq=False)
class RiskResult:
    status: str  # "ok" | "no_data"
    as_of_ns: int
    underlying_price: float
    positioning: str
    expiries: tuple[ExpiryRisk, ...]
    data_quality: tuple[str, ...]


def verdict(ratio: float, levels: tuple[float, ...]) -> tuple[str, str]:
    """Seven-level verdict and its bias for a call/put stake ratio (cuts inclusive, ≥)."""
    for i, cut in enumerate(levels):
        if ratio >= cut:
            return VERDICTS[i], VERDICT_BIAS[i]
    return VERDICTS[-1], VERDICT_BIAS[-1]


def reinforcement(volume: pl.Expr, oi: pl.Expr, p: RiskParams) -> pl.Expr:
    ratio = volume / oi
    return (
        pl.when(oi.fill_null(0) == 0)
        .then(pl.lit("NEW_POSITIONS_ONLY"))
        .when(ratio > p.heavy_ratio)
        .then(pl.lit("HEAVY_REINFORCEMENTS"))
        .when(ratio > p.moderate_ratio)
        .then(pl.lit("MODERATE_ACTIVITY"))
        .otherwise(pl.lit("EXISTING_POSITIONS"))
    )


def analyze_risk(snapshot: MarketSnapshot, params: RiskParams | None = None) -> RiskResult:
    p = params or RiskParams()
    snap = ensure_greeks(snapshot)
    flags = list(snap.data_quality)
    c = snap.chain.filter(pl.col("expiration").cast(pl.Int64) > snap.as_of_ns)
    n_nomark = c.filter(pl.col("iv").is_nan() | pl.col("iv").is_null()).height
    if n_nomark:
        flags.append(f"mark_missing:{n_nomark} options without IV have no stake")
    out = tuple(
        _expiry(snap, c.filter(pl.col("expiration") == e), int(e), p)
        for e in sorted(c["expiration"].unique().to_list())
    )
    status = "ok" if any(x.status == "ok" for x in out) else "no_data"
    if status == "no_data":
        flags.append("no_data: no open interest with a usable mark")
    return RiskResult(
        status, snap.as_of_ns, snap.underlying_price, p.positioning.describe(), out, tuple(flags)
    )


def _marks(c: pl.DataFrame, f: float) -> pl.DataFrame:
    iv = c["iv"].fill_null(np.nan).to_numpy()
    call = (c["right"] == "C").to_numpy()
    k = c["strike"].to_numpy()
    mark = black76.value(f, k, c["tau"].to_numpy(), np.where(np.isfinite(iv), iv, 0.0), call)
    intrinsic = np.where(call, np.maximum(f - k, 0.0), np.maximum(k - f, 0.0))
    return c.with_columns(
        pl.Series("mark", np.where(np.isfinite(iv), mark, np.nan)),
        pl.Series("extrinsic", np.where(np.isfinite(iv), np.maximum(mark - intrinsic, 0), np.nan)),
    )


def _expiry(snap: MarketSnapshot, c: pl.DataFrame, exp_ns: int, p: RiskParams) -> ExpiryRisk:
    f = snap.underlying_price
    call = pl.col("right") == "C"
    otm = (call & (pl.col("strike") > f)) | (~call & (pl.col("strike") < f))
    basis = (
        pl.when(otm).then(pl.col("mark")).otherwise(0.0)
        if p.stake_basis == "otm"
        else pl.col("extrinsic")
    )
    oi = pl.col("open_interest").fill_null(0).cast(pl.Float64)
    volume = pl.col("buy_volume") + pl.col("sell_volume") + pl.col("unsigned_volume")
    rows = (
        _marks(c, f)
        .with_columns(
            (oi * basis.fill_nan(0.0) * p.multiplier).alias("stake"),
            reinforcement(volume.cast(pl.Float64), oi, p).alias("reinforcement"),
            (volume.cast(pl.Float64) / oi).alias("volume_oi"),
            p.positioning.position(),
        )
        .with_columns(
            (pl.col("dealer_position") * pl.col("gamma")).alias("dealer_gamma"),
            (pl.col("dealer_position") * pl.col("delta")).alias("dealer_delta"),
        )
    )
    side = lambda r, col: pl.col(col).filter(pl.col("right") == r)  # noqa: E731
    strikes = (
        rows.group_by("strike")
        .agg(
            side("C", "stake").sum().alias("call_stake"),
            side("P", "stake").sum().alias("put_stake"),
            side("C", "reinforcement").first().alias("call_reinforcement"),
            side("P", "reinforcement").first().alias("put_reinforcement"),
            side("C", "volume_oi").first().alias("call_volume_oi"),
            side("P", "volume_oi").first().alias("put_volume_oi"),
            pl.col("dealer_gamma").fill_nan(None).sum(),
            pl.col("dealer_delta").fill_nan(None).sum(),
        )
        .sort("strike")
    )
    call_total = float(strikes["call_stake"].sum())
    put_total = float(strikes["put_stake"].sum())
    total = call_total + put_total
    notional = float(c["premium"].sum())
    if total <= 0:
        return ExpiryRisk(
            expiration_ns=exp_ns,
            status="no_data",
            call_stake=0.0,
            put_stake=0.0,
            ratio=None,
            verdict=None,
            bias=None,
            region_dominance="NONE",
            nearest_call_threat=None,
            nearest_put_threat=None,
            proximity_bias=None,
            net_dealer_gamma=None,
            net_dealer_delta=None,
            strikes=strikes,
            battle_zones=strikes.clear(),
            notional_premium=notional,
        )
    strikes = _annotate(strikes, f, total, p)
    ratio = call_total / put_total if put_total > 0 else math.inf
    v, bias = verdict(ratio, p.verdict_levels)
    region = strikes.filter(pl.col("distance_pct") <= p.region_pct)
    rc, rp = float(region["call_stake"].sum()), float(region["put_stake"].sum())
    sig = strikes.filter(pl.col("significant"))
    calls_above = sig.filter((pl.col("strike") > f) & (pl.col("call_stake") > 0))
    puts_below = sig.filter((pl.col("strike") < f) & (pl.col("put_stake") > 0))
    nc = float(calls_above["strike"].min()) if calls_above.height else None
    np_ = float(puts_below["strike"].max()) if puts_below.height else None
    prox = None
    if nc is not None and np_ is not None:
        dc, dp = nc - f, f - np_
        prox = "UPWARD" if dc < dp else "DOWNWARD" if dp < dc else "NEUTRAL"
    zones = (
        strikes.filter(pl.col("battle_zone"))
        .sort(["danger", "strike"], descending=[True, False])
        .head(p.top_zones)
    )
    return ExpiryRisk(
        expiration_ns=exp_ns,
        status="ok",
        call_stake=call_total,
        put_stake=put_total,
        ratio=ratio,
        verdict=v,
        bias=bias,
        region_dominance=_dominance(rc, rp, p.region_dominance),
        nearest_call_threat=nc,
        nearest_put_threat=np_,
        proximity_bias=prox,
        net_dealer_gamma=float(strikes["dealer_gamma"].sum()),
        net_dealer_delta=float(strikes["dealer_delta"].sum()),
        strikes=strikes,
        battle_zones=zones,
        notional_premium=notional,
    )


def _dominance(a: float, b: float, k: float) -> str:
    if a <= 0 and b <= 0:
        return "NONE"
    if a >= k * b:
        return "CALL"
    if b >= k * a:
        return "PUT"
    return "CONTESTED"


def _annotate(strikes: pl.DataFrame, f: float, total: float, p: RiskParams) -> pl.DataFrame:
    d = (pl.col("strike") - f).abs()
    stake = pl.col("call_stake") + pl.col("put_stake")
    cs, ps = pl.col("call_stake"), pl.col("put_stake")
    weight = (
        pl.when(d <= p.immediate_points)
        .then(pl.lit(p.immediate_weight))
        .when(d <= p.near_points)
        .then(pl.lit(p.near_weight))
        .when(d <= p.medium_points)
        .then(pl.lit(p.medium_weight))
        .otherwise(pl.lit(p.distant_weight))
    )
    tier = (
        pl.when(d <= p.immediate_points)
        .then(pl.lit("IMMEDIATE"))
        .when(d <= p.near_points)
        .then(pl.lit("NEAR_TERM"))
        .when(d <= p.medium_points)
        .then(pl.lit("MEDIUM_TERM"))
        .otherwise(pl.lit("DISTANT"))
    )
    return strikes.with_columns(
        stake.alias("stake"),
        (stake / total).alias("share"),
        d.alias("distance"),
        (d / f * 100.0).alias("distance_pct"),
        pl.when(pl.col("strike") > f)
        .then(pl.lit("RESISTANCE"))
        .when(pl.col("strike") < f)
        .then(pl.lit("SUPPORT"))
        .otherwise(pl.lit("PIVOT"))
        .alias("role"),
        pl.when((cs <= 0) & (ps <= 0))
        .then(pl.lit("NONE"))
        .when(cs >= p.strike_dominance * ps)
        .then(pl.lit("CALL"))
        .when(ps >= p.strike_dominance * cs)
        .then(pl.lit("PUT"))
        .otherwise(pl.lit("CONTESTED"))
        .alias("dominance"),
        tier.alias("proximity"),
        (stake * weight).alias("danger"),
    ).with_columns(
        (pl.col("stake") >= p.significance_floor_usd).alias("significant"),
        (
            (pl.col("stake") >= p.significance_floor_usd) & (pl.col("share") >= p.battle_zone_share)
        ).alias("battle_zone"),
        pl.when(pl.col("distance_pct") < p.critical_pct)
        .then(pl.lit("CRITICAL"))
        .when(pl.col("distance_pct") < p.high_pct)
        .then(pl.lit("HIGH"))
        .otherwise(pl.lit("LOW"))
        .alias("urgency"),
    )
