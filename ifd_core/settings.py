"""Typed settings for IFD, layered: defaults → profile → .env → environment → overrides.

One schema (pydantic-settings) replaces the reference's two config managers. Unknown keys are
errors everywhere (a typo in a profile must not be silently ignored), secrets come only from the
environment or `.env`, and every resolved configuration has a stable hash (`config_version`) that
derived rows carry so that a result can be traced to the parameters that produced it.
"""

from __future__ import annotations

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

from ifd_core.units import MULTIPLIER

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROFILES_DIR = PROJECT_ROOT / "config" / "profiles"


class _Group(BaseModel):
    """Base for settings groups: unknown keys are rejected, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DatabentoSettings(_Group):
    api_key: SecretStr = SecretStr("")
    dataset: str = "GLBX.MDP3"
    historical_gateway: str | None = Field(
        default=None, description="Historical API base URL; None means Databento's own."
    )
    live_gateway: str | None = None
    live_port: int = 13000


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
    """Budget gate thresholds (platform.md §2.9); amounts in USD."""

    monthly_budget: float = 175.0
    auto_approve_max: float = 5.0
    approval_above: float = 10.0
    approval_share_of_remaining: float = 0.5
    approval_post_utilization: float = 0.80
    defer_post_utilization: float = 0.95
    alert_levels: list[float] = Field(default_factory=lambda: [0.80, 0.95])


class PricePeriod(_Group):
    """The prices in force from ``effective_from`` until the next period starts (§2.9, §3.7).

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
    """Provider prices over time and how costs are attributed (platform.md §2.9, §3.7).

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
        "silently blinds the system, so an exhausted budget escalates instead (§2.9).",
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


class V3Settings(_Group):
    """IFD v3 thresholds (algorithms.md §4.1, §17 ifd_v3_production)."""

    min_pressure_ratio: float = 2.0
    min_volume_concentration: float = 0.4
    min_time_persistence: float = 0.5
    min_trend_strength: float = 0.6
    min_baseline_anomaly: float = 2.0
    min_overall_confidence: float = 0.7
    market_making_penalty: float = 0.4
    lookback_days: int = 20
    min_data_quality: float = 0.9
    straddle_time_window_s: int = 300
    max_market_making_probability: float = 0.3
    pressure_weight: float = 0.4
    baseline_weight: float = 0.3
    market_making_weight: float = 0.2
    coordination_weight: float = 0.1


class V1Settings(_Group):
    """Dead Simple v1 thresholds (algorithms.md §6, §17 v1 production)."""

    min_vol_oi_ratio: float = 10.0
    min_volume: int = 500
    min_dollar_size: float = 100_000.0
    max_distance_percent: float = 2.0
    tier_extreme: float = 50.0
    tier_very_high: float = 30.0
    tier_high: float = 20.0
    tier_moderate: float = 10.0


class AnalysisSettings(_Group):
    window_minutes: int = 5
    watermark_grace_s: int = 30
    baseline_min_samples: int = 5
    contract_multiplier: float = MULTIPLIER
    risk_free_rate: float = 0.04
    episode_max_gap_windows: int = Field(
        default=0,
        ge=0,
        description="Empty windows a signal episode may skip before it ends (analysis/episodes).",
    )
    v3: V3Settings = Field(default_factory=V3Settings)
    v1: V1Settings = Field(default_factory=V1Settings)


class LabelSettings(_Group):
    """The triple-barrier label of a signal (platform.md §3.2): live labels, ``ifd detect`` and
    backtests all read these, so they agree; both values are stored with every label."""

    barrier_points: float = Field(
        default=25.0,
        gt=0,
        description="Index points the future must move (the spec's 5 is within one minute's "
        "noise on NQ; see README 'Calibration').",
    )
    horizon_s: int = Field(default=1800, gt=0, description="Seconds a label may take to resolve.")


class RiskSettings(_Group):
    max_position_size: int = 15
    max_daily_trades: int = 30
    stop_loss_percent: float = 12.0
    min_signal_confidence: float = 0.0
    daily_loss_stop: float = 2_000.0
    max_drawdown_stop: float = 5_000.0
    max_positions: int = 10
    max_loss_per_trade: float = 1_000.0
    risk_budget_percent: float = Field(
        default=1.0, description="Equity risked per trade (stop distance x contracts x $20)."
    )
    take_profit_percent: float = 24.0


class PaperSettings(_Group):
    capital: float = 100_000.0
    commission_per_contract: float = 2.0
    slippage_ticks: float = Field(
        default=0.25,
        description="Reference profile value, not applied: market orders walk the visible book.",
    )
    latency_ms: int = 50
    order_type: Literal["market", "limit"] = "market"
    limit_offset_ticks: int = 0
    limit_ttl_s: float = 300.0
    time_stop_s: float = Field(default=1800.0, description="Default: the label horizon.")
    stack_episodes: bool = Field(
        default=False,
        description="Trade every signal of an episode (paper and live); default: only the first.",
    )


class BacktestSettings(_Group):
    mc_paths: int = 10_000
    mc_block_days: int = 1
    mc_seed: int = 0
    equity_floor_fraction: float = Field(
        default=0.5, description="Monte Carlo ruin: equity at or below this share of capital."
    )
    wf_train_sessions: int = 20
    wf_test_sessions: int = 5
    holdout_sessions: int = 10
    confidence_grid: list[float] = Field(default_factory=lambda: [0.0, 0.5, 0.6, 0.7, 0.8])
    bootstrap_resamples: int = 10_000


class ExtendedSettings(_Group):
    sessions: int = 10
    min_resolved: int = 100
    min_accuracy: float = 0.75
    min_accuracy_lower: float = 0.65
    min_edge_over_v1: float = 0.05
    min_count_wl: float = 1.8
    min_payoff: float = 1.0
    max_cost_per_signal: float = 5.0
    max_latency_p95_ms: float = 100.0
    min_uptime_rth: float = 0.999
    min_tick_coverage: float = 0.95


class ABSettings(_Group):
    split_ratio: float = 0.5
    comparison_period_hours: int = 24
    min_signals_for_comparison: int = 10


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

    platform.md §2.1-§2.2 and §4.8-§4.9. ``session_policy`` is a setting, not a constant, because
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
    """Circuit-breaker thresholds per outside dependency (platform.md §4.1 PROPOSAL)."""

    consecutive_failures: int = 3
    failure_rate: float = Field(
        default=0.5, description="Trip when this share of the last calls failed."
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
    """Retries for idempotent reads only: exponential backoff with full jitter (§4.1)."""

    base_s: float = 1.0
    cap_s: float = 60.0
    max_attempts: int = 5


class ResilienceSettings(_Group):
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)


class RolloutSettings(_Group):
    """The one rollout controller (platform.md §4.7 PROPOSAL): stages, promotion, rollback."""

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
    alpha: float = 0.05
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
    """Warning/critical thresholds of the alert rules (platform.md §4.2, §4.8, §4.9, §4.11)."""

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
        description="IFD_DATA_DIR, the data root named in DESIGN.md; same as warehouse.data_dir.",
    )
    env: Literal["dev", "test", "prod"] = "dev"
    log_level: str = "INFO"
    databento: DatabentoSettings = Field(default_factory=DatabentoSettings)
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
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            ProfileSource(settings_cls, init_settings, env_settings, dotenv_settings),
            file_secret_settings,
        )

    @model_validator(mode="after")
    def _one_data_root(self) -> Settings:
        # Two names for one setting: IFD_DATA_DIR wins when given, and both always agree after.
        if self.data_dir is not None:
            self.warehouse.data_dir = self.data_dir
        object.__setattr__(self, "data_dir", self.warehouse.data_dir)
        return self

    def config_version(self) -> str:
        """Stable hash of everything that changes results (secrets and paths excluded)."""
        payload = self.model_dump(
            mode="json",
            exclude={
                "databento": {"api_key"},
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


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def load_profile(name: str) -> dict[str, Any]:
    path = PROFILES_DIR / f"{name}.toml"
    if not path.is_file():
        raise ProfileError(
            f"unknown profile {name!r}; available: {', '.join(available_profiles()) or 'none'}"
        )
    data = tomllib.loads(path.read_text())
    data.pop("description", None)
    if "databento" in data and "api_key" in data["databento"]:
        raise ProfileError(f"profile {name!r} holds a secret (databento.api_key); use the env")
    return data


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
