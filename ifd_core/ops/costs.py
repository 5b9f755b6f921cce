"""Cost arithmetic of the platform: pure functions, no I/O.

What a day of subscriptions, a run's live bytes or a real-money fill costs, cost per signal, how
the month's data cost is split between algorithms, the month-end projection and the budget status.
The warehouse books the entries these functions build and the reports read them back, so every
number is a plain, testable function of its inputs. Conventions (prices only from settings,
calendar-day proration, decimal GB, what counts as data cost, deterministic entry ids):
docs/operations.md §Costs.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from enum import StrEnum
from typing import Any

import polars as pl

from ifd_core.ops.budget import SPEND_ENTRY_TYPES, prorated_daily
from ifd_core.settings import PricePeriod, price_on
from ifd_core.units import NS

__all__ = [
    "BYTES_PER_GB",
    "DATA_COST_TYPES",
    "FIXED_COST_TYPES",
    "NO_PRICES",
    "QUOTE_TYPES",
    "REAL_MONEY_MODES",
    "TRADING_COST_TYPES",
    "BudgetStatus",
    "MonthCost",
    "allocate",
    "budget_status",
    "cost_per_signal",
    "days_in_month",
    "live_usage_entry",
    "marginal_data_cost",
    "price_on",
    "projection",
    "subscription_entries",
    "trading_fee_entries",
]

BYTES_PER_GB = 1_000_000_000
DATA_COST_TYPES: tuple[str, ...] = SPEND_ENTRY_TYPES
FIXED_COST_TYPES: tuple[str, ...] = ("subscription_fee",)
TRADING_COST_TYPES: tuple[str, ...] = ("broker_commission", "exchange_fee")
QUOTE_TYPES: tuple[str, ...] = ("historical_quote",)
REAL_MONEY_MODES: tuple[str, ...] = ("live", "ib")


def days_in_month(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def day_start(day: dt.date) -> dt.datetime:
    """The ledger timestamp of a cost that belongs to a whole UTC calendar day (its midnight)."""
    return dt.datetime.combine(day, dt.time(0), dt.UTC)


# ----------------------------------------------------------------------------------- entries
def subscription_entries(period: PricePeriod | None, day: dt.date) -> list[dict[str, Any]]:
    """One ``subscription_fee`` entry per subscription of ``period`` for calendar day ``day``."""
    if period is None:
        return []
    rows = []
    for name, monthly in sorted(period.subscriptions.items()):
        rows.append(
            {
                "entry_id": f"sub-{name}-{day.isoformat()}",
                "ts": day_start(day),
                "entry_type": "subscription_fee",
                "category": name,
                "amount_usd": prorated_daily(monthly, day.year, day.month),
                "status": "accrued",
                "reason": (
                    f"${monthly:,.2f}/month over {days_in_month(day.year, day.month)} calendar "
                    f"days; prices effective {period.effective_from} ({period.source})"
                ),
            }
        )
    return rows


def live_usage_entry(
    period: PricePeriod | None,
    run_id: str,
    day: dt.date,
    total_bytes: int,
    booked_bytes: int = 0,
) -> dict[str, Any] | None:
    """The ``live_usage`` entry for what a live run received on ``day`` beyond what is booked.

    ``total_bytes`` is the run's cumulative count for the day and ``booked_bytes`` what earlier
    entries of the same run and day already carry, so a run may report its total as often as it
    likes: only the increase is booked (the ledger is append-only; a growing total is a new row,
    never an update). None when there is nothing to book: no increase, or flat-rate live
    (``live_usage_per_gb`` None), or no prices in force.
    """
    if total_bytes < 0 or booked_bytes < 0:
        raise ValueError(f"byte counts cannot be negative: {total_bytes}, {booked_bytes}")
    if period is None or period.live_usage_per_gb is None:
        return None
    extra = total_bytes - booked_bytes
    if extra <= 0:
        return None
    base = f"live-{run_id}-{day.isoformat()}"
    return {
        "entry_id": base if booked_bytes == 0 else f"{base}-{total_bytes}",
        "ts": day_start(day),
        "entry_type": "live_usage",
        "category": "live",
        "amount_usd": extra / BYTES_PER_GB * period.live_usage_per_gb,
        "status": "accrued",
        "billable_bytes": extra,
        "request_id": run_id,
        "reason": (
            f"{extra:,} bytes x ${period.live_usage_per_gb}/GB (1 GB = 1e9 bytes); prices "
            f"effective {period.effective_from} ({period.source})"
        ),
    }


def trading_fee_entries(
    fills: pl.DataFrame, prices: Callable[[dt.date], PricePeriod | None]
) -> list[dict[str, Any]]:
    """``broker_commission`` and ``exchange_fee`` entries (two per fill) for real-money fills.

    Fills of any other mode are skipped: their fees are simulated by the paper executor and are
    in ``fills.fee`` already; booking them would put money that was never paid in the ledger.
    Raises when a real-money fill has no configured rate, because a live fee booked as $0 would
    understate what trading costs.
    """
    need = {"fill_id", "mode", "qty", "ts"}
    missing = need - set(fills.columns)
    if missing:
        raise ValueError(f"fills frame lacks columns {sorted(missing)}")
    real = fills.filter(pl.col("mode").is_in(list(REAL_MONEY_MODES)))
    rows: list[dict[str, Any]] = []
    for f in real.iter_rows(named=True):
        ts = dt.datetime.fromtimestamp(int(f["ts"]) / NS, dt.UTC)
        period = prices(ts.date())
        qty = abs(int(f["qty"]))
        for entry_type, field in (
            ("broker_commission", "commission_per_contract"),
            ("exchange_fee", "exchange_fee_per_contract"),
        ):
            rate = getattr(period, field) if period is not None else None
            if rate is None:
                raise ValueError(
                    f"no {field} in force on {ts.date()} for {f['mode']} fill {f['fill_id']}: "
                    f"set it in IFD_COSTS__PRICES (verified against the broker's/exchange's "
                    "price list) before booking real-money fills"
                )
            rows.append(
                {
                    "entry_id": f"fee-{entry_type}-{f['fill_id']}",
                    "ts": ts,
                    "entry_type": entry_type,
                    "category": str(f.get("algo") or f["mode"]),
                    "amount_usd": qty * rate,
                    "status": "charged",
                    "request_id": f["fill_id"],
                    "reason": (
                        f"{qty} contracts x ${rate}/contract ({f['mode']} run "
                        f"{f.get('run_id')}); prices effective {period.effective_from}"
                    ),
                }
            )
    return rows


# ----------------------------------------------------------------------------- cost per signal
def marginal_data_cost(data_cost_by_type: Mapping[str, float]) -> float:
    """Data cost without the fixed subscriptions: what one more signal's data actually adds."""
    return float(
        sum(v for k, v in data_cost_by_type.items() if k in DATA_COST_TYPES)
        - sum(v for k, v in data_cost_by_type.items() if k in FIXED_COST_TYPES)
    )


def cost_per_signal(data_cost: float, actionable_signals: int) -> float | None:
    """docs/operations.md §Costs: data cost of the period / actionable signals of the period; None
    without signals (a cost per zero signals is not a number, and reporting 0 or infinity would
    mislead)."""
    if actionable_signals < 0:
        raise ValueError(f"signal count cannot be negative, got {actionable_signals}")
    return data_cost / actionable_signals if actionable_signals else None


def allocate(
    amount: float, mode: str, records_by_algo: Mapping[str, int], algos: list[str]
) -> dict[str, float] | None:
    """Split a data cost between the algorithms that ran (docs/operations.md §Costs).

    ``by_records``: by share of records consumed (the engine records each algorithm's runs read).
    ``all_to_v3``: everything to v3, because v1 needs no MBO and would run on cheaper data alone;
    when v3 did not run at all the rule falls back to ``by_records``, so the cost of the data that
    was actually used is never charged to nobody. None when there is nothing to split by.
    """
    if mode not in ("by_records", "all_to_v3"):
        raise ValueError(f"unknown allocation {mode!r}; use by_records or all_to_v3")
    if not algos:
        return None
    if mode == "all_to_v3" and "v3" in algos:
        return {a: (amount if a == "v3" else 0.0) for a in algos}
    total = sum(records_by_algo.get(a, 0) for a in algos)
    if total <= 0:
        return None
    return {a: amount * records_by_algo.get(a, 0) / total for a in algos}


# ----------------------------------------------------------------------- projection and status
def projection(spent: float, day_of_month: int, month_days: int) -> float:
    """docs/operations.md §Health, SLIs and alerts/§4.11: the month's spend if it continues at the
    mean daily rate so far."""
    if not 1 <= day_of_month <= month_days:
        raise ValueError(f"day {day_of_month} is outside a {month_days}-day month")
    return spent / day_of_month * month_days


class BudgetStatus(StrEnum):
    """docs/operations.md §Costs status of a month, strongest first."""

    CRITICAL = "CRITICAL"
    WARNING = "WARNING"
    CAUTION = "CAUTION"
    ON_TRACK = "ON_TRACK"
    UNDER_BUDGET = "UNDER_BUDGET"


def budget_status(
    spent: float,
    budget: float,
    projected: float,
    warning: float = 0.80,
    critical: float = 0.95,
) -> BudgetStatus:
    """≥ critical CRITICAL, ≥ warning WARNING, projected > budget CAUTION, ≥ 50 % ON_TRACK,
    else UNDER_BUDGET (the reference's order: what is already spent outranks a forecast)."""
    if budget <= 0:
        raise ValueError(f"budget must be positive, got {budget}")
    used = round(spent / budget, 12)
    if used >= critical:
        return BudgetStatus.CRITICAL
    if used >= warning:
        return BudgetStatus.WARNING
    if round(projected, 9) > budget:
        return BudgetStatus.CAUTION
    if used >= 0.5:
        return BudgetStatus.ON_TRACK
    return BudgetStatus.UNDER_BUDGET


# --- the month to date (built by jobs.cost_report.month_to_date, drawn by reports.cost) ---
NO_PRICES = (
    "NO PRICES CONFIGURED: subscriptions and live usage are not booked, so the data cost below "
    "is only what was quoted and spent through the budget gate. Set IFD_COSTS__PRICES from "
    "Databento's pricing page (README, Costs)."
)


@dataclass
class MonthCost:
    """The month's data cost up to ``as_of`` against the budget, and what it bought."""

    month: str
    as_of: dt.date
    budget: float
    spent: float
    """Data cost (``SPEND_ENTRY_TYPES``) booked from the 1st to ``as_of``, USD."""
    utilization: float
    remaining: float
    elapsed_days: int
    days_in_month: int
    projection: float
    """spent / elapsed days x days in month (docs/operations.md §Health, SLIs and alerts)."""
    status: BudgetStatus
    by_type: dict[str, float]
    """Data cost per entry type; the values sum to ``spent``."""
    by_day: pl.DataFrame
    """Data cost per (date, entry_type), for the chart and the daily alert."""
    trading_costs: float
    trading_by_type: dict[str, float]
    quoted: float
    actionable_signals: dict[str, int]
    synthetic_signals: int
    cost_per_signal: float | None
    marginal_cost_per_signal: float | None
    per_algo: dict[str, dict[str, float | None]]
    """Allocated data cost and cost per signal per algorithm (settings.costs.allocation)."""
    allocation: str
    target_cost_per_signal: float
    daily_budget: float
    """Monthly budget / days in month: the line of the daily chart (docs/operations.md §Costs)."""
    remaining_per_day: float | None
    """What is left per remaining calendar day after ``as_of`` (None on the last day)."""
    alert_levels_reached: list[float]
    prices_configured: bool
    price_source: str | None
    entries: pl.DataFrame = dataclass_field(repr=False)
    """The ledger rows of the month up to ``as_of``."""

    @property
    def total_signals(self) -> int:
        return sum(self.actionable_signals.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no frames), for `ifd cost report --json` and flow results."""
        r = 6
        return {
            "month": self.month,
            "as_of": self.as_of.isoformat(),
            "prices_configured": self.prices_configured,
            "price_source": self.price_source,
            "budget": self.budget,
            "spent": round(self.spent, r),
            "utilization": round(self.utilization, r),
            "remaining": round(self.remaining, r),
            "elapsed_days": self.elapsed_days,
            "days_in_month": self.days_in_month,
            "projection": round(self.projection, r),
            "status": self.status.value,
            "alert_levels_reached": self.alert_levels_reached,
            "by_type": {k: round(v, r) for k, v in self.by_type.items()},
            "trading_costs": round(self.trading_costs, r),
            "trading_by_type": {k: round(v, r) for k, v in self.trading_by_type.items()},
            "quoted": round(self.quoted, r),
            "actionable_signals": self.actionable_signals,
            "synthetic_signals": self.synthetic_signals,
            "cost_per_signal": _round(self.cost_per_signal, r),
            "marginal_cost_per_signal": _round(self.marginal_cost_per_signal, r),
            "target_cost_per_signal": self.target_cost_per_signal,
            "allocation": self.allocation,
            "per_algo": {
                a: {k: _round(v, r) for k, v in d.items()} for a, d in self.per_algo.items()
            },
            "daily_budget": round(self.daily_budget, r),
            "remaining_per_day": _round(self.remaining_per_day, r),
            "ledger_entries": self.entries.height,
        }


def _round(v: float | None, digits: int) -> float | None:
    return None if v is None else round(v, digits)
