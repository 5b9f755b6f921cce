"""Prefect flow `barchart_check`: the day's Barchart OnDemand cross-check of Databento's open
interest and settlements (jobs/barchart_check.py; docs/operations.md, "Barchart OnDemand
(optional)"), with its counts as table and markdown artifacts.

Runs after the evening ingest on trading days (prefect.yaml; Barchart serves the latest session
only, so the same evening). Without ``IFD_BARCHART__API_KEY`` the run is skipped (the source is
optional); a Barchart failure or a day without Databento statistics fails the run with the one
clear message; disagreements complete the run with the ``barchart.disagreements`` alert raised.
"""

from __future__ import annotations

import datetime as dt

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import State

from flows.calendar_gate import skip_scheduled_holiday, skipped, today_ny
from flows.run_names import run_name
from flows.settings import flow_settings

KEY = "barchart-check"


@flow(
    name="barchart_check",
    log_prints=True,
    flow_run_name=run_name(lambda p: f"barchart-check-{p['trade_date'] or 'today'}"),
)
def barchart_check(trade_date: dt.date | None = None) -> dict | State:
    """Cross-check `trade_date` (default: today in New York, skipped on a holiday when run by
    the schedule).

    Args:
        trade_date: Trade date whose Barchart chain is fetched and compared with the lake's
            Databento open interest and settlements. Empty: today's session.
    """
    from ifd_core.marketdata.barchart import API_KEY_ENV, make_client
    from jobs.barchart_check import run_check

    log = get_run_logger()
    if trade_date is None:
        gate = skip_scheduled_holiday(KEY)
        if gate is not None:
            return gate
        trade_date = today_ny()
    settings = flow_settings()
    client = make_client(settings)
    if not client.enabled:
        reason = f"Barchart is not configured ({API_KEY_ENV} is empty): the check is optional"
        log.info(reason)
        return skipped(KEY, reason)
    result = run_check(settings, trade_date, client=client)
    for a in result.alerts:
        log.warning("alert %s %s[%s]: %s", a.state, a.rule, a.subject, a.detail)
    title = f"Barchart cross-check {result.root} {trade_date}"
    create_table_artifact(
        key=f"{KEY}-rules",
        table=[{"rule": c, "options_failing": n} for c, n in result.failed.items()],
        description=title,
    )
    md = [
        f"# {title}",
        "",
        f"{result.chain_rows} options fetched, {result.compared} compared, "
        f"**{result.disagreements} disagree** (run `{result.run_id}`, rows in `dq_results`).",
    ]
    if result.reason:
        md += ["", result.reason]
    create_markdown_artifact(key=f"{KEY}-summary", markdown="\n".join(md), description=title)
    return result.to_dict()
