"""Typed settings for IFD, layered: defaults → profile → .env → environment → overrides.

One schema (pydantic-settings) replaces the reference's two config managers. Unknown keys are
errors everywhere (a typo in a profile must not be silently ignored), secrets come only from the
environment or `.env`, and every resolved configuration has a stable hash (`config_version`) that
derived rows carry so that a result can be traced to the parameters that produced it.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import os
import re
import tomllib
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from ifd_core.logs import LEVELS
from ifd_core.units import MULTIPLIER

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROFILES_DIR = PROJECT_ROOT / "config" / "profiles"
ENV_PREFIX = "IFD_"
# IFD_ variables that configure the process, not the settings schema (fault injection, the
# Prefect deployments' repository path): the environment guard lets these through.
PROCESS_VARIABLES = frozenset(
    {"IFD_FAILPOINTS", "IFD_FAILPOINTS_TRACE", "IFD_REPO_DIR", "IFD_REPORTS_SERVED_URL"}
)


class _Group(BaseModel):
    """Base for settings groups: unknown keys are rejected, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# The Databento SDK reads its key from this variable; IFD honours it when its own is unset.
DATABENTO_SDK_KEY_ENV = "DATABENTO_API_KEY"


class DatabentoSettings(_Group):
    api_key: SecretStr = SecretStr("")
    dataset: str = "GLBX.MDP3"
    historical_gateway: str | None = Field(
        default=None, description="Historical API base URL; None means Databento's own."
    )


class BarchartSettings(_Group):
    """Barchart OnDemand, an optional cross-check of open interest and settlements
    (docs/operations.md, "Barchart OnDemand (optional)"). Off while ``api_key`` is empty."""

    api_key: SecretStr = SecretStr("")
    base_url: str = Field(
        default="https://ondemand.websol.barchart.com",
        description="OnDemand base URL (the paid service; the free sandbox was "
        "https://marketdata.websol.barchart.com).",
    )
    root: str = Field(default="NQ", description="Barchart's option root of the chain fetched.")
    requests_per_minute: int = Field(
        default=10, ge=1, description="Plan limit: requests beyond it wait for the minute."
    )
    requests_per_day: int = Field(
        default=200, ge=1, description="Plan limit (UTC day): requests beyond it are refused."
    )
    timeout_s: float = Field(default=30.0, gt=0.0, description="Per request (connect and read).")
    cache: bool = Field(
        default=True,
        description="Keep each day's raw answer under <data>/barchart/ and reuse it instead of "
        "asking again.",
    )
    oi_tolerance: int = Field(
        default=0,
        ge=0,
        description="Cross-check: open interest agrees when Databento's and Barchart's differ "
        "by at most this many contracts.",
    )
    settlement_tolerance: float = Field(
        default=0.05,
        ge=0.0,
        description="Cross-check: settlements agree when they differ by at most this many index "
        "points (0.05: one small option tick).",
    )
    oi_fallback: bool = Field(
        default=False,
        description="When a trade date's Databento open interest is missing for every option, "
        "v1 uses Barchart's chain of that date (lake table barchart_chain) instead; each v1 "
        "signal says which source it used (feature oi_source). Changes results: part of "
        "config_version when on.",
    )

    @field_validator("base_url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not re.match(r"https?://[^/\s]+", v.strip()):
            raise ValueError(f"barchart.base_url must be an http(s):// URL, not {v!r}")
        return v.strip().rstrip("/")


class MassiveSettings(_Group):
    """Massive (formerly Polygon.io): QQQ and NDX options trades and quotes, an optional
    cross-asset confirmation of v3 episodes (docs/operations.md, "Massive (optional)"). Off while
    ``api_key`` is empty."""

    api_key: SecretStr = SecretStr("")
    base_url: str = Field(
        default="https://api.massive.com", description="REST base URL of the official client."
    )
    underlyings: list[str] = Field(
        default_factory=lambda: ["QQQ", "NDX"],
        min_length=1,
        description="Underlying tickers whose options are fetched (equity-index options on the "
        "index NQ tracks).",
    )
    expiry_days: int = Field(
        default=2,
        ge=0,
        description="Contracts expiring within this many calendar days of the window's day "
        "(0: same-day expiries only).",
    )
    strike_band_pct: float = Field(
        default=3.0,
        gt=0.0,
        description="Contracts with strikes within this % of the reference price given per "
        "underlying (none given: every strike).",
    )
    max_contracts: int = Field(
        default=300,
        ge=1,
        description="More contracts than this per underlying is an error before any trade is "
        "asked for (each contract costs requests): narrow the band or the expiries.",
    )
    page_limit: int = Field(
        default=50_000,
        ge=1,
        le=50_000,
        description="Results per page of trades and quotes (Massive's maximum is 50 000).",
    )
    max_pages: int = Field(
        default=200,
        ge=1,
        description="Pages per listing; more is an error, never a silently cut result.",
    )
    quote_lookback_s: float = Field(
        default=60.0,
        ge=0.0,
        description="Quotes asked for from this long before the window, so the first trades "
        "find the quote in force; a trade without one stays unsigned.",
    )
    timeout_s: float = Field(default=30.0, gt=0.0, description="Per request (connect and read).")
    requests_per_minute: int = Field(
        default=5,
        ge=1,
        description="Plan limit (5 on the free tier): requests beyond it wait for the minute, "
        "counted in <data>/massive/requests/ and shared by processes.",
    )
    confidence_weight: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="0: off. Above 0, a v3 signal whose episode has a stored cross-asset "
        "confirmation is traded with confidence (1 - w) x confidence + w x confirmation in the "
        "backtest and the extended test (not live: the confirmation exists only after the "
        "episode's minutes are fetched); no confirmation: unchanged. Part of config_version "
        "when on.",
    )

    @field_validator("base_url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not re.match(r"https?://[^/\s]+$", v.strip().rstrip("/")):
            raise ValueError(f"massive.base_url must be an http(s)://host URL, not {v!r}")
        return v.strip().rstrip("/")

    @field_validator("underlyings")
    @classmethod
    def _tickers(cls, v: list[str]) -> list[str]:
        out = [t.strip().upper() for t in v]
        bad = [t for t in out if not re.fullmatch(r"[A-Z][A-Z0-9.]{0,9}", t)]
        if bad or len(set(out)) != len(out):
            raise ValueError(f"massive.underlyings must be distinct tickers, not {v!r}")
        return out


class WarehouseSettings(_Group):
    data_dir: Path = Field(default=Path("data"), validate_default=True)
    max_decompressed_bytes: int = Field(
        default=16 * 1024**3,
        gt=0,
        description="A DBN file whose decompressed content exceeds this many bytes is refused "
        "while it streams, before it can exhaust memory (a 5 M-record MBO day is ~0.3 GB).",
    )
    max_compression_ratio: float = Field(
        default=100.0,
        gt=1.0,
        description="A .dbn.zst that expands to more than this many times its size is refused "
        "(a decompression bomb); checked once 64 MiB have been decompressed. Real DBN files "
        "compress 3-30x.",
    )
    sql_allowed_directories: list[Path] = Field(
        default_factory=list,
        description="Directories `ifd sql` may read besides the data root (DuckDB's "
        "allowed_directories; external access is otherwise off).",
    )

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        # Catalog views hold absolute paths (relative ones resolve against the reader's CWD).
        return v.expanduser().resolve()


class BudgetSettings(_Group):
    """Budget gate thresholds (docs/operations.md §Costs); amounts in USD."""

    monthly_budget: float = 175.0  # > 0: BudgetGate refuses others, naming the variable
    auto_approve_max: float = Field(default=5.0, ge=0.0)
    approval_above: float = Field(default=10.0, ge=0.0)
    approval_share_of_remaining: float = Field(default=0.5, ge=0.0, le=1.0)
    approval_post_utilization: float = Field(default=0.80, ge=0.0, le=1.0)
    defer_post_utilization: float = Field(default=0.95, ge=0.0, le=1.0)
    alert_levels: list[float] = Field(default_factory=lambda: [0.80, 0.95])


class PricePeriod(_Group):
    """The prices in force from ``effective_from`` until the next period starts (docs/operations.md
    §Costs).

    Nothing here has a default price: every number must be copied from the provider's pricing
    page, order form or invoice, and ``source`` must say where and when it was verified, because
    an invented price silently turns every cost figure of the platform into fiction.
    """

    effective_from: date
    subscriptions: dict[str, float] = Field(
        default_factory=dict,
        description="Flat monthly fees in USD by name (e.g. a CME live licence), prorated per "
        "calendar day into subscription_fee entries.",
    )
    live_usage_per_gb: float | None = Field(
        default=None,
        ge=0,
        description="USD per GB (1e9 bytes) of live data received; None = flat-rate live (no "
        "live_usage entries).",
    )
    exchange_fee_per_contract: float | None = Field(
        default=None, ge=0, description="USD per option contract of a real-money fill."
    )
    commission_per_contract: float | None = Field(
        default=None, ge=0, description="Broker commission in USD per contract, real money."
    )
    source: str = Field(
        min_length=1, description="Where the prices were verified: pricing page URL and date."
    )

    @field_validator("subscriptions")
    @classmethod
    def _subscriptions(cls, v: dict[str, float]) -> dict[str, float]:
        # Names go into ledger entry ids (sub-<name>-<date>); keep them plain and non-negative.
        for name, fee in v.items():
            if not re.fullmatch(r"[A-Za-z0-9_.]+", name):
                raise ValueError(f"subscription name {name!r} must match [A-Za-z0-9_.]+")
            if fee < 0:
                raise ValueError(f"subscription {name!r} has a negative monthly fee {fee}")
        return v


class CostSettings(_Group):
    """Provider prices over time and how costs are attributed (docs/operations.md §Costs).

    ``prices`` is empty by default on purpose: the platform must not invent prices, and every
    cost report says loudly when none are configured. Set it with
    ``IFD_COSTS__PRICES='[{"effective_from": "2026-01-01", "subscriptions": {...}, ...}]'``.
    """

    prices: list[PricePeriod] = Field(default_factory=list)
    allocation: Literal["by_records", "all_to_v3"] = Field(
        default="by_records",
        description="Data cost split between algorithms: by share of records consumed, or all "
        "to v3 (v1 does not need MBO).",
    )
    live_streaming_budget_stop: bool = Field(
        default=False,
        description="Stop live streaming when the budget is exhausted. Off: stopping the feed "
        "silently blinds the system, so an exhausted budget escalates instead"
        " (docs/operations.md §Costs).",
    )
    advice_strike_band_pct: float = Field(
        default=5.0,
        gt=0.0,
        description="`ifd cost advise`: option strikes farther than this many percent from the "
        "underlying are the far band whose data the advice weighs against its signals.",
    )
    advice_quiet_sessions: int = Field(
        default=10,
        ge=1,
        description="`ifd cost advise`: a band, schema or hour is advised away only when it "
        "produced no signal in this many most recent sessions with data.",
    )

    @field_validator("prices")
    @classmethod
    def _increasing(cls, v: list[PricePeriod]) -> list[PricePeriod]:
        for a, b in itertools.pairwise(v):
            if b.effective_from <= a.effective_from:
                raise ValueError(
                    "cost price periods must have strictly increasing effective_from; got "
                    f"{a.effective_from} then {b.effective_from}"
                )
        return v


class V3Weights(_Group):
    """Weights of v3's evidence features (``ifd_v3``: f_size, f_imbalance, f_prints); sum to 1."""

    size: float = Field(default=0.35, ge=0.0, le=1.0)
    imbalance: float = Field(default=0.30, ge=0.0, le=1.0)
    prints: float = Field(default=0.35, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _sum_to_one(self) -> V3Weights:
        total = self.size + self.imbalance + self.prints
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"analysis.v3.weights must sum to 1, got {total:g}")
        return self


class V3SupportGains(_Group):
    """Share of the remaining doubt each support feature removes (``ifd_v3`` step 4)."""

    persistence: float = Field(default=0.4, ge=0.0, le=1.0)
    trend: float = Field(default=0.1, ge=0.0, le=1.0)
    concentration: float = Field(default=0.1, ge=0.0, le=1.0)
    coordination: float = Field(default=0.5, ge=0.0, le=1.0)


class V3Settings(_Group):
    """IFD v3 parameters: exactly the detector's ``V3Params`` (``analysis/wiring.v3_params``).

    The reference's thresholds (volume concentration, time persistence, trend strength, baseline
    anomaly, a market-making penalty, four weights) have no place in the v3 score; the keys here
    are the score's own gates, weights, gains and scales (see ``ifd_core/analysis/ifd_v3.py``).
    """

    min_pressure_ratio: float = Field(
        default=2.0, gt=1.0, description="Gate: B/S ≥ r, i.e. |imbalance| ≥ (r − 1)/(r + 1)."
    )
    min_total_volume: int = Field(default=100, ge=1, description="Gate: window contracts.")
    min_trades: int = Field(default=5, ge=1, description="Gate: trades in the window.")
    min_premium: float = Field(default=0.0, ge=0.0, description="Gate: premium in USD.")
    min_overall_confidence: float = Field(
        default=0.7, ge=0.0, le=1.0, description="A gated window is a signal at this score."
    )
    min_data_quality: float = Field(
        default=0.9, ge=0.0, le=1.0, description="Baseline sessions present / N; below: no signal."
    )
    lookback_days: int = Field(
        default=20, ge=1, description="Sessions of history a baseline is built from."
    )
    weights: V3Weights = Field(default_factory=V3Weights)
    support_gains: V3SupportGains = Field(default_factory=V3SupportGains)
    size_full_ratio: float = Field(
        default=1000.0, gt=1.0, description="Net volume / normal volume where f_size reaches 1."
    )
    full_breadth_prints: float = Field(
        default=3.0, gt=1.0, description="Independent orders on the flow side for full breadth."
    )
    mm_floor: float = Field(
        default=0.25, ge=0.0, lt=1.0, description="Market-making likelihood that does not discount."
    )
    straddle_size_balance: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Other-right size balance from which it counts fully as a straddle leg.",
    )
    persistence_windows: int = Field(
        default=3, ge=2, description="The window and the k − 1 before it (persistence)."
    )
    trend_full_step: float = Field(
        default=0.2, gt=0.0, description="Imbalance rise per window that is a full trend."
    )
    coordination_band_pct: float = Field(
        default=0.5, gt=0.0, description="Strikes within ± this % of the underlying coordinate."
    )
    coordination_full_count: int = Field(
        default=3, ge=1, description="Coordinated strikes for full coordination."
    )
    no_baseline_quality: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Data quality of a window without a baseline."
    )


class V1Settings(_Group):
    """Dead Simple v1 thresholds (docs/algorithms.md §7)."""

    min_vol_oi_ratio: float = Field(default=10.0, gt=0.0)
    min_volume: int = Field(default=500, ge=1)
    min_dollar_size: float = Field(default=100_000.0, ge=0.0)
    max_distance_percent: float = Field(default=2.0, gt=0.0)
    # Vol/OI from which a signal is EXTREME, VERY_HIGH, HIGH; below tier_high it is MODERATE
    # (anything that passed min_vol_oi_ratio).
    tier_extreme: float = Field(default=50.0, gt=0.0)
    tier_very_high: float = Field(default=30.0, gt=0.0)
    tier_high: float = Field(default=20.0, gt=0.0)

    @model_validator(mode="after")
    def _tiers_descend(self) -> V1Settings:
        if not self.tier_extreme >= self.tier_very_high >= self.tier_high:
            raise ValueError(
                "analysis.v1 tiers must satisfy tier_extreme >= tier_very_high >= tier_high"
            )
        return self


class AnalysisSettings(_Group):
    window_minutes: int = Field(default=5, ge=1)
    watermark_grace_s: int = Field(default=30, ge=0)
    baseline_min_samples: int = Field(default=5, ge=1)
    contract_multiplier: float = Field(default=MULTIPLIER, gt=0.0)
    risk_free_rate: float = Field(
        default=0.04,
        ge=-0.05,
        le=0.25,
        description="Black-76 discount rate of the engine's implied vol and delta per trade.",
    )
    episode_max_gap_windows: int = Field(
        default=0,
        ge=0,
        description="Empty windows a signal episode may skip before it ends (analysis/episodes).",
    )
    v3: V3Settings = Field(default_factory=V3Settings)
    v1: V1Settings = Field(default_factory=V1Settings)


class LabelSettings(_Group):
    """The triple-barrier label of a signal (docs/algorithms.md §10): live labels, ``ifd detect``
    and backtests all read these, so they agree; both values are stored with every label."""

    barrier_points: float = Field(
        default=25.0,
        gt=0,
        description="Index points the future must move (the spec's 5 is within one minute's "
        "noise on NQ; see README 'Calibration').",
    )
    horizon_s: int = Field(default=1800, gt=0, description="Seconds a label may take to resolve.")


class RiskSettings(_Group):
    max_position_size: int = Field(default=15, ge=1)
    max_daily_trades: int = Field(default=30, ge=1)
    stop_loss_percent: float = Field(default=12.0, gt=0.0, le=100.0)
    min_signal_confidence: float = Field(default=0.0, ge=0.0, le=1.0)
    daily_loss_stop: float = Field(default=2_000.0, gt=0.0)
    max_drawdown_stop: float = Field(default=5_000.0, gt=0.0)
    max_positions: int = Field(default=10, ge=1)
    max_loss_per_trade: float = Field(default=1_000.0, gt=0.0)
    risk_budget_percent: float = Field(
        default=1.0,
        gt=0.0,
        le=100.0,
        description="Equity risked per trade (stop distance x contracts x $20).",
    )
    take_profit_percent: float = Field(default=24.0, gt=0.0)


class PaperSettings(_Group):
    capital: float = Field(default=100_000.0, gt=0.0)
    commission_per_contract: float = Field(default=2.0, ge=0.0)
    latency_ms: int = Field(default=50, ge=0)
    order_type: Literal["market", "limit"] = "market"
    limit_offset_ticks: int = Field(default=0, ge=0)
    limit_ttl_s: float = Field(default=300.0, gt=0.0)
    time_stop_s: float = Field(default=1800.0, gt=0.0, description="Default: the label horizon.")
    stack_episodes: bool = Field(
        default=False,
        description="Trade every signal of an episode (paper and live); default: only the first.",
    )


class BacktestSettings(_Group):
    mc_paths: int = Field(default=10_000, ge=1)
    mc_block_days: int = Field(default=1, ge=1)
    mc_seed: int = 0
    equity_floor_fraction: float = Field(
        default=0.5,
        ge=0.0,
        lt=1.0,
        description="Monte Carlo ruin: equity at or below this share of capital.",
    )
    wf_train_sessions: int = Field(default=20, ge=1)
    wf_test_sessions: int = Field(default=5, ge=1)
    holdout_sessions: int = Field(default=10, ge=0)
    confidence_grid: list[float] = Field(default_factory=lambda: [0.0, 0.5, 0.6, 0.7, 0.8])
    bootstrap_resamples: int = Field(default=10_000, ge=1)


class ExtendedSettings(_Group):
    """The extended test: its length and its pass criteria (``trading.extended.Criteria``)."""

    sessions: int = Field(default=10, ge=1)
    min_resolved: int = Field(default=100, ge=1)
    min_accuracy: float = Field(default=0.75, ge=0.0, le=1.0)
    min_accuracy_lower: float = Field(default=0.65, ge=0.0, le=1.0)
    min_edge_over_v1: float = Field(default=0.05, ge=0.0, le=1.0)
    min_count_wl: float = Field(default=1.8, ge=0.0)
    min_payoff: float = Field(default=1.0, ge=0.0)
    max_cost_per_signal: float = Field(default=5.0, gt=0.0)
    max_latency_p95_ms: float = Field(default=100.0, gt=0.0)
    min_uptime_rth: float = Field(default=0.999, ge=0.0, le=1.0)
    min_tick_coverage: float = Field(default=0.95, ge=0.0, le=1.0)


class ABSettings(_Group):
    """The A/B decision rule (``ab_stats.decide``, docs/algorithms.md §14): v1 and v3 see the same
    stream, so there is no traffic split; these are the verdict's bars."""

    min_accuracy: float = Field(default=0.75, ge=0.0, le=1.0)
    min_accuracy_lower: float = Field(default=0.65, ge=0.0, le=1.0)
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    noninferiority_margin: float = Field(default=0.02, ge=0.0, lt=1.0)


class IBSettings(_Group):
    """TWS / IB Gateway. Defaults point at a local IB Gateway in paper mode (port 4002; TWS paper
    is 7497, live 7496 / 4001). A live account also needs ``live_trading_enabled`` *and* an explicit
    confirmation on the command line."""

    host: str = "127.0.0.1"
    port: int = 4002
    client_id: int = 17
    account: str | None = Field(
        default=None, description="Managed account to trade; default: the first one."
    )
    live_trading_enabled: bool = False
    connect_timeout_s: float = 10.0
    quotes_client_id: int = Field(
        default=18, description="Client id of `ifd ib record-underlying` (beside the trader's)."
    )
    paper_account_prefixes: list[str] = Field(
        default_factory=lambda: ["DU"],
        description="Account ids of paper accounts start with these; any other is live.",
    )


class ExecutionSettings(_Group):
    """Which broker real-time trading talks to; the decisions and the ledger are the same."""

    broker: Literal["paper", "ib"] = "paper"
    # At the session end (or a stop), how long the live run waits for the broker to report the
    # flattening fills before it cancels what still works and writes the ledger.
    settle_s: float = Field(10.0, ge=0.0)


class LiveSettings(_Group):
    """The live deployment: session policy, liveness, flushing, reconnects and backfill.

    docs/operations.md §Live run. ``session_policy`` is a setting, not a constant, because
    ``always_on`` (the whole Globex session) suits flat-rate live licensing while ``rth_only``
    (09:30-16:00 ET) limits what is recorded; both follow the exchange calendar.
    """

    session_policy: Literal["always_on", "rth_only"] = "always_on"
    stale_after_s: float = Field(
        default=10.0, description="In session, no record or heartbeat for this long is an incident."
    )
    heartbeat_interval_s: int = Field(
        default=10, description="Heartbeat interval asked of the live gateway (Databento Live)."
    )
    flush_every_s: float = 5.0
    flush_every_records: int = 500_000
    reconnect_max_attempts: int = 10
    reconnect_base_delay_s: float = 0.5
    reconnect_max_delay_s: float = 30.0
    replay_margin_s: float = 10.0
    max_buffer_bytes: int = 256 * 1024 * 1024
    raw_tap: bool = Field(
        default=True,
        description="Take the DBN bytes from the Live client's protocol instead of one Python "
        "object per record (about 2x the records/s); false uses the SDK's add_stream.",
    )
    backfill_enabled: bool = True
    min_backfill_gap_s: float = Field(
        default=30.0, description="Shorter gaps are not backfilled; their windows are incomplete."
    )
    option_roots: list[str] = Field(
        default_factory=lambda: ["NQ"],
        description="Option roots subscribed besides those discovered from NQ definitions.",
    )
    future_root: str = "NQ"


class BreakerSettings(_Group):
    """Circuit-breaker thresholds per outside dependency (docs/operations.md §Breakers and
    retries)."""

    consecutive_failures: int = Field(default=3, ge=1)
    failure_rate: float = Field(
        default=0.5, gt=0.0, le=1.0, description="Trip when this share of the last calls failed."
    )
    rate_window_calls: int = Field(
        default=20, description="How many last calls the failure share is over."
    )
    rate_min_calls: int = Field(
        default=10, description="The failure share trips only with this many calls."
    )
    latency_p95_ms: float = Field(
        default=5000.0, description="Trip when p95 of the window is above."
    )
    cooldown_s: float = Field(default=30.0, description="First OPEN period; doubles each re-trip.")
    cooldown_max_s: float = 300.0
    half_open_successes: int = Field(default=2, description="Consecutive probe successes to close.")


class RetrySettings(_Group):
    """Retries for idempotent reads only: exponential backoff with full jitter (docs/operations.md
    §Breakers and retries)."""

    base_s: float = Field(default=1.0, gt=0.0)
    cap_s: float = Field(default=60.0, gt=0.0)
    max_attempts: int = Field(default=5, ge=1)


class ResilienceSettings(_Group):
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)


class RolloutSettings(_Group):
    """The one rollout controller (docs/algorithms.md §16): stages, promotion, rollback."""

    challenger: str = "v3"
    incumbent: str = "v1"
    salt: str = Field(default="ifd-rollout", description="Routing hash salt (stable, auditable).")
    canary_share: int = Field(default=10, ge=5, le=20)
    limited_share: int = 25
    majority_share: int = 50
    shadow_min_sessions: int = 10
    shadow_min_resolved: int = 100
    stage_min_sessions: int = 5
    min_accuracy_lower: float = 0.65
    min_accuracy: float = 0.75
    noninferiority_margin: float = 0.02
    min_pnl_ci_lower: float = Field(
        default=-50.0, description="Bootstrap 90 % CI lower bound of net P&L per trade (USD)."
    )
    max_latency_p95_ms: float = 100.0
    min_uptime_rth: float = 0.999
    max_cost_per_signal: float = 5.0
    require_approval: bool = Field(
        default=True, description="SHADOW->PAPER and PAPER->LIVE need an operator's promote."
    )
    feed_unhealthy_s: float = 60.0
    max_error_rate: float = 0.10
    error_window_s: float = 300.0
    min_error_windows: int = Field(
        default=20, description="Windows scored in the error window before its rate can trigger."
    )
    daily_loss_limit_live: float = 50.0
    daily_loss_fraction_paper: float = 0.02
    max_open_risk_fraction: float = 0.05
    severe_latency_ms: float = 300.0
    severe_latency_window_s: float = 300.0
    soft_min_resolved: int = 50
    soft_min_accuracy_ratio: float = 0.8
    cooldown_min: float = 60.0


class SimulatorSettings(_Group):
    """What `ifd simulate` plants in a SYNTHETIC market (issue 17). Ranges are [low, high].

    Detectors never read these: they shape the simulated data only, so they stay out of the
    config hash. `ifd simulate --informed-share/--flows-per-day` override them per run.
    """

    informed_share: float = Field(
        default=0.7, ge=0.0, le=1.0, description="Share of institutional flows that are informed."
    )
    v1_informed_share: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Share of the low-open-interest blocks that are informed; unset: "
        "informed_share. Lets one algorithm's events carry edge and the other's none.",
    )
    flows_per_day: list[int] = Field(
        default_factory=lambda: [2, 4], description="Institutional flows per planted session."
    )
    informed_delay_s: list[float] = Field(
        default_factory=lambda: [60.0, 300.0],
        description="Seconds from an informed flow's last trade to the start of its move.",
    )
    informed_move_points: list[float] = Field(
        default_factory=lambda: [25.0, 50.0],
        description="Size of the move in index points, in the flow's view direction.",
    )
    informed_ramp_s: list[float] = Field(
        default_factory=lambda: [300.0, 900.0], description="Duration of the move's ramp (s)."
    )
    large_prints_per_day: list[int] = Field(
        default_factory=lambda: [0, 2], description="Single large noise prints (decoys) a session."
    )
    v1_events_per_day: list[int] = Field(
        default_factory=lambda: [0, 2],
        description="Low-open-interest blocks (IFD v1 events) a session.",
    )
    shape_weights: list[float] = Field(
        default_factory=lambda: [1.0, 1.0, 1.0],
        description="Relative frequency of flow shapes burst, multi_window, sweep.",
    )

    @field_validator(
        "flows_per_day",
        "informed_delay_s",
        "informed_move_points",
        "informed_ramp_s",
        "large_prints_per_day",
        "v1_events_per_day",
    )
    @classmethod
    def _is_range(cls, v: list) -> list:
        if len(v) != 2 or v[0] < 0 or v[1] < v[0]:
            raise ValueError(f"expected a range [low, high] with 0 <= low <= high, got {v}")
        return v

    @field_validator("shape_weights")
    @classmethod
    def _three_weights(cls, v: list[float]) -> list[float]:
        if len(v) != 3 or min(v) < 0 or sum(v) <= 0:
            raise ValueError(f"expected three non-negative weights, not all zero, got {v}")
        return v


class AlertSettings(_Group):
    """Warning/critical thresholds of the alert rules (docs/operations.md §Health, SLIs and
    alerts)."""

    latency_p95_warning_ms: float = 80.0
    latency_p95_critical_ms: float = 150.0
    latency_window_s: float = 300.0
    accuracy_warning: float = 0.75
    accuracy_critical: float = 0.70
    accuracy_last_resolved: int = 50
    error_rate_warning: float = 0.03
    error_rate_critical: float = 0.05
    uptime_warning: float = 0.999
    uptime_critical: float = 0.995
    completeness_warning: float = 0.95
    completeness_critical: float = 0.90
    daily_cost_warning: float = 8.0
    daily_cost_critical: float = 10.0
    budget_warning: float = 0.80
    budget_critical: float = 0.95
    # Options (expiration, strike, right) on which Databento and Barchart disagree in one day's
    # cross-check (`ifd barchart check`): more than warning fires, more than critical escalates.
    barchart_disagreements_warning: float = 0.0
    barchart_disagreements_critical: float = 20.0


class ReportsSettings(_Group):
    """Where people open the HTML reports of ``<data>/reports/`` (docs/operations.md, "Reports
    over HTTP")."""

    base_url: str | None = Field(
        default=None,
        description="Base URL under which <data>/reports/ is served, used by the links of "
        "Prefect artifacts (a reverse proxy or a remote viewer's address). None: the URL "
        "`ifd serve` serves the reports at; outside `ifd serve`, a file:// link (said so in "
        "the artifact).",
    )

    @field_validator("base_url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        if not re.match(r"https?://[^/\s]+", v.strip()):
            raise ValueError(f"reports.base_url must be an http(s):// URL, not {v!r}")
        return v.strip().rstrip("/")


class ComputeSettings(_Group):
    """Where independent days and files run (docs/operations.md, "Scaling out"): one at a time
    in this process, on a local process pool, or on a Dask cluster. Results never depend on it."""

    runner: Literal["inline", "processes", "dask"] = Field(
        default="inline",
        description="inline: one day/file after another in this process (the default); "
        "processes: a local process pool of `workers`; dask: the Dask scheduler at "
        "`dask_address`, or a local Dask cluster of `workers` processes when it is unset.",
    )
    workers: int = Field(
        default=2,
        ge=1,
        description="Processes of the local pool or local Dask cluster (ignored by inline and "
        "by an existing Dask scheduler, whose workers are its own).",
    )
    dask_address: str | None = Field(
        default=None,
        description="An existing Dask scheduler, e.g. tcp://10.0.0.5:8786 (runner dask). "
        "None: start a local cluster for the run.",
    )

    @field_validator("dask_address")
    @classmethod
    def _scheduler(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        if not re.match(r"(tcp|tls|inproc|ucx)://\S+", v.strip()):
            raise ValueError(f"compute.dask_address must look like tcp://host:8786, not {v!r}")
        return v.strip()


LIVE_OPERATIONAL = (
    "stale_after_s",
    "heartbeat_interval_s",
    "flush_every_s",
    "flush_every_records",
    "reconnect_max_attempts",
    "reconnect_base_delay_s",
    "reconnect_max_delay_s",
    "replay_margin_s",
    "max_buffer_bytes",
    "raw_tap",
)


class Settings(BaseSettings):
    """The whole effective configuration of one IFD process."""

    model_config = SettingsConfigDict(
        env_prefix="IFD_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        validate_assignment=True,
    )

    profile: str | None = None
    data_dir: Path | None = Field(
        default=None,
        description="IFD_DATA_DIR, the data root (docs/architecture.md §Data flow);"
        " same as warehouse.data_dir.",
    )
    log_level: str = Field(default="INFO", description="Level of IFD's loggers (ifd_core.logs).")
    databento: DatabentoSettings = Field(default_factory=DatabentoSettings)
    barchart: BarchartSettings = Field(default_factory=BarchartSettings)
    massive: MassiveSettings = Field(default_factory=MassiveSettings)
    warehouse: WarehouseSettings = Field(default_factory=WarehouseSettings)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    costs: CostSettings = Field(default_factory=CostSettings)
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)
    labels: LabelSettings = Field(default_factory=LabelSettings)
    risk: RiskSettings = Field(default_factory=RiskSettings)
    paper: PaperSettings = Field(default_factory=PaperSettings)
    ab: ABSettings = Field(default_factory=ABSettings)
    ib: IBSettings = Field(default_factory=IBSettings)
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)
    backtest: BacktestSettings = Field(default_factory=BacktestSettings)
    extended: ExtendedSettings = Field(default_factory=ExtendedSettings)
    live: LiveSettings = Field(default_factory=LiveSettings)
    resilience: ResilienceSettings = Field(default_factory=ResilienceSettings)
    rollout: RolloutSettings = Field(default_factory=RolloutSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    simulator: SimulatorSettings = Field(default_factory=SimulatorSettings)
    reports: ReportsSettings = Field(default_factory=ReportsSettings)
    compute: ComputeSettings = Field(default_factory=ComputeSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest priority first: explicit overrides, environment, .env, then the profile file.
        # The guard first refuses IFD_ variables that name no setting (pydantic-settings ignores
        # an unknown top-level group such as IFD_RISKK__..., which would silently use defaults).
        return (
            EnvironmentGuard(settings_cls),
            init_settings,
            env_settings,
            dotenv_settings,
            ProfileSource(settings_cls, init_settings, env_settings, dotenv_settings),
            file_secret_settings,
        )

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, v: str) -> str:
        if v.upper() not in LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LEVELS)}, not {v!r}")
        return v.upper()

    @model_validator(mode="after")
    def _one_data_root(self) -> Settings:
        # Two names for one setting: IFD_DATA_DIR wins when given, and both always agree after.
        if self.data_dir is not None:
            self.warehouse.data_dir = self.data_dir
        object.__setattr__(self, "data_dir", self.warehouse.data_dir)
        return self

    @model_validator(mode="after")
    def _databento_sdk_key(self) -> Settings:
        # The Databento SDK's own variable is the fallback: IFD_DATABENTO__API_KEY (environment,
        # .env) wins whenever it is set (docs/operations.md §Settings and profiles).
        if not self.databento.api_key.get_secret_value():
            sdk_key = os.environ.get(DATABENTO_SDK_KEY_ENV, "").strip()
            if sdk_key:
                self.databento.api_key = SecretStr(sdk_key)
        return self

    def config_version(self) -> str:
        """Stable hash of everything that changes results (secrets and paths excluded)."""
        payload = self.model_dump(
            mode="json",
            exclude={
                "databento": {"api_key"},
                # Where a cross-check's data comes from and how often it may be asked, not what a
                # detector computes; except the OI fallback, which changes v1's results. Off, it
                # is left out too: results are then those of before the key existed, and so is
                # the hash (signals stored earlier keep matching).
                "barchart": (
                    {k for k in BarchartSettings.model_fields if k != "oi_fallback"}
                    if self.barchart.oi_fallback
                    else True
                ),
                # The same for Massive: it feeds a cross-asset confirmation stored beside v3's
                # signals, not what v3 computes; except the confidence weight, which changes what
                # v3's signals trade. Off (0), it is left out, and the hash is that of before.
                "massive": (
                    {k for k in MassiveSettings.model_fields if k != "confidence_weight"}
                    if self.massive.confidence_weight > 0
                    else True
                ),
                "warehouse": True,
                # How the live run operates, not what it computes: a signal streamed with a
                # different flush cadence or reconnect policy is the same signal.
                "live": set(LIVE_OPERATIONAL),
                # How the platform is guarded and rolled out, not what a detector computes.
                "resilience": True,
                "rollout": True,
                "alerts": True,
                # What data and fills cost, not what a detector computes.
                "costs": True,
                # Where orders go, not what is decided: the broker and its connection.
                "ib": True,
                "execution": True,
                # What a SYNTHETIC market plants, not what a detector computes.
                "simulator": True,
                # Where reports are linked from, not what they hold.
                "reports": True,
                # Where days and files run, not what they compute: results never depend on it.
                "compute": True,
                "profile": True,
                "data_dir": True,
            },
        )
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def masked(self) -> dict[str, Any]:
        """The effective settings with secrets shown as '**********' (or '' when unset)."""
        return _mask(self.model_dump(mode="python"))


def _mask(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return "**********" if value.get_secret_value() else ""
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


class ProfileError(ValueError):
    """A profile that does not exist or does not fit the schema."""


class UnknownSettingError(ValueError):
    """An IFD_ environment variable that names no setting (a typo must not fall back silently)."""


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def load_profile(name: str) -> dict[str, Any]:
    """The values of profile ``name``: a name in config/profiles/, never a path."""
    available = ", ".join(available_profiles()) or "none"
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ProfileError(
            f"profile {name!r} is not a profile name (a name from config/profiles/, not a "
            f"path); available: {available}"
        )
    path = PROFILES_DIR / f"{name}.toml"
    if not path.is_file() or not path.resolve().is_relative_to(PROFILES_DIR.resolve()):
        raise ProfileError(f"unknown profile {name!r}; available: {available}")
    data = tomllib.loads(path.read_text())
    data.pop("description", None)
    for group in ("databento", "barchart", "massive"):
        if "api_key" in data.get(group, {}):
            raise ProfileError(f"profile {name!r} holds a secret ({group}.api_key); use the env")
    return data


def unknown_setting(variable: str) -> str | None:
    """Why the IFD_ ``variable`` names no setting (with a "did you mean"), or None if it does.

    Walks the ``__``-separated path through the schema's groups, case-insensitively as
    pydantic-settings reads the environment; a path that reaches a leaf (or a non-group value
    such as ``costs.prices``) is known.
    """
    if variable.upper() in PROCESS_VARIABLES:
        return None
    model: type[BaseModel] = Settings
    parts = variable[len(ENV_PREFIX) :].lower().split("__")
    for depth, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            where = ".".join(parts[:depth]) or "the top level"
            near = difflib.get_close_matches(part, list(fields), n=1)
            hint = f"; did you mean {'.'.join([*parts[:depth], near[0]])!r}?" if near else ""
            return f"{variable}: no setting {part!r} in {where}{hint}"
        annotation = fields[part].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return None


class EnvironmentGuard(PydanticBaseSettingsSource):
    """Refuses IFD_ environment variables that name no setting; contributes no values."""

    def get_field_value(self, field, field_name):  # pragma: no cover - unused, required by ABC
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        problems = [
            why
            for name in sorted(os.environ)
            if name.upper().startswith(ENV_PREFIX) and (why := unknown_setting(name.upper()))
        ]
        if problems:
            raise UnknownSettingError("unknown setting in the environment: " + "; ".join(problems))
        return {}


class ProfileSource(PydanticBaseSettingsSource):
    """Values of the profile named by the `profile` setting (override, env or .env)."""

    def __init__(self, settings_cls, *higher: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._higher = higher

    def get_field_value(self, field, field_name):  # pragma: no cover - unused, required by ABC
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        name = None
        for source in self._higher:
            name = source().get("profile") or name
            if name:
                break
        name = name or os.environ.get("IFD_PROFILE")
        return load_profile(name) if name else {}


def price_on(settings: Settings | CostSettings, day: date) -> PricePeriod | None:
    """The price period in force on ``day``: the latest one with ``effective_from <= day``.

    None when no period has started yet (or none is configured): callers then book nothing and
    say so, rather than guess a price.
    """
    costs = settings.costs if isinstance(settings, Settings) else settings
    current = None
    for period in costs.prices:  # validated ascending
        if period.effective_from > day:
            break
        current = period
    return current


def get_settings(profile: str | None = None, **overrides: Any) -> Settings:
    """Build settings; a named profile overrides IFD_PROFILE from the environment."""
    if profile is not None:
        overrides["profile"] = profile
    return Settings(**overrides)
