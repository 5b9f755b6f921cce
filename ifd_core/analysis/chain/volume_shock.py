"""Volume shock: sudden signed option flow and the dealer hedge it forces.

The last window's aggressor-signed volume against the option's median in the same time-of-day
window over earlier sessions (``time_of_day_baseline``); the dealer hedge in futures
``hedge_futures = +Σ n·δ`` (Black-76 deltas, one future per NQ option) compared with the futures
volume of the window; sweeps across strikes and expiries; recommendations kept only with positive
EV net of costs. Sign convention and cases: docs/algorithms.md §9 (Volume shock).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from ifd_core.analysis.chain import expected_value as ev
from ifd_core.analysis.chain.snapshot import NS, MarketSnapshot, ensure_greeks

VERSION = "1.0"
BASELINE_SCHEMA = {"instrument_id": pl.UInt32, "baseline_volume": pl.Float64, "sessions": pl.Int64}


@dataclass(frozen=True)
class VolumeShockParams:
    volume_ratio_threshold: float = 4.0  # shock if recent / baseline above this ...
    min_volume_threshold: int = 100  # ... and recent signed contracts above this
    # ratio = recent / max(baseline, floor) (docs/algorithms.md §9 step 2)
    baseline_floor: float = 1.0
    min_baseline_sessions: int = 10  # fewer sessions → no baseline, not a guess
    emergency_ratio: float = 8.0  # GAMMA_EMERGENCY needs ratio above this ...
    # ... and |hedge| above emergency_delta_threshold. Thresholds are in futures: the reference's
    # 3000/5000 were ×100 equity-share units (docs/algorithms.md §9 defects), here ÷ 100.
    high_delta_threshold: float = 30.0
    emergency_delta_threshold: float = 50.0
    # hedge horizon by |hedge| (docs/algorithms.md §9 step 5): > emergency
    emergency_response_min: float = 2.0
    high_response_min: float = 5.0  # > high
    normal_response_min: float = 10.0  # otherwise
    sweep_min_strikes: int = 3  # the doc's "≥ 3 strikes", counted as distinct expiry × strike
    sweep_window_s: float = 1.0  # "within seconds": trades of one side within this span
    # score = min(cap, ratio / confidence_divisor) (docs/algorithms.md §9 step 8)
    confidence_cap: float = 0.95
    confidence_divisor: float = 10.0


@dataclass(frozen=True)
class Sweep:
    basis: str  # "trades" (within sweep_window_s) | "window" (strikes shocked in recent_s)
    side: str | None  # "B" | "A" | None
    strikes: int  # distinct strikes hit
    expiries: int  # distinct expiries hit
    series: int  # distinct (expiry, strike) pairs hit: what ``sweep_min_strikes`` counts
    contracts: int
    is_sweep: bool


@dataclass(frozen=True, eq=False)
class VolumeShockResult:
    status: str  # "shock" | "no_shock" | "no_data"
    as_of_ns: int
    options: pl.DataFrame  # one row per option with recent flow, with ratio and hedge
    shocked: int
    recent_volume: int  # signed contracts of the shocked options
    baseline_volume: float | None
    ratio: float | None
    dealer_delta: float  # futures dealers acquired from the shocked flow, −Σ n·δ
    hedge_futures: float  # futures dealers must trade, +Σ n·δ
    hedge_direction: str  # BUY_FUTURES | SELL_FUTURES | NONE
    hedge_share: float | None  # |hedge| / futures volume in the window
    flow_type: str | None  # GAMMA_EMERGENCY | INSTITUTIONAL_SWEEP | AMBIGUOUS_SIGNAL
    urgency: str | None  # HIGH | MEDIUM | LOW by |hedge|
    response_minutes: float | None
    sweep: Sweep | None
    score: float
    recommendation: ev.TradeEvaluation | None
    data_quality: tuple[str, ...]


def time_of_day_baseline(
    history: pl.DataFrame,
    session_instants_ns: Sequence[int],
    as_of_ns: int,
    recent_s: int = 300,
) -> pl.DataFrame:
    """Median signed volume per instrument in the same time-of-day window of earlier sessions.

    ``history`` = pressure windows (``instrument_id, window_end, buy_volume, sell_volume``);
    ``session_instants_ns`` = the evaluation time of day in each earlier session (the caller
    picks 10–20 CME sessions with ``ifd_core.calendar``). For each instant the volume is the sum
    over windows ending in (t − recent_s, t]; an instrument seen in the history but not in a
    session's window traded 0 there. Every instant must precede ``as_of_ns`` (no look-ahead).
    """
    instants = [int(t) for t in session_instants_ns]
    if any(t >= as_of_ns for t in instants):
        raise ValueError("baseline sessions must precede as_of_ns (no look-ahead)")
    if not instants or history.height == 0:
        return pl.DataFrame(schema=BASELINE_SCHEMA)
    end = pl.col("window_end").cast(pl.Int64)
    vol = pl.col("buy_volume").cast(pl.Int64) + pl.col("sell_volume").cast(pl.Int64)
    ids = history.select(pl.col("instrument_id").cast(pl.UInt32).unique())
    per = [
        ids.join(
            history.filter((end > t - recent_s * NS) & (end <= t))
            .group_by(pl.col("instrument_id").cast(pl.UInt32))
            .agg(vol.sum().alias("v")),
            on="instrument_id",
            how="left",
        ).with_columns(pl.col("v").fill_null(0), pl.lit(i).alias("session"))
        for i, t in enumerate(instants)
    ]
    return (
        pl.concat(per)
        .group_by("instrument_id")
        .agg(
            pl.col("v").cast(pl.Float64).median().alias("baseline_volume"),
            pl.len().cast(pl.Int64).alias("sessions"),
        )
        .sort("instrument_id")
    )


def detect_sweep(
    trades: pl.DataFrame, chain: pl.DataFrame, start_ns: int, end_ns: int, p: VolumeShockParams
) -> Sweep:
    """Largest same-side burst: trades of one aggressor side within ``sweep_window_s`` of the
    burst's first trade, measured in distinct (expiry, strike) series (ties: more contracts).
    A sweep hits at least ``sweep_min_strikes`` series — strikes of one expiry or one strike
    across expiries alike."""
    keys = chain.select("instrument_id", "strike", "expiration")
    t = (
        trades.filter(
            (pl.col("ts_event").cast(pl.Int64) > start_ns)
            & (pl.col("ts_event").cast(pl.Int64) <= end_ns)
            & pl.col("aggressor").is_in(["B", "A"])
        )
        .with_columns(pl.col("instrument_id").cast(pl.UInt32))
        .join(keys, on="instrument_id", how="inner")
        .sort("ts_event", "instrument_id")
    )
    best = Sweep("trades", None, 0, 0, 0, 0, False)
    span = int(p.sweep_window_s * NS)
    for side in ("B", "A"):
        s = t.filter(pl.col("aggressor") == side)
        ts = s["ts_event"].cast(pl.Int64).to_numpy()
        i = 0
        while i < len(ts):
            j = int(np.searchsorted(ts, ts[i] + span, side="right"))
            burst = s.slice(i, j - i)
            cand = Sweep(
                "trades",
                side,
                burst["strike"].n_unique(),
                burst["expiration"].n_unique(),
                burst.select("expiration", "strike").n_unique(),
                int(burst["size"].cast(pl.Int64).sum()),
                False,
            )
            if (cand.series, cand.contracts) > (best.series, best.contracts):
                best = cand
            i = j
    return Sweep(
        best.basis,
        best.side,
        best.strikes,
        best.expiries,
        best.series,
        best.contracts,
        best.series >= p.sweep_min_strikes,
    )


def analyze_volume_shock(
    snapshot: MarketSnapshot,
    baseline: pl.DataFrame | None,
    params: VolumeShockParams | None = None,
    trades: pl.DataFrame | None = None,
    ev_params: ev.ExpectedValueParams | None = None,
    features: Mapping[str, float] | None = None,
    recommend_trade: bool = True,
) -> VolumeShockResult:
    """Shocked options of the recent window, the dealer hedge they imply, and at most one trade
    recommendation with positive EV (``features`` are bullish-signed EV tilts). The pipeline
    passes ``recommend_trade=False``: its EV step plans every signal with all tilts at once."""
    p = params or VolumeShockParams()
    snap = ensure_greeks(snapshot)
    flags = list(snap.data_quality)
    c = snap.chain.with_columns(
        (pl.col("recent_buy_volume") + pl.col("recent_sell_volume")).alias("recent_volume"),
        (pl.col("recent_buy_volume") - pl.col("recent_sell_volume")).alias("net_contracts"),
    ).filter(pl.col("recent_volume") > 0)
    if c.height == 0:
        return _none(snap, "no_data", c, (*flags, "no_data: no signed option volume recently"))
    if baseline is None or baseline.height == 0:
        flags.append("no_baseline: no time-of-day baseline supplied, no shock can be judged")
        base = pl.DataFrame(schema=BASELINE_SCHEMA)
    else:
        base = baseline.select(list(BASELINE_SCHEMA)).cast(BASELINE_SCHEMA)
    c = c.join(base, on="instrument_id", how="left")
    usable = pl.col("baseline_volume").is_not_null() & (
        pl.col("sessions") >= p.min_baseline_sessions
    )
    ratio = pl.col("recent_volume") / pl.max_horizontal(
        pl.col("baseline_volume"), pl.lit(p.baseline_floor)
    )
    c = c.with_columns(
        pl.when(usable).then(ratio).otherwise(None).alias("ratio"),
        (pl.col("net_contracts").cast(pl.Float64) * pl.col("delta")).alias("hedge_futures"),
    ).with_columns(
        (
            (pl.col("ratio") > p.volume_ratio_threshold)
            & (pl.col("recent_volume") > p.min_volume_threshold)
        )
        .fill_null(False)
        .alias("shock")
    )
    n_nobase = c.filter(~usable).height
    if n_nobase:
        flags.append(
            f"baseline_missing:{n_nobase} options lack ≥{p.min_baseline_sessions} sessions"
        )
    shocked = c.filter(pl.col("shock"))
    if shocked.height == 0:
        return _none(snap, "no_shock", c, tuple(flags))
    no_delta = shocked.filter(pl.col("hedge_futures").is_nan() | pl.col("hedge_futures").is_null())
    if no_delta.height:
        flags.append(f"delta_missing:{no_delta.height} shocked options excluded from the hedge")
    hedge = float(shocked["hedge_futures"].fill_nan(None).drop_nulls().sum())
    recent = int(shocked["recent_volume"].sum())
    base_sum = float(shocked["baseline_volume"].sum())
    agg_ratio = recent / max(base_sum, p.baseline_floor)
    share = (
        abs(hedge) / snap.futures_volume
        if snap.futures_volume is not None and snap.futures_volume > 0
        else None
    )
    if share is None:
        flags.append("futures_volume_missing: hedge share unknown")
    start = snap.as_of_ns - snap.recent_s * NS
    if trades is not None:
        sweep = detect_sweep(trades, snap.chain, start, snap.as_of_ns, p)
    else:
        series = shocked.select("expiration", "strike").n_unique()
        sweep = Sweep(
            "window",
            None,
            shocked["strike"].n_unique(),
            shocked["expiration"].n_unique(),
            series,
            recent,
            series >= p.sweep_min_strikes,
        )
    big = abs(hedge)
    if agg_ratio > p.emergency_ratio and big > p.emergency_delta_threshold:
        flow = "GAMMA_EMERGENCY"
    elif sweep.is_sweep:
        flow = "INSTITUTIONAL_SWEEP"
    else:
        flow = "AMBIGUOUS_SIGNAL"
    if big > p.emergency_delta_threshold:
        urgency, minutes = "HIGH", p.emergency_response_min
    elif big > p.high_delta_threshold:
        urgency, minutes = "MEDIUM", p.high_response_min
    else:
        urgency, minutes = "LOW", p.normal_response_min
    direction = "BUY_FUTURES" if hedge > 0 else "SELL_FUTURES" if hedge < 0 else "NONE"
    score = min(p.confidence_cap, agg_ratio / p.confidence_divisor)
    rec = None
    if direction != "NONE" and recommend_trade:
        rec = recommend(snap, direction, ev_params, features, minutes * 60.0)
        if rec is None:
            flags.append("recommendation_dropped: no plan with EV > 0 net of costs")
    return VolumeShockResult(
        status="shock",
        as_of_ns=snap.as_of_ns,
        options=c.sort("ratio", "instrument_id", descending=[True, False], nulls_last=True),
        shocked=shocked.height,
        recent_volume=recent,
        baseline_volume=base_sum,
        ratio=agg_ratio,
        dealer_delta=-hedge,
        hedge_futures=hedge,
        hedge_direction=direction,
        hedge_share=share,
        flow_type=flow,
        urgency=urgency,
        response_minutes=minutes,
        sweep=sweep,
        score=score,
        recommendation=rec,
        data_quality=tuple(flags),
    )


def recommend(
    snap: MarketSnapshot,
    hedge_direction: str,
    ev_params: ev.ExpectedValueParams | None,
    features: Mapping[str, float] | None,
    default_horizon_s: float,
) -> ev.TradeEvaluation | None:
    """Best plan in the hedge's direction that passes the EV filter, else None (EV ≤ 0 is never
    recommended). The horizon is the EV params' if set, else the expected hedge response time."""
    p = ev_params or ev.ExpectedValueParams()
    if p.horizon_s is None:
        p = replace(p, horizon_s=default_horizon_s)
    iv = ev.nearest_atm_iv(snap)
    if iv is None:
        return None
    sd = ev.horizon_sd(snap.underlying_price, iv, p.horizon_s)
    side = "LONG" if hedge_direction == "BUY_FUTURES" else "SHORT"
    plans, _ = ev.best_plans(snap.underlying_price, sd, features or {}, p, (side,))
    return plans[0] if plans else None


def _none(
    snap: MarketSnapshot, status: str, options: pl.DataFrame, flags: tuple[str, ...]
) -> VolumeShockResult:
    return VolumeShockResult(
        status=status,
        as_of_ns=snap.as_of_ns,
        options=options,
        shocked=0,
        recent_volume=0,
        baseline_volume=None,
        ratio=None,
        dealer_delta=0.0,
        hedge_futures=0.0,
        hedge_direction="NONE",
        hedge_share=None,
        flow_type=None,
        urgency=None,
        response_minutes=None,
        sweep=None,
        score=0.0,
        recommendation=None,
        data_quality=flags,
    )
