"""Prefect flow `detection`: the FlowEngine with IFD v3 and/or v1 over one trade date from the
lake (jobs.detect.detect_day: baselines from the sessions before it, windows, signals
and their outcomes), then the detection report and three artifacts: a markdown summary (the
data's origin said first), the signals as a table and a link to the static HTML report.

The date defaults to the last trade date with MBO records in the lake. With v3 and a Massive
key (``IFD_MASSIVE__API_KEY``), the cross-asset confirmation of the day's v3 episodes runs after
detection (jobs.cross_asset.run_confirmation), before the report; without a key it is skipped
with a log line, and a Massive failure is logged and recorded as an incident while the
detection's signals stand (docs/operations.md, "Massive (optional)").
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import polars as pl
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import State

from flows.calendar_gate import skip_scheduled_holiday
from flows.fanout import prefect_mapper
from flows.report_links import publish_report_link
from flows.run_names import run_name
from flows.settings import flow_settings
from flows.trading_reports import artifact_rows

KEY = "detection"
ALGOS: dict[str, tuple[str, ...]] = {"both": ("v3", "v1"), "v3": ("v3",), "v1": ("v1",)}


def last_mbo_date(lake) -> dt.date | None:
    """The last trade date with MBO records in the lake, or None when it holds none."""
    return lake.scan("mbo").select(pl.col("date").max()).collect().item()


@flow(
    name="detection",
    log_prints=True,
    flow_run_name=run_name(lambda p: f"detection-{p['day'] or 'latest'}-{p['algo']}"),
)
def detection(
    day: dt.date | None = None,
    algo: Literal["both", "v3", "v1"] = "both",
) -> dict | State:
    """Detect on `day` (default: the last date with MBO data in the lake) with `algo`, write the
    detection report and publish the summary, the signals table and the report link.

    Args:
        day: Trade date to detect on. Empty: the last date with MBO data in the lake.
        algo: Detector: v3 (pressure against 20-session baselines), v1 (the simpler rules), or
            both side by side.
    """
    from jobs.cross_asset import run_confirmation
    from jobs.detect import detect_day
    from reports.detection import day_origins, day_signals, write_detection_report
    from warehouse.lake import Lake

    if day is None and (skip := skip_scheduled_holiday(KEY)) is not None:
        return skip
    log = get_run_logger()
    settings = flow_settings()
    lake = Lake(settings.data_dir)
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {', '.join(ALGOS)}, not {algo!r}")
    algos = ALGOS[algo]
    if day is None:
        day = last_mbo_date(lake)
        if day is None:
            raise ValueError(f"no MBO data in the lake at {settings.data_dir}: ingest first")
        log.info("no date given: detecting on %s, the last date with MBO data", day)
    with prefect_mapper(settings.compute) as mapper:  # earlier sessions' windows side by side
        run = detect_day(
            lake,
            day,
            settings,
            algos,
            progress=lambda d: log.debug("baseline %s", d),
            mapper=mapper,
        )
    cross_asset = None
    if "v3" in algos:
        cross_asset = run_confirmation(settings, lake, day, run_id=f"{KEY}-{day.isoformat()}")
        if cross_asset.status == "failed":
            log.warning("cross-asset confirmation failed (signals stand): %s", cross_asset.error)
        elif cross_asset.status == "skipped":
            log.info("cross-asset confirmation skipped: %s", cross_asset.error)
    report = write_detection_report(lake, settings.data_dir, day, algos)
    signals = day_signals(lake, day, algos)
    origins = sorted(day_origins(lake, day))
    synthetic = "synthetic" in origins
    title = f"Detection {day} ({', '.join(algos)})"
    origin = (
        "**SYNTHETIC data (simulated market): nothing here is evidence about real markets.**"
        if synthetic
        else f"Data origin: {', '.join(origins) or 'unknown'}."
    )
    counts = {a: signals.filter(pl.col("algo") == a).height for a in algos}
    labels = signals.group_by("algo", "label").len().sort("algo", "label", nulls_last=True)
    md = [
        f"# {title}",
        "",
        origin,
        "",
        f"{run.records:,} records through the engine in {run.seconds:.1f}s; baselines from "
        f"{len(run.baseline_sessions)} of {settings.analysis.v3.lookback_days} earlier sessions.",
        "",
        *[f"- **{a}**: {n} signal{'s' if n != 1 else ''}" for a, n in counts.items()],
        "",
    ]
    if labels.height:
        md += ["| algo | outcome | signals |", "|---|---|---|"]
        md += [
            f"| {r['algo']} | {r['label'] or 'not labelled'} | {r['len']} |"
            for r in labels.to_dicts()
        ]
        md.append("")
    md.append(f"Report: `{report}`")
    create_markdown_artifact(key=f"{KEY}-summary", markdown="\n".join(md), description=title)
    table = signals.drop("underlying_id", "window_start", "window_end").with_columns(
        pl.from_epoch(pl.col("decision_ts").cast(pl.Int64), time_unit="ns")
        .dt.replace_time_zone("UTC")
        .alias("decision_ts")
    )
    create_table_artifact(
        key=f"{KEY}-signals",
        table=artifact_rows(table),
        description=f"{title}: signals with their outcome label",
    )
    publish_report_link(f"{KEY}-report", report, title, settings)
    return {
        "day": day.isoformat(),
        "algos": list(algos),
        "signals": counts,
        "synthetic": synthetic,
        "records": run.records,
        "report": str(report),
        "cross_asset": cross_asset.status if cross_asset is not None else "not run (no v3)",
    }
