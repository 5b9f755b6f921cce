"""Prefect flow `historical_ingest`: DBN files of a trading day (or given paths) into the lake.

Thin by design: it picks the files, calls warehouse.ingest with one task per file (definitions
first, then the others side by side on the runner of the compute settings),
and publishes what landed and the data-quality results as artifacts: the files, a summary, the
DQ results per dataset/expectation/column (from ``dq_results``), a link to the DQ report and one
to the Great Expectations Data Docs, built once per flow run (docs/operations.md). A
file that fails is reported and the flow run fails after the other files were handled, so one
bad file neither hides the rest nor passes silently.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import State

from flows.calendar_gate import no_session, skipped, today_ny
from flows.report_links import publish_report_link
from flows.retries import SAFE_RETRY
from flows.run_names import run_name
from flows.settings import flow_settings


class IngestFailed(RuntimeError):
    """At least one file was refused or quarantined."""


def day_files(source_dir: Path, day: dt.date) -> list[Path]:
    """Databento-named files of one day: glbx-mdp3-YYYYMMDD.<schema>.dbn[.zst]."""
    stem = f"glbx-mdp3-{day:%Y%m%d}."
    return sorted(p for p in source_dir.glob(stem + "*") if p.name.endswith((".dbn", ".dbn.zst")))


# Each file is one task run on the runner compute settings choose (flows/fanout.py); a retry is
# safe: a loaded file adds nothing the second time (flows/retries.py).
FILE_TASK = {"name": "ingest-file", "cache_policy": NO_CACHE, **SAFE_RETRY}


def _row(r, run_id: str) -> dict:
    return {
        "file": r.path.name,
        "status": r.status,
        "schema": r.schema or "",
        "origin": r.origin or "",
        "rows": sum(r.rows.values()),
        "tables": ", ".join(f"{t}={n}" for t, n in r.rows.items()),
        "duplicates": sum(r.duplicates.values()),
        "checks_passed": sum(x["success"] for x in r.dq),
        "checks": len(r.dq),
        "reason": r.reason,
        "run_id": run_id,
    }


@flow(
    name="historical_ingest",
    log_prints=True,
    flow_run_name=run_name(
        lambda p: (
            f"ingest-{len(p['paths'])}-files"
            if p["paths"]
            else f"ingest-{p['trade_date'] or 'today'}"
        )
    ),
)
def historical_ingest(
    paths: list[str] | None = None,
    trade_date: dt.date | None = None,
    source_dir: str | None = None,
    origin: str | None = None,
) -> list[dict] | State:
    """Ingest explicit `paths`, or the files of `trade_date` found in `source_dir`.

    `source_dir` defaults to <data>/incoming, where `ifd fetch` downloads. Without either, the
    trade date is today's (New York), and a day without a CME session is skipped.

    Args:
        paths: DBN files to ingest (.dbn or .dbn.zst), definitions first whatever the order.
            Empty: the files of trade_date.
        trade_date: Trade date whose Databento-named files (glbx-mdp3-YYYYMMDD.*) are taken
            from source_dir. Empty: today in New York.
        source_dir: Folder holding the day's files. Empty: <data>/incoming.
        origin: Origin recorded on every row: synthetic, replay, historical, live or backfill.
            Empty: synthetic for simulated files, else historical.
    """
    logger = get_run_logger()
    settings = flow_settings()
    data_dir = str(settings.data_dir)
    if not paths and trade_date is None:
        trade_date = today_ny()
        if reason := no_session(trade_date):
            logger.info(reason)
            return skipped("historical-ingest", reason)
    if paths:
        files = [Path(p) for p in paths]
    elif trade_date:
        folder = Path(source_dir) if source_dir else settings.data_dir / "incoming"
        files = day_files(folder, trade_date)
        if not files:
            raise FileNotFoundError(f"no DBN files for {trade_date} in {folder}")
    else:
        raise ValueError("give either paths or trade_date")
    from flows.fanout import prefect_mapper
    from ifd_core.marketdata.dbn_files import DecodeLimits
    from warehouse.ingest import ingest_files
    from warehouse.lake import Lake

    # Definitions first, then the other files side by side as task runs (docs/operations.md,
    # "Scaling out"); one ingest run id for the flow run.
    with prefect_mapper(settings.compute, **FILE_TASK) as mapper:
        report = ingest_files(
            files,
            Lake(Path(data_dir)),
            origin=origin,
            limits=DecodeLimits.from_settings(settings),
            mapper=mapper,
            progress=lambda r: logger.info("%s: %s", r.path.name, r.status),
        )
    rows = [_row(r, report.run_id) for r in report.files]
    create_table_artifact(
        key="historical-ingest-files", table=rows, description="Files handled by this run"
    )
    loaded = [r for r in rows if r["status"] == "loaded"]
    md = [
        f"# Historical ingest{f' for {trade_date}' if trade_date else ''}",
        "",
        f"{len(loaded)} of {len(rows)} files loaded, {sum(r['rows'] for r in loaded):,} rows.",
        "",
    ]
    md += [
        f"- **{r['file']}**: {r['status']} {r['reason']}" for r in rows if r["status"] != "loaded"
    ]
    docs = _publish_data_docs(settings, trade_date)
    md += ["", f"Great Expectations Data Docs: `{docs}`"]
    dq_report = _publish_dq(data_dir, [r["run_id"] for r in rows], trade_date)
    if dq_report:
        md += ["", f"Data-quality report: `{dq_report}`"]
    create_markdown_artifact(key="historical-ingest-summary", markdown="\n".join(md))
    failed = [r for r in rows if r["status"] != "loaded"]
    if failed:
        raise IngestFailed("; ".join(r["reason"] for r in failed))
    return rows


def _publish_dq(data_dir: str, run_ids: list[str], trade_date: dt.date | None) -> Path | None:
    """The DQ results of this flow's ingest runs as a table artifact and the DQ report as a link
    artifact. Quarantined files stored no results in the lake; their reasons are in the summary."""
    from flows.trading_reports import artifact_rows
    from reports.dq import dq_summary, write_dq_report
    from warehouse.lake import Lake

    if not run_ids:
        return None
    lake = Lake(Path(data_dir))
    what = f"Data-quality results{f' for {trade_date}' if trade_date else ''}"
    create_table_artifact(
        key="historical-ingest-dq",
        table=artifact_rows(dq_summary(lake, run_ids)),
        description=f"{what}: one row per dataset, expectation and column",
    )
    report = write_dq_report(lake, Path(data_dir), run_ids)
    publish_report_link("historical-ingest-dq-report", report, what, flow_settings())
    return report


def _publish_data_docs(settings, trade_date: dt.date | None) -> Path:
    """Great Expectations Data Docs of this run's validations (quarantined files' included),
    built once per flow run, not per file, and linked as an artifact."""
    import time

    from expectations.data_docs import publish_data_docs

    t0 = time.perf_counter()
    docs = publish_data_docs(settings.data_dir)
    get_run_logger().info(
        "Data Docs: %d validation result(s) of suites %s added in %.2f s: %s",
        docs.published,
        ", ".join(docs.suites) or "-",
        time.perf_counter() - t0,
        docs.index,
    )
    what = (
        f"Great Expectations Data Docs{f' after the ingest of {trade_date}' if trade_date else ''}"
    )
    publish_report_link("historical-ingest-data-docs", docs.index, what, settings)
    return docs.index
