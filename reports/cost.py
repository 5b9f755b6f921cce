"""The month's cost page: summary, data spend per day against the daily budget, cumulative
spend against the budget with its projection, cost per signal against the target, ledger rows.
It draws the ``MonthCost`` that ``jobs.cost_report.month_to_date`` puts together.
"""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path

import plotly.graph_objects as go
import polars as pl

from ifd_core.ops.cost_advice import AdviceReport
from ifd_core.ops.costs import DATA_COST_TYPES, NO_PRICES, MonthCost
from reports.kit import figure_html, table_html, write_page


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


def advice_sections(report: AdviceReport) -> list[str]:
    """The cost advice (``ifd cost advise``): each change with its saving and the signals it
    would have cost, then the records and bytes per schema, root and strike band."""
    head = (
        f"<h2>Cost advice {report.start} to {report.end}</h2>"
        f"<p>{report.sessions} sessions, {report.records:,} records, {report.bytes:,} bytes "
        f"received; far band beyond ±{report.params.strike_band_pct:g} % of the underlying; "
        f"quiet = no signal in the last {report.params.quiet_sessions} sessions. Savings come "
        "from the ledger's $ per byte or Databento's get_cost for the alternative request, and "
        "overlap (they are not additive).</p>"
    )
    head += "".join(f"<p>Note: {html.escape(n)}.</p>" for n in report.notes)
    if not report.advice:
        body = "<p>No advice: nothing qualifies.</p>"
    else:
        rows = [
            {
                "kind": a.kind,
                "action": a.action,
                "saving_usd": a.saving_usd,
                "avoided_usd": a.avoided_usd,
                "alternative_usd": a.alternative_usd,
                "bytes": a.bytes,
                "share_of_flow_bytes": (
                    None if a.share_of_bytes is None else round(a.share_of_bytes, 4)
                ),
                "signals_lost": a.signals_lost,
                "episodes_lost": a.episodes_lost,
                "basis": a.basis + (f" ({a.quote_error})" if a.quote_error else ""),
            }
            for a in report.advice
        ]
        body = table_html(pl.DataFrame(rows), "Recommended changes")
    return [head, body, table_html(report.by_band, "Records and bytes per schema, root, band")]


def write_cost_report(
    data_dir: Path,
    mc: MonthCost,
    title: str | None = None,
    advice: AdviceReport | None = None,
) -> Path:
    """``<data>/reports/cost-<month>.html``: the summary, daily spend vs the daily budget,
    cumulative spend vs budget with the projection, cost per signal vs target, the cost advice
    (when given), the ledger rows."""
    sections = []
    if not mc.prices_configured:
        sections.append(f'<p class="synthetic">{html.escape(NO_PRICES)}</p>')
    sections += [
        f"<h2>Status: {html.escape(mc.status.value)}</h2>",
        table_html(_summary(mc), f"{mc.month} to {mc.as_of}"),
        table_html(
            pl.DataFrame(
                {
                    "entry_type": [*mc.by_type, *mc.trading_by_type],
                    "class": ["data"] * len(mc.by_type) + ["trading"] * len(mc.trading_by_type),
                    "usd": [*mc.by_type.values(), *mc.trading_by_type.values()],
                }
            ),
            "By type (data types sum to the data spend)",
        ),
        figure_html(daily_figure(mc)),
        figure_html(cumulative_figure(mc)),
        figure_html(cost_per_signal_figure(mc)),
    ]
    if mc.per_algo:
        per = pl.DataFrame([{"algo": a, **d} for a, d in mc.per_algo.items()])
        sections.append(table_html(per, f"Per algorithm ({mc.allocation} allocation)"))
    if advice is not None:
        sections += advice_sections(advice)
    cols = ["date", "entry_type", "category", "amount_usd", "status", "decision", "entry_id"]
    sections.append(table_html(mc.entries.select(cols), f"Ledger rows of {mc.month} ({mc.as_of})"))
    return write_page(
        data_dir,
        f"cost-{mc.month}.html",
        title or f"Costs {mc.month} (to {mc.as_of})",
        False,
        sections,
    )
