"""Prefect flow `live_stream`: one long run per trading session, the live feed into the lake.

Thin by design (docs/operations.md §Live run): no task per event; the flow runs
``jobs.live.runner.LiveRunner`` in its own process, which captures the stream, writes micro-batches
and checkpoints, and publishes a summary artifact at the end. Cancelling the run from the UI (or
SIGTERM from the worker) flushes and checkpoints; the next run of the same date resumes.
"""

from __future__ import annotations

import datetime as dt
import signal
import threading
import time
from typing import Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.run_names import run_name
from flows.settings import flow_settings
from ifd_core.calendar import next_period
from ifd_core.trading.halt import EmergencyStop


def session_to_stream(now_ns: int, policy: str, max_wait_s: float) -> tuple[dt.date, float] | None:
    """The trade date whose streaming period is open now or opens within ``max_wait_s``, and
    the seconds until it opens; None when the next period is further away (a holiday: the
    scheduled run is skipped, not run on an empty market)."""
    period = next_period(now_ns, policy)
    wait_s = max(0.0, (period.open_ns - now_ns) / 1e9)
    return (period.trade_date, wait_s) if wait_s <= max_wait_s else None


@flow(
    name="live_stream",
    log_prints=True,
    flow_run_name=run_name(lambda p: f"live-{p['trade_date'] or 'next-session'}-{p['algo']}"),
)
def live_stream(
    gateway_host: str = "127.0.0.1",
    gateway_port: int = 13000,
    trade_date: dt.date | None = None,
    exit_on_end: bool = True,
    algo: Literal["both", "v3", "v1"] = "both",
    max_wait_for_open_s: float = 3 * 3600.0,
) -> dict:
    """Stream one session of the NQ option chain from a Databento live gateway (or the replay
    gateway) through the FlowEngine into the lake.

    `trade_date` streams that date from its session start (a stored date through the replay
    gateway, or today's session from its start by intraday replay). Left empty, as the
    scheduled deployment leaves it, the run takes the session open now or opening within
    `max_wait_for_open_s` on the CME calendar, waits for its open, streams it to its close and
    ends; when no session is that near (a holiday) it ends at once, saying so.

    Args:
        gateway_host: Host of the Databento live gateway (or IFD's replay gateway).
        gateway_port: Port of that gateway.
        trade_date: Session to stream from its start. Empty: the session open now or the next
            one opening within max_wait_for_open_s.
        exit_on_end: End the run when the gateway ends its session, instead of reconnecting
            for the next one.
        algo: Detector run on the stream: v3, v1, or both.
        max_wait_for_open_s: Longest wait, in seconds, for the next session's open.
    """
    from jobs.live.runner import LiveOptions, LiveRunner
    from jobs.rollout import decision_markdown
    from warehouse.lake import Lake

    logger = get_run_logger()
    settings = flow_settings()
    if trade_date is None:
        found = session_to_stream(time.time_ns(), settings.live.session_policy, max_wait_for_open_s)
        if found is None:
            nxt = next_period(time.time_ns(), settings.live.session_policy)
            msg = f"no CME session opens within {max_wait_for_open_s:.0f} s; next {nxt.trade_date}"
            logger.info(msg)
            create_markdown_artifact(key="live-stream-summary", markdown=f"# Live stream\n\n{msg}")
            return {
                "run_id": None,
                "days": [],
                "gaps": [],
                "stopped": False,
                "halted": None,
                "skipped": msg,
            }
        trade_date, wait_s = found
        if wait_s > 0:
            logger.info("waiting %.0f s for the %s session to open", wait_s, trade_date)
            time.sleep(wait_s)
    algos = ("v3", "v1") if algo == "both" else (algo,)
    opts = LiveOptions(gateway_host, gateway_port, trade_date, exit_on_end, algos)

    def rollback_artifact(decision, data_ts: int) -> None:
        md = decision_markdown(decision, settings.rollout.challenger, data_ts)
        create_markdown_artifact(key="rollout-rollback", markdown=md)

    runner = LiveRunner(
        Lake(settings.data_dir),
        settings,
        opts,
        progress=logger.info,
        on_rollback=rollback_artifact,
    )
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: runner.stop())
    if (why := EmergencyStop(settings.data_dir).reason()) is not None:
        logger.warning("the emergency stop is on: the run's new entries are refused (%s)", why)
    summary = runner.run()
    if summary.halted:
        logger.warning("the emergency stop was on during the run (%s)", summary.halted)
    rows = [d.to_row() for d in summary.days]
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
    if summary.halted:
        md[2:2] = [f"**EMERGENCY STOP ON**: new entries were refused ({summary.halted}).", ""]
    create_markdown_artifact(key="live-stream-summary", markdown="\n".join(md))
    return {
        "run_id": summary.run_id,
        "days": rows,
        "gaps": gaps,
        "stopped": summary.stopped,
        "halted": summary.halted,
        "skipped": None,
    }
