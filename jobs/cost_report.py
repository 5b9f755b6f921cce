"""The month's costs against the budget (platform.md §2.9, §3.7, §4.2, §4.11), and its HTML page.

``month_to_date`` is the one place the month's cost figures are put together — from the cost
views of the catalog, never from a counter in a process — so ``ifd cost report``, ``ifd status``,
the ``cost_report`` flow and the alert evaluator all show the same numbers. It only reads: the
alerts themselves (once per month and level) are persisted by the alert evaluator from
``utilization`` and ``status``.

Data cost is the ledger's spend types; quotes and trading costs (commissions, exchange fees) are
shown beside it but never count against the data budget or per signal.
"""

from __future__ import annotations

import calendar
import datetime as dt
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import polars as pl

from ifd_core.ops.budget import BudgetGate
from ifd_core.ops.costs import (
    DATA_COST_TYPES,
    TRADING_COST_TYPES,
    BudgetStatus,
    allocate,
    budget_status,
    cost_per_signal,
)
from ifd_core.settings import Settings, price_on
from reports.trading import _fig, _table, write_page
from warehouse.cost_ledger import LakeCostLedger
from warehouse.lake import Lake
from warehouse.sql import query

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
    """spent / elapsed days x days in month (§4.2)."""
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
    """Monthly budget / days in month: the line of the daily chart (§4.11)."""
    remaining_per_day: float | None
    """What is left per remaining calendar day after ``as_of`` (None on the last day)."""
    alert_levels_reached: list[float]
    prices_configured: bool
    price_source: str | None
    entries: pl.DataFrame = field(repr=False)
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


def _sums(df: pl.DataFrame, types: tuple[str, ...]) -> dict[str, float]:
    got = dict(
        df.filter(pl.col("entry_type").is_in(list(types)))
        .group_by("entry_type")
        .agg(pl.col("amount").sum())
        .iter_rows()
    )
    return {t: float(got.get(t, 0.0)) for t in types}


def budget_alert_levels_crossed(
    settings: Settings, spent_before: float, spent_after: float
) -> list[float]:
    """Alert levels (shares of the monthly budget) a move from one spend to another crosses;
    the persistence of alerts (once per month and level) is the alert evaluator's."""
    return BudgetGate(settings.budget).alerts_crossed(spent_before, spent_after)


def month_to_date(lake: Lake, settings: Settings, today: dt.date) -> MonthCost:
    """The month of ``today`` (a UTC calendar date, the ledger's), from its 1st to ``today``."""
    month = today.strftime("%Y-%m")
    dim = calendar.monthrange(today.year, today.month)[1]
    budget = settings.budget.monthly_budget
    daily = query(
        lake,
        "SELECT * FROM cost_daily WHERE month = ? AND date <= ? ORDER BY date, entry_type",
        [month, today],
    )
    by_type = _sums(daily, DATA_COST_TYPES)
    trading = _sums(daily, TRADING_COST_TYPES)
    spent = float(sum(by_type.values()))
    quoted = float(daily.filter(pl.col("cost_class") == "quote")["amount"].sum() or 0.0)
    proj = query(lake, "SELECT * FROM cost_projection_asof(?) WHERE month = ?", [today, month])
    projected = float(proj["projection"][0]) if proj.height else 0.0
    cps = query(
        lake,
        "SELECT * FROM cost_per_signal_at(?, through := ?) WHERE month = ?",
        [settings.risk.min_signal_confidence, today, month],
    )
    per = cps.filter(pl.col("algo") != "all")
    total = cps.filter(pl.col("algo") == "all")
    signals = {a: int(n) for a, n in per.select("algo", "actionable_signals").iter_rows()}
    records = {a: int(n) for a, n in per.select("algo", "records_consumed").iter_rows()}
    n_signals = sum(signals.values())
    marginal = spent - by_type["subscription_fee"]

    algos = sorted(a for a in signals if signals[a] or records.get(a))
    mode = settings.costs.allocation
    shares = allocate(1.0, mode, records, algos)
    per_algo: dict[str, dict[str, float | None]] = {}
    for a in algos:
        share = shares.get(a) if shares else None
        cost = spent * share if share is not None else None
        marg = marginal * share if share is not None else None
        per_algo[a] = {
            "signals": signals.get(a, 0),
            "records_consumed": records.get(a, 0),
            "share": share,
            "data_cost": cost,
            "cost_per_signal": cost_per_signal(cost, signals[a]) if cost is not None else None,
            "marginal_cost_per_signal": (
                cost_per_signal(marg, signals[a]) if marg is not None else None
            ),
        }

    gate = BudgetGate(settings.budget)
    utilization = spent / budget
    remaining = budget - spent
    period = price_on(settings, today)
    entries = LakeCostLedger(lake).entries(month).filter(pl.col("date") <= today)
    return MonthCost(
        month=month,
        as_of=today,
        budget=budget,
        spent=spent,
        utilization=utilization,
        remaining=remaining,
        elapsed_days=today.day,
        days_in_month=dim,
        projection=projected,
        status=budget_status(
            spent,
            budget,
            projected,
            warning=settings.alerts.budget_warning,
            critical=settings.alerts.budget_critical,
        ),
        by_type=by_type,
        by_day=daily.filter(pl.col("is_data_cost"))
        .group_by("date", "entry_type")
        .agg(pl.col("amount").sum())
        .sort("date", "entry_type"),
        trading_costs=float(sum(trading.values())),
        trading_by_type=trading,
        quoted=quoted,
        actionable_signals=signals,
        synthetic_signals=int(total["synthetic_signals"][0]) if total.height else 0,
        cost_per_signal=cost_per_signal(spent, n_signals),
        marginal_cost_per_signal=cost_per_signal(marginal, n_signals),
        per_algo=per_algo,
        allocation=mode,
        target_cost_per_signal=settings.extended.max_cost_per_signal,
        daily_budget=budget / dim,
        remaining_per_day=remaining / (dim - today.day) if today.day < dim else None,
        alert_levels_reached=[lvl for lvl in gate.alert_thresholds() if utilization >= lvl],
        prices_configured=period is not None,
        price_source=(f"effective {period.effective_from}: {period.source}" if period else None),
        entries=entries,
    )


def summary_lines(mc: MonthCost) -> list[str]:
    """The month in a few markdown lines (flow artifact, CLI), the missing-prices warning first."""

    def usd(v: float | None) -> str:
        return "n/a" if v is None else f"${v:,.2f}"

    signals = ", ".join(f"{a} {n}" for a, n in mc.actionable_signals.items()) or "none"
    if mc.synthetic_signals:
        signals += f"; {mc.synthetic_signals} synthetic not counted"
    if mc.cost_per_signal is None:
        per_signal = f"n/a: no actionable signals ({signals})"
    else:
        per_signal = (
            f"{usd(mc.cost_per_signal)} (marginal {usd(mc.marginal_cost_per_signal)}), "
            f"signals: {signals}"
        )
    lines = [f"**{NO_PRICES}**", ""] if not mc.prices_configured else []
    lines += [
        f"- Status **{mc.status.value}**: data spend {usd(mc.spent)} of {usd(mc.budget)} "
        f"({mc.utilization:.1%}) by day {mc.elapsed_days} of {mc.days_in_month}; "
        f"remaining {usd(mc.remaining)}.",
        f"- Projection at month end: {usd(mc.projection)} (spent / elapsed days x days in month).",
        "- By type: " + ", ".join(f"{k} {usd(v)}" for k, v in mc.by_type.items() if v) + "."
        if mc.spent
        else "- By type: nothing booked.",
        f"- Cost per actionable signal: {per_signal}; target < ${mc.target_cost_per_signal:,.2f}.",
        f"- Trading costs (not data cost): {usd(mc.trading_costs)}; quoted, not spent: "
        f"{usd(mc.quoted)}.",
        f"- Prices: {mc.price_source or 'none configured'}.",
    ]
    return lines


# ------------------------------------------------------------------------------------ figures
def _days(mc: MonthCost) -> list[dt.date]:
    first = dt.date(mc.as_of.year, mc.as_of.month, 1)
    return [first + dt.timedelta(days=i) for i in range(mc.elapsed_days)]


def daily_figure(mc: MonthCost) -> go.Figure:
    """Data spend per day stacked by entry type, against the daily budget line."""
    days = _days(mc)
    fig = go.Figure()
    for t in DATA_COST_TYPES:
        part = dict(mc.by_day.filter(pl.col("entry_type") == t).select("date", "amount").rows())
        if part:
            fig.add_trace(go.Bar(x=days, y=[part.get(d, 0.0) for d in days], name=t))
    fig.add_trace(
        go.Scatter(
            x=days,
            y=[mc.daily_budget] * len(days),
            name=f"daily budget ${mc.daily_budget:,.2f} (monthly / {mc.days_in_month})",
            mode="lines",
            line={"dash": "dash", "color": "#b00"},
        )
    )
    fig.update_layout(
        barmode="stack", title="Data spend per day by type (USD)", yaxis_title="USD", height=420
    )
    return fig


def cumulative_figure(mc: MonthCost) -> go.Figure:
    """Cumulative data spend against the budget, with the linear projection to month end."""
    days = _days(mc)
    per_day = dict(mc.by_day.group_by("date").agg(pl.col("amount").sum()).rows())
    cum, total = [], 0.0
    for d in days:
        total += per_day.get(d, 0.0)
        cum.append(total)
    first = days[0]
    last = dt.date(first.year, first.month, mc.days_in_month)
    month_days = [first + dt.timedelta(days=i) for i in range(mc.days_in_month)]
    rate = mc.spent / mc.elapsed_days
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=days, y=cum, name="spent (cumulative)", mode="lines+markers"))
    fig.add_trace(
        go.Scatter(
            x=month_days,
            y=[rate * (i + 1) for i in range(mc.days_in_month)],
            name=f"projection ${mc.projection:,.2f} at {last}",
            mode="lines",
            line={"dash": "dot"},
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[first, last],
            y=[mc.budget, mc.budget],
            name=f"budget ${mc.budget:,.2f}",
            mode="lines",
            line={"color": "#b00"},
        )
    )
    fig.update_layout(title="Month to date vs budget", yaxis_title="USD", height=420)
    return fig


def cost_per_signal_figure(mc: MonthCost) -> go.Figure:
    """Cost per actionable signal (total and marginal, all and per algorithm) vs the target."""
    names = ["all", *mc.per_algo]
    total = [mc.cost_per_signal, *(d["cost_per_signal"] for d in mc.per_algo.values())]
    marginal = [
        mc.marginal_cost_per_signal,
        *(d["marginal_cost_per_signal"] for d in mc.per_algo.values()),
    ]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=names, y=total, name="cost per signal (data cost)"))
    fig.add_trace(go.Bar(x=names, y=marginal, name="marginal (without subscriptions)"))
    fig.add_trace(
        go.Scatter(
            x=names,
            y=[mc.target_cost_per_signal] * len(names),
            name=f"target < ${mc.target_cost_per_signal:,.2f}",
            mode="lines+markers",
            line={"color": "#b00", "dash": "dash"},
        )
    )
    fig.update_layout(
        barmode="group",
        title=f"Cost per actionable signal, {mc.month} ({mc.allocation} allocation)",
        yaxis_title="USD per signal",
        height=400,
    )
    return fig


def _summary(mc: MonthCost) -> pl.DataFrame:
    def usd(v: float | None) -> str:
        return "—" if v is None else f"${v:,.2f}"

    rows = [
        ("status", mc.status.value),
        ("data spend to date", usd(mc.spent)),
        ("monthly budget", usd(mc.budget)),
        ("utilization", f"{mc.utilization:.1%}"),
        ("remaining", usd(mc.remaining)),
        ("projection (month end)", usd(mc.projection)),
        ("days elapsed", f"{mc.elapsed_days} of {mc.days_in_month}"),
        ("remaining per day", usd(mc.remaining_per_day)),
        ("alert levels reached", ", ".join(f"{x:.0%}" for x in mc.alert_levels_reached) or "—"),
        ("actionable signals", f"{mc.total_signals} {mc.actionable_signals}"),
        ("synthetic signals (not counted)", str(mc.synthetic_signals)),
        ("cost per signal", usd(mc.cost_per_signal)),
        ("marginal cost per signal", usd(mc.marginal_cost_per_signal)),
        ("trading costs (not data cost)", usd(mc.trading_costs)),
        ("quoted (not spend)", usd(mc.quoted)),
        ("prices", mc.price_source or "none configured"),
    ]
    return pl.DataFrame(rows, schema=["figure", "value"], orient="row")


def write_cost_report(data_dir: Path, mc: MonthCost, title: str | None = None) -> Path:
    """``<data>/reports/cost-<month>.html``: the summary, daily spend vs the daily budget,
    cumulative spend vs budget with the projection, cost per signal vs target, the ledger rows."""
    sections = []
    if not mc.prices_configured:
        sections.append(f'<p class="synthetic">{html.escape(NO_PRICES)}</p>')
    sections += [
        f"<h2>Status: {html.escape(mc.status.value)}</h2>",
        _table(_summary(mc), f"{mc.month} to {mc.as_of}"),
        _table(
            pl.DataFrame(
                {
                    "entry_type": [*mc.by_type, *mc.trading_by_type],
                    "class": ["data"] * len(mc.by_type) + ["trading"] * len(mc.trading_by_type),
                    "usd": [*mc.by_type.values(), *mc.trading_by_type.values()],
                }
            ),
            "By type (data types sum to the data spend)",
        ),
        _fig(daily_figure(mc)),
        _fig(cumulative_figure(mc)),
        _fig(cost_per_signal_figure(mc)),
    ]
    if mc.per_algo:
        per = pl.DataFrame([{"algo": a, **d} for a, d in mc.per_algo.items()])
        sections.append(_table(per, f"Per algorithm ({mc.allocation} allocation)"))
    cols = ["date", "entry_type", "category", "amount_usd", "status", "decision", "entry_id"]
    sections.append(_table(mc.entries.select(cols), f"Ledger rows of {mc.month} ({mc.as_of})"))
    return write_page(
        data_dir,
        f"cost-{mc.month}.html",
        title or f"Costs {mc.month} (to {mc.as_of})",
        False,
        sections,
    )
