"""Prefect flow `baseline_refresh`: before the Globex open, the 20-session baselines the next trade
date is judged against, computed once and stored (table `baselines`), so the live run starts
without the work and a missing session shows up before the open, not during it."""

from __future__ import annotations

import datetime as dt

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import State

from flows.calendar_gate import no_session, skipped, today_ny
from flows.fanout import prefect_mapper
from flows.run_names import run_name
from flows.settings import flow_settings


@flow(
    name="baseline_refresh",
    log_prints=True,
    flow_run_name=run_name(lambda p: f"baselines-{p['trade_date'] or 'tonight'}"),
)
def baseline_refresh(trade_date: dt.date | None = None) -> dict | State:
    """Baselines for `trade_date` (default: the session that opens this evening, i.e. the
    next calendar day's, skipped when that day has no session).

    Args:
        trade_date: Session whose 20-session baselines are computed and stored. Empty: the
            session that opens this evening (tomorrow's date), skipped on a holiday.
    """
    from jobs.detect import refresh_baselines
    from warehouse.lake import Lake
    from warehouse.migrations import ensure_migrated

    log = get_run_logger()
    if trade_date is None:
        trade_date = today_ny() + dt.timedelta(days=1)
        reason = no_session(trade_date)
        if reason:
            log.info(reason)
            return skipped("baseline-refresh", reason)
    settings = flow_settings()
    lake = Lake(settings.data_dir)
    ensure_migrated(lake)
    # Sessions without stored windows are computed as task runs on compute.runner, side by side.
    with prefect_mapper(settings.compute) as mapper:
        base, present = refresh_baselines(
            lake,
            trade_date,
            settings,
            progress=lambda d: log.info("windows of %s", d),
            mapper=mapper,
        )
    wanted = settings.analysis.v3.lookback_days
    rows = [{"bucket_table": name, "rows": df.height} for name, df in sorted((base or {}).items())]
    create_table_artifact(
        key="baseline-refresh",
        table=rows or [{"bucket_table": "none", "rows": 0}],
        description=f"Baselines for {trade_date}",
    )
    md = [
        f"# Baselines for {trade_date}",
        "",
        f"From {len(present)} of the {wanted} sessions before it"
        + (f" ({present[0]} to {present[-1]})." if present else "."),
    ]
    if 0 < len(present) < wanted:
        md += ["", f"**Short history**: {wanted - len(present)} sessions missing from the lake."]
    if base is None:
        md += ["", "**No baselines**: no stored sessions before this date. Ingest history first."]
    create_markdown_artifact(key="baseline-refresh-summary", markdown="\n".join(md))
    if base is None:
        raise RuntimeError(f"no baselines for {trade_date}: no stored sessions before it")
    return {"trade_date": trade_date.isoformat(), "sessions": len(present), "tables": rows}
