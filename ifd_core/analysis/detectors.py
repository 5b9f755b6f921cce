"""Detectors the FlowEngine runs on every set of windows it closes: IFD v3 and Dead Simple v1.

Both turn closed pressure windows into rows of one signal contract (``SIGNAL_SCHEMA``, with
``episode_id`` from ``episodes.EpisodeTracker``), so every consumer sees the same columns. They are
streaming, keep only the state their rule needs, and decide in event time (``decision_ts`` = the
window's end + the watermark grace), so one batch or many chunks give identical signals. Baselines
come from a ``BaselineProvider`` (trade date → baselines, or ``None``: v3 then scores without one).
Rules: docs/algorithms.md §6–§8.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from ifd_core.analysis.baselines import add_bucket_keys, score
from ifd_core.analysis.episodes import EpisodeTracker
from ifd_core.analysis.ifd_v1 import detect_v1
from ifd_core.analysis.ifd_v3 import V3Params, score_v3
from ifd_core.analysis.oi_fallback import with_oi_source
from ifd_core.settings import V1Settings
from ifd_core.units import NS

NY = "America/New_York"
BaselineProvider = Callable[[dt.date], dict[str, pl.DataFrame] | None]

SIGNAL_SCHEMA = {
    "date": pl.Date,
    "signal_id": pl.String,
    "algo": pl.String,
    "instrument_id": pl.UInt32,
    "raw_symbol": pl.String,
    "root": pl.String,
    "expiration": pl.Date,
    "expiration_ts": pl.UInt64,
    "strike": pl.Float64,
    "option_type": pl.String,
    "direction": pl.String,
    "view": pl.String,
    "window_start": pl.UInt64,
    "window_end": pl.UInt64,
    "decision_ts": pl.UInt64,
    "confidence": pl.Float64,
    "tier": pl.String,
    "underlying_id": pl.UInt32,
    "underlying_price": pl.Float64,
    "volume": pl.Int64,
    "premium": pl.Float64,
    "features": pl.String,
    "episode_id": pl.String,  # analysis/episodes.py: set by the detector's episode tracker
}

V3_FEATURES = (
    "f_size",
    "f_imbalance",
    "f_persistence",
    "f_trend",
    "f_concentration",
    "f_coordination",
    "mm_likelihood",
    "straddle_likelihood",
    "data_quality",
    "raw_score",
    "imbalance",
    "delta_volume",
    "coordinated_strikes",
    "bucket_z_log_volume",
    "instrument_z_log_volume",
    "bucket_z_imbalance",
    "instrument_z_imbalance",
    "f_prints",
    "independent_prints",
    "breadth",
    "evidence",
    "volume_ratio",
    "mm_factor",
)
# oi_source: which source the open interest came from (analysis/oi_fallback.py).
V1_FEATURES = (
    "vol_oi_ratio",
    "open_interest",
    "new_strike",
    "buy_volume",
    "sell_volume",
    "oi_source",
)
# v1 has tiers, not probabilities: a fixed, monotone map so rankings and thresholds can compare
# it with v3. It is a convention, not a calibration.
V1_TIER_CONFIDENCE = {"EXTREME": 0.95, "VERY_HIGH": 0.85, "HIGH": 0.75, "MODERATE": 0.6}


def empty_signals() -> pl.DataFrame:
    return pl.DataFrame(schema=SIGNAL_SCHEMA)


def _signal_id(algo: str) -> pl.Expr:
    """Stable id from what the signal is about: algorithm, option, window (not wall clock)."""
    key = pl.concat_str(
        pl.lit(algo),
        pl.col("instrument_id").cast(pl.String),
        pl.col("window_start").cast(pl.String),
        separator="|",
    )
    return key.map_elements(
        lambda s: hashlib.sha256(s.encode()).hexdigest()[:20], return_dtype=pl.String
    )


def _features_json(df: pl.DataFrame, names: tuple[str, ...]) -> pl.Series:
    cols = [c for c in names if c in df.columns]
    rows = df.select(cols).to_dicts()
    return pl.Series(
        "features",
        [json.dumps({k: _plain(v) for k, v in r.items()}, sort_keys=True) for r in rows],
        pl.String,
    )


def _plain(v):
    if isinstance(v, float):
        return round(v, 6) if v == v else None
    return v


def to_contract(
    df: pl.DataFrame, algo: str, grace_s: int, features: tuple[str, ...]
) -> pl.DataFrame:
    """Map detector rows (window columns + direction, view, confidence, tier) to SIGNAL_SCHEMA."""
    if df.height == 0:
        return empty_signals()
    exp_date = (
        pl.col("expiration").cast(pl.Int64).cast(pl.Datetime("ns", "UTC")).dt.convert_time_zone(NY)
    ).dt.date()
    out = df.with_columns(
        pl.lit(algo).alias("algo"),
        _signal_id(algo).alias("signal_id"),
        exp_date.alias("expiration"),
        pl.col("expiration").alias("expiration_ts"),
        pl.col("right").alias("option_type"),
        (pl.col("window_end") + grace_s * NS).alias("decision_ts"),
        (pl.col("buy_premium") + pl.col("sell_premium")).alias("premium"),
        _features_json(df, features),
        pl.lit(None, pl.String).alias("episode_id"),
    )
    return out.select([pl.col(c).cast(t) for c, t in SIGNAL_SCHEMA.items()]).sort(
        "decision_ts", "instrument_id"
    )


@dataclass
class V3Detector:
    """IFD v3 over closed windows, with baselines of earlier sessions."""

    baselines: BaselineProvider
    params: V3Params = field(default_factory=V3Params)
    grace_s: int = 30
    name: str = "v3"
    episodes: EpisodeTracker = field(default_factory=EpisodeTracker)
    _recent: pl.DataFrame | None = None  # last k−1 windows per instrument, already keyed
    _cache: dict = field(default_factory=dict)

    def _baselines_for(self, day: dt.date) -> dict[str, pl.DataFrame] | None:
        if day not in self._cache:
            self._cache = {day: self.baselines(day)}  # one session at a time is enough
        return self._cache[day]

    def on_windows(self, closed: pl.DataFrame, context: EngineContext) -> pl.DataFrame:
        if closed.height == 0:
            return empty_signals()
        scored = []
        for (day,), part in closed.group_by(["date"], maintain_order=True):
            scored.append(self._score_day(day, part))
        return self.episodes.assign(pl.concat(scored)) if scored else empty_signals()

    def _score_day(self, day: dt.date, part: pl.DataFrame) -> pl.DataFrame:
        keyed = add_bucket_keys(part)
        base = self._baselines_for(day)
        keyed = score(keyed, base) if base is not None else _no_baseline(keyed)
        keyed = keyed.with_columns(pl.lit(True).alias("_new"))
        # Persistence and trend look back within the session only.
        recent = self._recent
        if recent is not None and recent.height and recent["date"][0] == day:
            keyed = pl.concat(
                [recent.with_columns(pl.lit(False).alias("_new")), keyed], how="diagonal_relaxed"
            )
        scored = score_v3(keyed, self.params)
        k = max(self.params.persistence_windows - 1, 1)
        self._recent = (
            keyed.drop("_new")
            .sort("window_start", "instrument_id")
            .group_by("instrument_id", maintain_order=True)
            .tail(k)
        )
        fired = scored.filter(pl.col("_new") & pl.col("signal")).drop("_new")
        return to_contract(fired, self.name, self.grace_s, V3_FEATURES)


def _no_baseline(keyed: pl.DataFrame) -> pl.DataFrame:
    return keyed.with_columns(
        pl.lit(False).alias("bucket_has_baseline"),
        pl.lit(False).alias("instrument_has_baseline"),
        *[
            pl.lit(None, pl.Float64).alias(f"{k}_{c}")
            for k in ("bucket", "instrument")
            for c in (
                "data_quality",
                "z_log_volume",
                "z_imbalance",
                "z_buy_volume",
                "z_sell_volume",
            )
        ],
    )


@dataclass
class V1Detector:
    """Dead Simple v1: the session's signed volume so far against open interest known at the
    decision; one signal per option per session, at the first window where it passes.

    ``fallback_oi`` (``instrument_id, ts_recv, quantity``): open interest from a second source
    for a date without Databento's (jobs/oi_fallback.py); it fills only what Databento left
    unknown, and every signal's ``oi_source`` feature says which one it used."""

    params: V1Settings = field(default_factory=V1Settings)
    grace_s: int = 30
    name: str = "v1"
    episodes: EpisodeTracker = field(default_factory=EpisodeTracker)
    fallback_oi: pl.DataFrame | None = None
    _session: pl.DataFrame | None = None
    _fired: set = field(default_factory=set)

    def on_windows(self, closed: pl.DataFrame, context: EngineContext) -> pl.DataFrame:
        if closed.height == 0:
            return empty_signals()
        sums = ["buy_volume", "sell_volume", "unsigned_volume", "buy_premium", "sell_premium"]
        new = closed.with_columns(pl.lit(True).alias("_new"))
        if self._session is not None:
            new = pl.concat(
                [self._session.with_columns(pl.lit(False).alias("_new")), new],
                how="diagonal_relaxed",
            )
        latest = new["date"].max()
        self._session = new.filter(pl.col("date") == latest).drop("_new")  # the session so far
        by = ["date", "instrument_id"]
        flow = (
            new.sort("window_start", "instrument_id")
            .with_columns(
                *[pl.col(c).cast(pl.Float64).cum_sum().over(by).alias(c) for c in sums],
                pl.col("window_start").min().over(by).alias("first_start"),
            )
            .filter(pl.col("_new"))
            .with_columns(
                (pl.col("buy_premium") + pl.col("sell_premium")).alias("premium"),
                (pl.col("window_end") + self.grace_s * NS).alias("decision_ts"),
            )
        )
        # Unknown open interest is not zero open interest: no v1 decision without it.
        flow = with_oi_source(context.open_interest_at(flow), self.fallback_oi).filter(
            pl.col("open_interest").is_not_null()
        )
        hits = detect_v1(flow.drop("volume", "_new"), self.params)
        if hits.height == 0:
            return empty_signals()
        hits = (
            hits.sort("window_start", "instrument_id")
            .unique(by, keep="first", maintain_order=True)
            .filter(
                ~pl.concat_str(
                    pl.col("date").cast(pl.String), pl.col("instrument_id").cast(pl.String)
                ).is_in(list(self._fired))
            )
        )
        self._fired |= set(
            hits.select(
                pl.concat_str(
                    pl.col("date").cast(pl.String), pl.col("instrument_id").cast(pl.String)
                )
            )
            .to_series()
            .to_list()
        )
        hits = hits.with_columns(
            pl.col("first_start").alias("window_start"),
            pl.col("tier")
            .replace_strict(V1_TIER_CONFIDENCE, return_dtype=pl.Float64)
            .alias("confidence"),
        )
        return self.episodes.assign(to_contract(hits, self.name, self.grace_s, V1_FEATURES))


class EngineContext:
    """What detectors may ask the engine: state derived from the stream itself."""

    def __init__(self, open_interest: Callable[[], pl.DataFrame]) -> None:
        self._oi = open_interest

    def open_interest_at(self, flow: pl.DataFrame) -> pl.DataFrame:
        """Add ``open_interest``: the latest publication received at or before ``decision_ts``
        (point in time), null when none was."""
        oi = self._oi()
        if oi.height == 0:
            return flow.with_columns(pl.lit(None, pl.Int64).alias("open_interest"))
        return (
            flow.sort("decision_ts")
            .join_asof(
                oi.sort("ts_recv").select(
                    "instrument_id", "ts_recv", pl.col("quantity").alias("open_interest")
                ),
                left_on="decision_ts",
                right_on="ts_recv",
                by="instrument_id",
                strategy="backward",
                check_sortedness=False,
            )
            .drop("ts_recv")
        )
