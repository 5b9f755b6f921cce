"""Prefect flow `live_stream`: one long run per trading session, the live feed into the lake.

Thin by design (ECOSYSTEM.md "Long-running streaming flow"): no task per event; the flow runs
``warehouse.live.LiveRunner`` in its own process, which captures the stream, writes micro-batches
and checkpoints, and publishes a summary artifact at the end. Cancelling the run from the UI (or
SIGTERM from the worker) flushes and checkpoints; the next run of the same date resumes.
"""

from __future__ import annotations

import datetime as dt
import signal
import threading

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from ifd_core.settings import get_settings


@flow(name="live_stream", log_prints=True)
def live_stream(
    gateway_host: str = "127.0.0.1",
    gateway_port: int = 13000,
    trade_date: dt.date | None = None,
    exit_on_end: bool = True,
    algo: str = "both",
) -> dict:
    """Stream the NQ option chain from a Databento live gateway (or the replay gateway) through
    the FlowEngine; `trade_date` replays one stored date and stops after it."""
    from warehouse.lake import Lake
    from warehouse.live import LiveOptions, LiveRunner

    logger = get_run_logger()
    settings = get_settings()
    algos = ("v3", "v1") if algo == "both" else (algo,)
    opts = LiveOptions(gateway_host, gateway_port, trade_date, exit_on_end, algos)
    runner = LiveRunner(Lake(settings.data_dir), settings, opts, progress=logger.info)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: runner.stop())
    summary = runner.run()
    rows = [
        {
            "date": d.day.isoformat(),
            "records": d.records,
            "windows": d.windows,
            "incomplete_windows": d.incomplete_windows,
            "signals": d.signals,
            "finalized": d.finalized,
        }
        for d in summary.days
    ]
    create_table_artifact(key="live-stream-days", table=rows, description="Trade dates streamed")
    gaps = [{"gap": g.gap_id, "status": g.status, "detail": g.detail} for g in summary.gaps]
    md = [
        f"# Live stream {summary.run_id}",
        "",
        f"{sum(r['records'] for r in rows):,} records, {sum(r['signals'] for r in rows)} "
        f"signals, {len(gaps)} gaps, {summary.incidents} incidents.",
        "",
        *[f"- gap {g['gap']}: {g['status']} {g['detail']}" for g in gaps],
    ]
    create_markdown_artifact(key="live-stream-summary", markdown="\n".join(md))
    return {"run_id": summary.run_id, "days": rows, "gaps": gaps, "stopped": summary.stopped}
