"""Expected value of a futures trade as a first-passage problem.

The future is a driftless Brownian motion with the nearest expiry's ATM volatility; the
probabilities of take-profit first, stop first or neither are exact exit probabilities; fitted
coefficients may tilt the odds (none built in, so outputs say ``calibrated=False``); EV is net of
round-trip costs, so without a calibrated edge no trade has positive EV, by construction. The
model: docs/algorithms.md §9 (Expected value).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import polars as pl
from scipy.special import expit, logit, ndtr

from ifd_core.analysis.chain.snapshot import MarketSnapshot, ensure_greeks
from ifd_core.units import MULTIPLIER

VERSION = "1.0"
YEAR_S = 365.25 * 86_400


@dataclass(frozen=True)
class ExpectedValueParams:
    grid_step_points: float = 10.0  # doc grid: P ± 10·i ...
    grid_steps: int = 20  # ... for i = 1…20 on each side
    max_risk: float = 150.0  # MAX_RISK, points
    min_risk_reward: float = 1.0  # MIN_RISK_REWARD
    min_ev: float = 15.0  # MIN_EV, points net of costs
    min_probability: float = 0.60  # MIN_PROBABILITY of touching TP first
    horizon_s: float | None = None  # None: hold until TP or SL
    slippage_points: float = 0.25  # per side (docs/algorithms.md §9 paper-trading slippage)
    commission_usd: float = 0.0  # per side per contract; no broker rate is assumed
    point_value_usd: float = MULTIPLIER  # NQ futures $ per index point
    coefficients: Mapping[str, float] = field(default_factory=dict)  # β per feature, logit units
    top_n: int = 5

    def __post_init__(self) -> None:
        # frozen means frozen: a shared params object cannot have its coefficients edited
        object.__setattr__(self, "coefficients", MappingProxyType(dict(self.coefficients)))

    @property
    def cost_points(self) -> float:
        """Round-trip cost in index points."""
        return 2.0 * (self.slippage_points + self.commission_usd / self.point_value_usd)

    @property
    def calibrated(self) -> bool:
        return bool(self.coefficients)


@dataclass(frozen=True)
class TradeEvaluation:
    direction: str  # "LONG" | "SHORT" (futures)
    entry: float
    target: float
    stop: float
    reward: float
    risk: float
    p_target: float
    p_stop: float
    p_neither: float
    base_p_target: float  # before tilts
    tilt: float  # logit shift applied, signed for this direction
    ev_gross: float
    cost: float
    ev_net: float
    horizon_s: float | None
    calibrated: bool

    @property
    def risk_reward(self) -> float:
        return self.reward / self.risk


@dataclass(frozen=True, eq=False)
class ExpectedValueResult:
    status: str  # "ok" | "no_edge" | "no_iv" | "no_data"
    as_of_ns: int
    entry: float | None
    sd_points: float | None
    atm_iv: float | None
    calibrated: bool
    features: Mapping[str, float]
    candidates: int
    plans: tuple[TradeEvaluation, ...]  # passing the quality filter, best first
    best_rejected: TradeEvaluation | None  # the best candidate, to show how far from passing
    data_quality: tuple[str, ...]


def barrier_probabilities(up: float, down: float, sd: float | None) -> tuple[float, float, float]:
    """(P(touch +up first), P(touch −down first), P(neither)) for driftless Brownian motion
    started at 0 whose standard deviation at the horizon is ``sd`` points (None = no horizon)."""
    if up <= 0 or down <= 0:
        raise ValueError(f"barriers must be positive distances, got up={up}, down={down}")
    width = up + down
    if sd is None or math.isinf(sd):
        return down / width, up / width, 0.0
    if sd <= 0:
        return 0.0, 0.0, 1.0
    p_up = _exit_upper(down, width, sd)
    p_dn = _exit_upper(up, width, sd)
    return p_up, p_dn, max(0.0, 1.0 - p_up - p_dn)


def _exit_upper(x: float, width: float, sd: float) -> float:
    """P(exit (0, width) through the top by the horizon | start at x)."""
    if sd < width:  # images: terms fall like exp(−(2kL)²/2sd²), k ≤ 10 is exact to 1e-80
        k = np.arange(-10, 11)
        d = (width - x) + 2.0 * k * width
        p = float(np.sum(np.sign(d) * 2.0 * ndtr(-np.abs(d) / sd)))
    else:  # Fourier: terms fall like exp(−(nπ sd/L)²/2) with sd/L ≥ 1
        n = np.arange(1, 41)
        terms = 2.0 * (-1.0) ** n / (n * math.pi) * np.sin(n * math.pi * x / width)
        p = x / width + float(np.sum(terms * np.exp(-0.5 * (n * math.pi * sd / width) ** 2)))
    return min(1.0, max(0.0, p))


def horizon_sd(price: float, atm_iv: float, horizon_s: float) -> float:
    """Standard deviation of the futures price change over the horizon, in points."""
    return price * atm_iv * math.sqrt(horizon_s / YEAR_S)


def tilt(features: Mapping[str, float], coefficients: Mapping[str, float]) -> float:
    """Σ βᵢ·xᵢ over the features that have a coefficient (bullish log-odds shift)."""
    return float(sum(coefficients[k] * float(v) for k, v in features.items() if k in coefficients))


def evaluate(
    direction: str,
    entry: float,
    reward: float,
    risk: float,
    sd: float | None,
    features: Mapping[str, float],
    params: ExpectedValueParams,
) -> TradeEvaluation:
    """EV of one futures trade: ``reward``/``risk`` in points from ``entry``."""
    if direction not in ("LONG", "SHORT"):
        raise ValueError(f"direction must be LONG or SHORT, got {direction!r}")
    p_t, p_s, p_n = barrier_probabilities(reward, risk, sd)
    sign = 1.0 if direction == "LONG" else -1.0
    shift = sign * tilt(features, params.coefficients)
    hit = p_t + p_s
    # Mean P&L of paths that hit neither barrier, from the driftless martingale identity.
    m = -(p_t * reward - p_s * risk) / p_n if p_n > 0 else 0.0
    if hit > 0 and shift != 0.0:
        q = expit(logit(p_t / hit) + shift)
        t_p, s_p = q * hit, (1.0 - q) * hit
    else:
        t_p, s_p = p_t, p_s
    # Rounded to 1e-9 points so the untilted baseline's exact 0 is not float noise that would
    # decide ties between candidates.
    gross = round(t_p * reward - s_p * risk + p_n * m, 9)
    cost = params.cost_points
    return TradeEvaluation(
        direction=direction,
        entry=entry,
        target=entry + sign * reward,
        stop=entry - sign * risk,
        reward=reward,
        risk=risk,
        p_target=float(t_p),
        p_stop=float(s_p),
        p_neither=float(p_n),
        base_p_target=float(p_t),
        tilt=shift,
        ev_gross=float(gross),
        cost=cost,
        ev_net=float(gross - cost),
        horizon_s=params.horizon_s,
        calibrated=params.calibrated,
    )


def candidate_grid(params: ExpectedValueParams) -> list[tuple[float, float]]:
    """(reward, risk) pairs on the configured grid with risk ≤ MAX_RISK and RR ≥ MIN_RR."""
    steps = [params.grid_step_points * i for i in range(1, params.grid_steps + 1)]
    return [
        (r, s)
        for r in steps
        for s in steps
        if s <= params.max_risk and r / s >= params.min_risk_reward
    ]


def passes(e: TradeEvaluation, params: ExpectedValueParams) -> bool:
    """Quality filter: positive EV net of costs, at least MIN_EV and MIN_PROBABILITY."""
    return e.ev_net > 0 and e.ev_net >= params.min_ev and e.p_target >= params.min_probability


def rank_key(e: TradeEvaluation) -> tuple:
    """Highest EV first; ties: smaller risk, smaller reward, LONG before SHORT."""
    return (-e.ev_net, e.risk, e.reward, e.direction)


def best_plans(
    entry: float,
    sd: float | None,
    features: Mapping[str, float],
    params: ExpectedValueParams,
    directions: Sequence[str] = ("LONG", "SHORT"),
) -> tuple[list[TradeEvaluation], list[TradeEvaluation]]:
    """(passing plans best first, all candidates best first) over the grid."""
    evals = [
        evaluate(d, entry, r, s, sd, features, params)
        for d in directions
        for r, s in candidate_grid(params)
    ]
    evals.sort(key=rank_key)
    return [e for e in evals if passes(e, params)][: params.top_n], evals


def nearest_atm_iv(snapshot: MarketSnapshot) -> float | None:
    """ATM IV of the nearest live expiry that has one."""
    c = snapshot.chain.filter(
        (pl.col("expiration").cast(pl.Int64) > snapshot.as_of_ns)
        & pl.col("atm_iv").is_not_null()
        & pl.col("atm_iv").is_not_nan()
    ).sort("expiration")
    return float(c["atm_iv"][0]) if c.height else None


def analyze_expected_value(
    snapshot: MarketSnapshot,
    features: Mapping[str, float] | None = None,
    params: ExpectedValueParams | None = None,
) -> ExpectedValueResult:
    """Best futures trades from the live underlying price, or an explicit reason for none."""
    p = params or ExpectedValueParams()
    feats = dict(features or {})
    snap = ensure_greeks(snapshot)
    flags = list(snap.data_quality)
    if not p.calibrated:
        flags.append("uncalibrated: no tilt coefficients, probabilities are the driftless baseline")
    entry = snap.underlying_price
    iv = nearest_atm_iv(snap) if not snap.is_empty else None
    sd: float | None = None
    if p.horizon_s is not None:
        if iv is None:
            return ExpectedValueResult(
                status="no_iv",
                as_of_ns=snap.as_of_ns,
                entry=entry,
                sd_points=None,
                atm_iv=None,
                calibrated=p.calibrated,
                features=feats,
                candidates=0,
                plans=(),
                best_rejected=None,
                data_quality=(*flags, "no_iv: a horizon needs the nearest expiry's ATM IV"),
            )
        sd = horizon_sd(entry, iv, p.horizon_s)
    plans, evals = best_plans(entry, sd, feats, p)
    return ExpectedValueResult(
        status="ok" if plans else "no_edge",
        as_of_ns=snap.as_of_ns,
        entry=entry,
        sd_points=sd,
        atm_iv=iv,
        calibrated=p.calibrated,
        features=feats,
        candidates=len(evals),
        plans=tuple(plans),
        best_rejected=None if plans or not evals else evals[0],
        data_quality=tuple(flags),
    )


def reliability_curve(
    predicted: Sequence[float] | np.ndarray,
    realized: Sequence[bool | int] | np.ndarray,
    n_bins: int = 10,
) -> pl.DataFrame:
    """Predicted probability vs realised frequency in ``n_bins`` equal bins of [0, 1].

    Bin i covers [i/n, (i+1)/n), the last bin includes 1. Empty bins are kept with count 0 and
    null rates, so a curve always has ``n_bins`` rows.
    """
    p = np.asarray(predicted, dtype=np.float64)
    y = np.asarray(realized, dtype=np.float64)
    if p.shape != y.shape:
        raise ValueError("predicted and realized must have the same length")
    if np.any((p < 0) | (p > 1)) or np.any(np.isnan(p)):
        raise ValueError("predicted probabilities must lie in [0, 1]")
    idx = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    rows = []
    for i in range(n_bins):
        m = idx == i
        n = int(m.sum())
        rows.append(
            {
                "bin": i,
                "lo": i / n_bins,
                "hi": (i + 1) / n_bins,
                "count": n,
                "mean_predicted": float(p[m].mean()) if n else None,
                "realized_rate": float(y[m].mean()) if n else None,
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "bin": pl.Int64,
            "lo": pl.Float64,
            "hi": pl.Float64,
            "count": pl.Int64,
            "mean_predicted": pl.Float64,
            "realized_rate": pl.Float64,
        },
    )
