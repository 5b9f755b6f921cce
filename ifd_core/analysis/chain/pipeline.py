"""Run the chain analyzers on one snapshot and combine their signals.

Order: greeks → volume shock / dealer hedge → expiration pin map → risk analysis → expected value
(which takes the earlier signals as tilt features) → conflict netting → ranking. Every step is a
pure function of the snapshot, the state (baselines, trades, the IFD detectors' signals) and the
parameters, so the same inputs give the same signals, ids and order. Netting, ranking and the tilt
features: docs/algorithms.md §9 (Pipeline and signals).
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import polars as pl

from ifd_core.analysis.chain import expected_value as ev
from ifd_core.analysis.chain import expiration_pressure as xp
from ifd_core.analysis.chain import risk_analysis as ra
from ifd_core.analysis.chain import volume_shock as vs
from ifd_core.analysis.chain.signals import (
    BEARISH,
    BULLISH,
    NEUTRAL_VOL,
    ChainSignal,
)
from ifd_core.analysis.chain.snapshot import MarketSnapshot, with_greeks


@dataclass(frozen=True)
class ChainParams:
    expiration: xp.ExpirationPressureParams = field(default_factory=xp.ExpirationPressureParams)
    volume_shock: vs.VolumeShockParams = field(default_factory=vs.VolumeShockParams)
    risk: ra.RiskParams = field(default_factory=ra.RiskParams)
    expected_value: ev.ExpectedValueParams = field(default_factory=ev.ExpectedValueParams)
    horizon_edges_s: tuple[float, ...] = (3_600.0, 86_400.0)  # ≤ 1 h | ≤ 1 day | longer


@dataclass(frozen=True, eq=False)
class ChainState:
    """What the analyzers may know besides the snapshot."""

    volume_baseline: pl.DataFrame | None = None  # time_of_day_baseline output
    trades: pl.DataFrame | None = None  # option trades for sweep detection
    external_signals: tuple[ChainSignal, ...] = ()  # e.g. IFD v3 / dead simple as ChainSignal


def run_chain_analyzers(
    snapshot: MarketSnapshot, params: ChainParams | None = None, state: ChainState | None = None
) -> list[ChainSignal]:
    p = params or ChainParams()
    st = state or ChainState()
    snap = snapshot if snapshot.has_greeks else with_greeks(snapshot)
    signals: list[ChainSignal] = list(st.external_signals)

    shock = vs.analyze_volume_shock(
        snap, st.volume_baseline, p.volume_shock, st.trades, recommend_trade=False
    )
    signals += volume_shock_signals(snap, shock)
    pins = xp.analyze_expiration_pressure(snap, p.expiration)
    signals += expiration_signals(snap, pins, p.expiration)
    risk = ra.analyze_risk(snap, p.risk)
    signals += risk_signals(snap, risk, p.risk)

    feats = tilt_features(signals, shock)
    signals = [attach_plan(snap, s, feats, p.expected_value) for s in signals]
    best = ev.analyze_expected_value(snap, feats, p.expected_value)
    signals += expected_value_signals(snap, best)
    return rank(resolve_conflicts(signals, p.horizon_edges_s))


# ------------------------------------------------------------------ analyzer → signal
def volume_shock_signals(snap: MarketSnapshot, r: vs.VolumeShockResult) -> list[ChainSignal]:
    if r.status != "shock" or r.hedge_direction == "NONE":
        return []
    shocked = r.options.filter(pl.col("shock"))
    exps = shocked["expiration"].unique().to_list()
    sw = r.sweep
    return [
        ChainSignal(
            source="volume_shock",
            source_version=vs.VERSION,
            event_time_ns=snap.as_of_ns,
            underlying_id=snap.underlying_id,
            expiration_ns=int(exps[0]) if len(exps) == 1 else None,
            strikes=tuple(sorted(float(k) for k in shocked["strike"].unique())),
            rights=tuple(sorted(shocked["right"].unique().to_list())),
            direction=BULLISH if r.hedge_direction == "BUY_FUTURES" else BEARISH,
            horizon_s=r.response_minutes * 60.0 if r.response_minutes else None,
            score=float(r.score),
            evidence={
                "ratio": r.ratio,
                "recent_volume": r.recent_volume,
                "baseline_volume": r.baseline_volume,
                "hedge_futures": r.hedge_futures,
                "dealer_delta": r.dealer_delta,
                "hedge_direction": r.hedge_direction,
                "hedge_share": r.hedge_share,
                "futures_volume": snap.futures_volume,
                "flow_type": r.flow_type,
                "urgency": r.urgency,
                "shocked_options": r.shocked,
                "sweep_basis": sw.basis if sw else None,
                "sweep_strikes": sw.strikes if sw else None,
                "sweep_expiries": sw.expiries if sw else None,
                "sweep_series": sw.series if sw else None,
                "calibrated": False,
            },
            data_quality=r.data_quality,
            notional_premium=float(shocked["premium"].sum()),
        )
    ]


def expiration_signals(
    snap: MarketSnapshot, r: xp.ExpirationPressureResult, p: xp.ExpirationPressureParams
) -> list[ChainSignal]:
    out = []
    f = snap.underlying_price
    for e in r.expiries:
        if e.status != "ok" or e.attraction_level is None or e.gamma_concentration is None:
            continue
        move = e.attraction_level - f
        if abs(move) <= p.pin_band_points:
            direction = NEUTRAL_VOL
        else:
            direction = BULLISH if move > 0 else BEARISH
        notional = float(
            snap.chain.filter(pl.col("expiration") == e.expiration_ns)["premium"].sum()
        )
        out.append(
            ChainSignal(
                source="expiration_pressure",
                source_version=xp.VERSION,
                event_time_ns=snap.as_of_ns,
                underlying_id=snap.underlying_id,
                expiration_ns=e.expiration_ns,
                strikes=(e.attraction_level,),
                rights=("C", "P"),
                direction=direction,
                horizon_s=e.minutes_to_expiry * 60.0,
                score=min(1.0, max(0.0, e.gamma_concentration)),
                expected_move=move,
                move_band=(e.settle_band[0] - f, e.settle_band[1] - f) if e.settle_band else None,
                evidence={
                    "attraction_level": e.attraction_level,
                    "pin_probability_risk_neutral": e.attraction_probability,
                    "repel_level": e.repel_level,
                    "atm_iv": e.atm_iv,
                    "net_dealer_gamma": e.net_dealer_gamma,
                    "gamma_concentration": e.gamma_concentration,
                    "minutes_to_expiry": e.minutes_to_expiry,
                    "band_coverage": e.band_coverage,
                    "positioning": r.positioning,
                    "calibrated": False,
                },
                data_quality=r.data_quality,
                notional_premium=notional,
            )
        )
    return out


def risk_signals(snap: MarketSnapshot, r: ra.RiskResult, p: ra.RiskParams) -> list[ChainSignal]:
    out = []
    top = p.verdict_levels[0]
    for e in r.expiries:
        if e.status != "ok" or e.bias not in ("UPWARD", "DOWNWARD") or e.ratio is None:
            continue
        strength = 1.0 if math.isinf(e.ratio) or e.ratio == 0 else abs(math.log(e.ratio))
        zones = e.battle_zones
        out.append(
            ChainSignal(
                source="risk_analysis",
                source_version=ra.VERSION,
                event_time_ns=snap.as_of_ns,
                underlying_id=snap.underlying_id,
                expiration_ns=e.expiration_ns,
                strikes=tuple(sorted(float(k) for k in zones["strike"])),
                rights=("C", "P"),
                direction=BULLISH if e.bias == "UPWARD" else BEARISH,
                horizon_s=(e.expiration_ns - snap.as_of_ns) / 1e9,
                score=min(1.0, strength / math.log(top)),
                evidence={
                    "ratio": e.ratio,
                    "verdict": e.verdict,
                    "call_stake": e.call_stake,
                    "put_stake": e.put_stake,
                    "region_dominance": e.region_dominance,
                    "nearest_call_threat": e.nearest_call_threat,
                    "nearest_put_threat": e.nearest_put_threat,
                    "proximity_bias": e.proximity_bias,
                    "net_dealer_gamma": e.net_dealer_gamma,
                    "net_dealer_delta": e.net_dealer_delta,
                    "positioning": r.positioning,
                    "calibrated": False,
                },
                data_quality=r.data_quality,
                notional_premium=e.notional_premium,
            )
        )
    return out


def expected_value_signals(snap: MarketSnapshot, r: ev.ExpectedValueResult) -> list[ChainSignal]:
    if r.status != "ok" or not r.plans:
        return []
    best = r.plans[0]
    up = best.direction == "LONG"
    return [
        ChainSignal(
            source="expected_value",
            source_version=ev.VERSION,
            event_time_ns=snap.as_of_ns,
            underlying_id=snap.underlying_id,
            expiration_ns=None,
            strikes=(),
            rights=(),
            direction=BULLISH if up else BEARISH,
            horizon_s=best.horizon_s,
            score=best.p_target,
            probability=best.p_target if best.calibrated else None,
            expected_move=best.ev_gross if up else -best.ev_gross,
            move_band=(-best.risk, best.reward) if up else (-best.reward, best.risk),
            evidence={
                "features": dict(r.features),
                "base_p_target": best.base_p_target,
                "tilt": best.tilt,
                "sd_points": r.sd_points,
                "atm_iv": r.atm_iv,
                "candidates": r.candidates,
                "calibrated": best.calibrated,
            },
            data_quality=r.data_quality,
            trade_plan=best,
        )
    ]


# ------------------------------------------------------------------ EV tilts and plans
def tilt_features(
    signals: list[ChainSignal], shock: vs.VolumeShockResult | None = None
) -> dict[str, float]:
    """Bullish-signed features from the signals so far (docs/algorithms.md §9)."""
    feats: dict[str, float] = defaultdict(float)
    nearest: dict[str, ChainSignal] = {}
    for s in signals:
        if s.source in ("expiration_pressure", "risk_analysis"):
            cur = nearest.get(s.source)
            if cur is None or (s.horizon_s or 0) < (cur.horizon_s or 0):
                nearest[s.source] = s
        else:
            feats[s.source] += s.sign * s.score
    for name, s in nearest.items():
        feats[name] = s.sign * s.score
    if shock is not None and shock.hedge_share is not None and shock.hedge_futures:
        feats["volume_shock_hedge_share"] = (1.0 if shock.hedge_futures > 0 else -1.0) * (
            shock.hedge_share
        )
    return dict(sorted(feats.items()))


def attach_plan(
    snap: MarketSnapshot,
    sig: ChainSignal,
    features: Mapping[str, float],
    p: ev.ExpectedValueParams,
) -> ChainSignal:
    """The signal with the best passing futures plan in its direction, from the live price;
    unchanged if none has EV > 0 net of costs (or the direction is NEUTRAL_VOL)."""
    if sig.direction == NEUTRAL_VOL or sig.trade_plan is not None:
        return sig
    if p.horizon_s is None and sig.horizon_s is not None:
        p = replace(p, horizon_s=sig.horizon_s)
    sd = None
    if p.horizon_s is not None:
        iv = ev.nearest_atm_iv(snap)
        if iv is None:
            return sig
        sd = ev.horizon_sd(snap.underlying_price, iv, p.horizon_s)
    side = "LONG" if sig.direction == BULLISH else "SHORT"
    plans, _ = ev.best_plans(snap.underlying_price, sd, features, p, (side,))
    return replace(sig, trade_plan=plans[0]) if plans else sig


# ------------------------------------------------------------------ conflicts and ranking
def horizon_class(horizon_s: float | None, edges: tuple[float, ...]) -> int:
    """Index of the horizon bucket: 0 for ≤ edges[0], ..., len(edges) beyond; −1 for None."""
    if horizon_s is None:
        return -1
    return bisect.bisect_left(list(edges), horizon_s)


def resolve_conflicts(
    signals: list[ChainSignal], edges: tuple[float, ...] = (3_600.0, 86_400.0)
) -> list[ChainSignal]:
    """Net opposing directions per (underlying, horizon class) by score (docs/algorithms.md §9)."""
    groups: dict[tuple[int, int], list[ChainSignal]] = defaultdict(list)
    for s in signals:
        groups[(s.underlying_id, horizon_class(s.horizon_s, edges))].append(s)
    out: list[ChainSignal] = []
    for key in sorted(groups):
        group = groups[key]
        out += [s for s in group if s.direction == NEUTRAL_VOL]
        bull = [s for s in group if s.direction == BULLISH]
        bear = [s for s in group if s.direction == BEARISH]
        if not bull or not bear:
            out += bull + bear
            continue
        b, s_ = sum(x.score for x in bull), sum(x.score for x in bear)
        if b == s_:
            continue
        win, lose, w, l_ = (bull, bear, b, s_) if b > s_ else (bear, bull, s_, b)
        factor = (w - l_) / w
        lost = sorted(x.id for x in lose)
        for x in win:
            ev_ = dict(x.evidence)
            ev_["netted_against"] = lost
            ev_["score_before_netting"] = x.score
            out.append(replace(x, score=x.score * factor, evidence=ev_))
    return out


def rank_key(s: ChainSignal) -> tuple:
    plan = s.trade_plan
    if plan is not None and plan.calibrated:
        return (0, -plan.ev_net, -s.notional_premium, s.id)
    return (1, -s.score, -s.notional_premium, s.id)


def rank(signals: list[ChainSignal]) -> list[ChainSignal]:
    return sorted(signals, key=rank_key)
