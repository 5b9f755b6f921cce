"""Expiration pressure as a dealer-gamma pin map, per expiry.

Black-76 probabilities (with the expiry's ATM IV and remaining time) of finishing in the money and
within the pin band, and dealer gamma by strike under ``DealerPositioning``: positive attracts
(pins), negative repels. The output is an attraction level and a probability band for the
settlement, never orders; an expiry without ATM IV is "no_iv". Details: docs/algorithms.md §9
(Expiration pressure).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from scipy.special import ndtr

from ifd_core.analysis import black76
from ifd_core.analysis.chain.positioning import DealerPositioning
from ifd_core.analysis.chain.snapshot import NS, MarketSnapshot, ensure_greeks

VERSION = "1.0"
MINUTE_NS = 60 * NS


@dataclass(frozen=True)
class ExpirationPressureParams:
    high_oi_threshold: int = 500  # HIGH_OI_THRESHOLD: strikes with less call+put OI are skipped
    crisis_time_threshold: float = 15.0  # CRISIS_TIME_THRESHOLD, minutes
    pin_risk_time_min: float = 30.0  # PIN_RISK_TIME_MIN, minutes
    pin_risk_time_max: float = 120.0  # PIN_RISK_TIME_MAX, minutes
    panic_oi: int = 1000  # ASSIGNMENT_PANIC needs OI above this (docs/algorithms.md §9 step 6)
    panic_distance: float = 15.0  # ... and the strike closer than this, points
    pin_distance: float = 30.0  # PIN_RISK_MANAGEMENT: strike closer than this, points
    pin_band_points: float = 0.25  # "within one tick of the strike": one NQ futures tick
    band_sigmas: float = 1.0  # settlement band = forward × exp(−σ²τ/2 ± band_sigmas·σ√τ)
    positioning: DealerPositioning = field(default_factory=DealerPositioning)


@dataclass(frozen=True, eq=False)
class ExpiryPressure:
    expiration_ns: int
    minutes_to_expiry: float
    status: str  # "ok" | "no_iv" | "no_open_interest"
    atm_iv: float | None
    attraction_level: float | None  # strike with the largest positive dealer gamma
    attraction_probability: float | None  # P(settle within the pin band of that strike)
    repel_level: float | None  # strike with the most negative dealer gamma
    settle_band: tuple[float, float] | None
    band_coverage: float | None
    net_dealer_gamma: float | None  # futures per point; > 0 damped, < 0 amplified moves
    gamma_concentration: float | None  # attraction strike's share of Σ|dealer gamma|
    strikes: pl.DataFrame  # one row per considered strike, by ``pressure`` descending


@dataclass(frozen=True, eq=False)
class ExpirationPressureResult:
    status: str  # "ok" | "no_data"
    as_of_ns: int
    underlying_price: float
    positioning: str
    expiries: tuple[ExpiryPressure, ...]
    data_quality: tuple[str, ...]


def minutes_to_expiry(expiration_ns: int, as_of_ns: int) -> float:
    """Minutes from ``as_of_ns`` to the definition's expiration instant (no forced 16:00)."""
    return (int(expiration_ns) - int(as_of_ns)) / MINUTE_NS


def pin_probability(
    forward: float, strike: np.ndarray, tau: float, vol: float, band: float
) -> np.ndarray:
    """P(K − band < F_T ≤ K + band) under Black-76 = N(d2(K − band)) − N(d2(K + band))."""
    lo = black76.prob_itm(forward, np.asarray(strike) - band, tau, vol, True)
    hi = black76.prob_itm(forward, np.asarray(strike) + band, tau, vol, True)
    return lo - hi


def settle_band(forward: float, tau: float, vol: float, k: float) -> tuple[float, float, float]:
    """Central band of the lognormal settlement, and its coverage 2N(k) − 1."""
    sd = vol * math.sqrt(tau)
    mid = -0.5 * sd * sd
    cov = float(2 * ndtr(k) - 1)
    return forward * math.exp(mid - k * sd), forward * math.exp(mid + k * sd), cov


def analyze_expiration_pressure(
    snapshot: MarketSnapshot, params: ExpirationPressureParams | None = None
) -> ExpirationPressureResult:
    """Pin map of every live expiry in ``snapshot``, nearest expiry first."""
    p = params or ExpirationPressureParams()
    snap = ensure_greeks(snapshot)
    c = snap.chain.filter(pl.col("expiration").cast(pl.Int64) > snap.as_of_ns)
    flags = list(snap.data_quality)
    if c.height == 0 or c["open_interest"].drop_nulls().sum() == 0:
        return ExpirationPressureResult(
            "no_data",
            snap.as_of_ns,
            snap.underlying_price,
            p.positioning.describe(),
            (),
            (*flags, "no_data: no live options with open interest"),
        )
    out = [
        _expiry(snap, c.filter(pl.col("expiration") == e), int(e), p)
        for e in sorted(c["expiration"].unique().to_list())
    ]
    status = "ok" if any(x.status == "ok" for x in out) else "no_data"
    return ExpirationPressureResult(
        status,
        snap.as_of_ns,
        snap.underlying_price,
        p.positioning.describe(),
        tuple(out),
        tuple(flags),
    )


def _expiry(
    snap: MarketSnapshot, c: pl.DataFrame, exp_ns: int, p: ExpirationPressureParams
) -> ExpiryPressure:
    f = snap.underlying_price
    minutes = minutes_to_expiry(exp_ns, snap.as_of_ns)
    tau = black76.tau_years(exp_ns, snap.as_of_ns).item()
    atm = c["atm_iv"].drop_nulls().drop_nans()
    atm_iv = float(atm[0]) if atm.len() else None
    per_strike = (
        c.with_columns(p.positioning.position())
        .group_by("strike")
        .agg(
            pl.col("open_interest").filter(pl.col("right") == "C").sum().alias("call_oi"),
            pl.col("open_interest").filter(pl.col("right") == "P").sum().alias("put_oi"),
            pl.col("dealer_position").sum(),
        )
        .with_columns(
            (pl.col("call_oi") + pl.col("put_oi")).alias("total_oi"),
            (pl.col("strike") - f).abs().alias("distance"),
        )
        .filter(pl.col("total_oi") >= p.high_oi_threshold)
        .sort("strike")
    )

    def empty(status: str) -> ExpiryPressure:
        return ExpiryPressure(
            exp_ns, minutes, status, atm_iv, None, None, None, None, None, None, None, per_strike
        )

    if per_strike.height == 0:
        return empty("no_open_interest")
    if atm_iv is None:
        return empty("no_iv")
    k = per_strike["strike"].to_numpy()
    gamma = black76.gamma(f, k, tau, atm_iv)
    dealer_gamma = per_strike["dealer_position"].to_numpy() * gamma
    t2 = max(1.0, minutes * minutes)
    pin = pin_probability(f, k, tau, atm_iv, p.pin_band_points)
    table = per_strike.with_columns(
        pl.Series("p_itm_call", black76.prob_itm(f, k, tau, atm_iv, True)),
        pl.Series("p_itm_put", black76.prob_itm(f, k, tau, atm_iv, False)),
        pl.Series("pin_probability", pin),
        pl.Series("gamma", gamma),
        pl.Series("dealer_gamma", dealer_gamma),
        pl.Series("pressure", per_strike["total_oi"].to_numpy() * pin / t2),
    ).with_columns(
        pl.when(pl.col("dealer_gamma") > 0)
        .then(pl.lit("ATTRACT"))
        .when(pl.col("dealer_gamma") < 0)
        .then(pl.lit("REPEL"))
        .otherwise(pl.lit("NONE"))
        .alias("effect"),
        _urgency(minutes, p).alias("urgency"),
    )
    table = table.sort(["pressure", "strike"], descending=[True, False])
    pos = table.filter(pl.col("dealer_gamma") > 0).sort(
        ["dealer_gamma", "strike"], descending=[True, False]
    )
    neg = table.filter(pl.col("dealer_gamma") < 0).sort(["dealer_gamma", "strike"])
    total_abs = float(np.abs(dealer_gamma).sum())
    lo, hi, cov = settle_band(f, tau, atm_iv, p.band_sigmas)
    attract = float(pos["strike"][0]) if pos.height else None
    return ExpiryPressure(
        expiration_ns=exp_ns,
        minutes_to_expiry=minutes,
        status="ok",
        atm_iv=atm_iv,
        attraction_level=attract,
        attraction_probability=float(pos["pin_probability"][0]) if pos.height else None,
        repel_level=float(neg["strike"][0]) if neg.height else None,
        settle_band=(lo, hi),
        band_coverage=cov,
        net_dealer_gamma=float(dealer_gamma.sum()),
        gamma_concentration=(
            float(pos["dealer_gamma"][0]) / total_abs if pos.height and total_abs > 0 else None
        ),
        strikes=table,
    )


def _urgency(minutes: float, p: ExpirationPressureParams) -> pl.Expr:
    """Ranking labels only (docs/algorithms.md §9 step 6 without its fall-through: 10 minutes is not
    pin risk)."""
    oi, d = pl.col("total_oi"), pl.col("distance")
    panic = minutes < p.crisis_time_threshold
    pin_window = p.pin_risk_time_min <= minutes <= p.pin_risk_time_max
    return (
        pl.when(pl.lit(panic) & (oi > p.panic_oi) & (d < p.panic_distance))
        .then(pl.lit("ASSIGNMENT_PANIC"))
        .when(pl.lit(pin_window) & (oi > p.high_oi_threshold) & (d < p.pin_distance))
        .then(pl.lit("PIN_RISK_MANAGEMENT"))
        .otherwise(pl.lit("NONE"))
    )
