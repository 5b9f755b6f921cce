"""Settings → the engine's and detectors' parameters, in one place.

Every run of the FlowEngine (``ifd detect``, backtests, the live runner) builds its window,
v3, baseline and episode parameters here, so the ``analysis`` settings a profile sets are the
parameters the code runs with: there is no second set of defaults to drift from them.
"""

from __future__ import annotations

from ifd_core.analysis.baselines import BaselineParams
from ifd_core.analysis.episodes import EpisodeParams
from ifd_core.analysis.ifd_v3 import V3Params
from ifd_core.analysis.pressure_windows import WindowParams
from ifd_core.settings import Settings, V3Settings


def imbalance_of_ratio(ratio: float) -> float:
    """The |imbalance| gate equivalent to B/S ≥ ``ratio``: (r − 1)/(r + 1)."""
    return (ratio - 1.0) / (ratio + 1.0)


def v3_params(v3: V3Settings) -> V3Params:
    """The v3 detector's parameters from the ``analysis.v3`` settings (one to one)."""
    return V3Params(
        min_total_volume=v3.min_total_volume,
        min_trades=v3.min_trades,
        min_imbalance=imbalance_of_ratio(v3.min_pressure_ratio),
        min_premium=v3.min_premium,
        min_confidence=v3.min_overall_confidence,
        min_data_quality=v3.min_data_quality,
        persistence_windows=v3.persistence_windows,
        coordination_band_pct=v3.coordination_band_pct,
        coordination_full_count=v3.coordination_full_count,
        trend_full_step=v3.trend_full_step,
        straddle_size_balance=v3.straddle_size_balance,
        no_baseline_quality=v3.no_baseline_quality,
        size_full_ratio=v3.size_full_ratio,
        full_breadth_prints=v3.full_breadth_prints,
        mm_floor=v3.mm_floor,
        weights=v3.weights.model_dump(),
        support_gains=v3.support_gains.model_dump(),
    )


def engine_params(settings: Settings) -> tuple[WindowParams, V3Params, BaselineParams]:
    """Window, v3 and baseline parameters of one engine run."""
    a = settings.analysis
    wp = WindowParams(
        window_s=a.window_minutes * 60,
        grace_s=a.watermark_grace_s,
        multiplier=a.contract_multiplier,
        rate=a.risk_free_rate,
    )
    bp = BaselineParams(lookback_sessions=a.v3.lookback_days, min_samples=a.baseline_min_samples)
    return wp, v3_params(a.v3), bp


def episode_params(settings: Settings) -> EpisodeParams:
    """How signals group into episodes: the window length, the allowed gap, v3's band."""
    a = settings.analysis
    return EpisodeParams(
        window_s=a.window_minutes * 60,
        max_gap_windows=a.episode_max_gap_windows,
        band_pct=a.v3.coordination_band_pct,
    )
