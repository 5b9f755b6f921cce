"""Prefect flow `cost_report`: book the month's subscription days, then the month-to-date cost
against the budget and the cost advice from measured usage (docs/operations.md §Costs) as table,
markdown and link artifacts and an HTML report.

Runs daily after the close and on the last day of each month (prefect.yaml). The day is a UTC
calendar date because the ledger's months are UTC months; the daily run at 18:15 New York falls
on the same date in UTC. It also evaluates the daily alert rules (budget 80 / 95 %, projection
over budget, daily cost, RTH uptime, completeness), deduplicated per episode.
"""

from __future__ import annotations

import datetime as dt

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.report_links import publish_report_link
from flows.run_names import run_name
from flows.settings import flow_settings

KEY = "cost-report"


@flow(
    name="cost_report",
    log_prints=True,
    flow_run_name=run_name(lambda p: f"cost-report-{p['day'] or 'today'}"),
)
def cost_report(day: str | None = None) -> dict:
    """Book subscriptions through ``day`` (ISO date, default today in UTC), report its month.

    Args:
        day: Last day booked and reported, as YYYY-MM-DD (its month is the report's). Empty:
            today in UTC, the ledger's calendar.
    """
    from ifd_core.ops.costs import NO_PRICES
    from jobs.cost_advice import advice_lines, cost_advice
    from jobs.cost_report import month_to_date, summary_lines
    from reports.cost import write_cost_report
    from warehouse.cost_ledger import LakeCostLedger
    from warehouse.lake import Lake

    log = get_run_logger()
    settings = flow_settings()
    lake = Lake(settings.data_dir)
    d = dt.date.fromisoformat(day) if day else dt.datetime.now(dt.UTC).date()
    booked = LakeCostLedger(lake, settings.costs).book_subscriptions(d)
    mc = month_to_date(lake, settings, d)
    advice = cost_advice(lake, settings, d.replace(day=1), d)
    report = write_cost_report(settings.data_dir, mc, advice=advice)
    from warehouse.ops_events import evaluate_daily_alerts

    for a in evaluate_daily_alerts(lake, settings, mc, d):
        log.warning("alert %s %s[%s]: %s", a.state, a.rule, a.subject, a.detail)
    month_end = d.day == mc.days_in_month
    if not mc.prices_configured:
        log.warning(NO_PRICES)
    if mc.status.value in ("WARNING", "CRITICAL", "CAUTION"):
        log.warning(
            "data budget %s: $%.2f of $%.2f spent (%.1f %%), projection $%.2f at month end",
            mc.status.value,
            mc.spent,
            mc.budget,
            mc.utilization * 100,
            mc.projection,
        )

    kind = "Month-end cost report" if month_end else "Cost report"
    title = f"{kind} {mc.month} (to {d})"
    doc = mc.to_dict()
    table = [
        {"figure": k, "value": v}
        for k, v in doc.items()
        if not isinstance(v, dict | list) and k != "price_source"
    ]
    table += [{"figure": f"data cost: {k}", "value": v} for k, v in doc["by_type"].items()]
    table += [{"figure": f"signals: {k}", "value": v} for k, v in mc.actionable_signals.items()]
    create_table_artifact(key=f"{KEY}-figures", table=table, description=title)
    md = [f"# {title}", "", *summary_lines(mc), "", "## Cost advice", "", *advice_lines(advice), ""]
    md += [f"Booked {len(booked)} subscription entries this run.", "", f"Report: `{report}`"]
    create_markdown_artifact(key=f"{KEY}-summary", markdown="\n".join(md), description=title)
    publish_report_link(f"{KEY}-report", report, title, settings)
    return {
        **doc,
        "report": str(report),
        "booked_subscription_entries": len(booked),
        "month_end": month_end,
        "advice": advice.to_dict()["advice"],
    }
