"""The month's costs against the budget (docs/operations.md §Costs); the page that
draws them is ``reports.cost``.

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

import polars as pl

from ifd_core.ops.budget import BudgetGate
from ifd_core.ops.costs import (
    DATA_COST_TYPES,
    NO_PRICES,
    TRADING_COST_TYPES,
    MonthCost,
    allocate,
    budget_status,
    cost_per_signal,
)
from ifd_core.settings import Settings, price_on
from warehouse.cost_ledger import LakeCostLedger
from warehouse.lake import Lake
from warehouse.sql import query


def _sums(df: pl.DataFrame, types: tuple[str, ...]) -> dict[str, float]:
    got = dict(
        df.filter(pl.col("entry_type").is_in(list(types)))
        .group_by("entry_type")
        .agg(pl.col("amount").sum())
        .iter_rows()
    )
    return {t: float(got.get(t, 0.0)) for t in types}


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
