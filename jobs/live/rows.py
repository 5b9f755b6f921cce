"""Row builders for the lake tables a live run writes: its windows' completeness, signals,
signal latency, gaps, incidents and the date's engine run, each in its table's schema.

Every row a live run writes carries ``source_sha = live-<run_id>`` until the date is consolidated
into the files batch detection writes (``LIVE_KEY`` is also the prefix of its file keys).
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import polars as pl

from ifd_core.analysis.flow_engine import FlowEngine
from ifd_core.marketdata.dbn_stream import ts_recv_of
from ifd_core.marketdata.live_source import Gap
from ifd_core.marketdata.record_source import RecordBatch
from ifd_core.ops.liveness import Incident, SignalLatency
from ifd_core.units import ns_to_utc
from jobs.detect import ENGINE_VERSION
from warehouse.tables import TABLES

LIVE_KEY = "live-"


def live_source_sha(run_id: str) -> str:
    """What a live run's rows say they were made from until the date is consolidated."""
    return f"{LIVE_KEY}{run_id}"


def flush_bucket() -> str:
    """The lake bucket of a live flush: one per UTC hour, so a commit every few seconds links
    at most an hour's files (warehouse.lake ``Lake.write``)."""
    return f"live-h{dt.datetime.now(dt.UTC):%H}"


def latency_rows(
    batch: RecordBatch,
    signals: pl.DataFrame,
    local_recv_ns: int,
    emit_ns: int,
    run_id: str,
    grace_ns: int,
) -> list[dict]:
    """``signal_latency`` rows of the signals one batch raised: the record that triggered each
    decision, when it was sent, received and acted on."""
    rec = batch.records
    ts_event = rec["ts_event"].astype(np.int64)
    ts_recv = ts_recv_of(batch).astype(np.int64)
    rows = []
    for sid, algo, decision, wend in signals.select(
        "signal_id", "algo", "decision_ts", "window_end"
    ).iter_rows():
        hit = np.flatnonzero(ts_event >= int(decision))
        i = int(hit[0]) if len(hit) else len(rec) - 1
        lat = SignalLatency(int(ts_event[i]), int(ts_recv[i]), local_recv_ns, emit_ns)
        rows.append(
            {
                "run_id": run_id,
                "signal_id": sid,
                "algo": algo,
                "trigger_ts_event": lat.ts_event,
                "trigger_ts_recv": lat.ts_recv,
                "local_recv_ns": local_recv_ns,
                "emit_ns": emit_ns,
                "decision_latency_ns": lat.decision_latency_ns,
                "feed_latency_ns": lat.feed_latency_ns,
                "exchange_to_signal_ns": lat.exchange_to_signal_ns,
                "window_close_latency_ns": emit_ns - (int(wend) + grace_ns),
            }
        )
    return rows


def latency_frame(latency: list[dict], day: dt.date) -> pl.DataFrame:
    lat = pl.DataFrame(latency).with_columns(pl.lit(day).alias("date"))
    return lat.select(list(TABLES["signal_latency"].schema))


def mark_incomplete(w: pl.DataFrame, gaps: list[Gap]) -> pl.DataFrame:
    """``complete`` is False for a window that overlaps a gap neither replayed nor backfilled."""
    bad = [
        (g.start_ns, g.end_ns or 2**63 - 1)  # an open gap runs to the end of time
        for g in gaps
        if g.status not in ("recovered_replay", "backfilled")
    ]
    complete = pl.lit(True)
    for a, b in bad:
        overlaps = (pl.col("window_start") < b) & (pl.col("window_end") > a)
        complete = complete & ~overlaps
    return w.with_columns(complete.alias("complete"))


def signal_rows(sig: pl.DataFrame, config_version: str, origin: str, run_id: str) -> pl.DataFrame:
    return sig.with_columns(
        pl.lit(config_version).alias("config_version"),
        pl.lit(dt.datetime.now(dt.UTC)).alias("detected_at"),
        pl.lit(origin).alias("origin"),
        pl.lit(live_source_sha(run_id)).alias("source_sha"),
    ).select(list(TABLES["signals"].schema))


def _utc(ns: int | None) -> dt.datetime | None:
    return ns_to_utc(ns) if ns else None


def gap_rows(gaps: list[Gap], run_id: str, day: dt.date, origin: str) -> pl.DataFrame:
    rows = [
        {
            "date": day,
            "run_id": run_id,
            "gap_id": g.gap_id,
            "start_ns": g.start_ns,
            "end_ns": g.end_ns,
            "disconnected_at": _utc(g.disconnected_wall_ns),
            "reconnected_at": _utc(g.reconnected_wall_ns),
            "reason": g.reason,
            "status": g.status,
            "replay_start_ns": g.replay_start_ns,
            "duplicates_removed": g.duplicates_removed,
            "attempts": g.attempts,
            "backfill_records": g.backfill_records,
            "detail": g.detail,
            "origin": origin,
            "source_sha": live_source_sha(run_id),
        }
        for g in gaps
    ]
    return pl.DataFrame(rows, schema=TABLES["gaps"].pl_schema)


def incident_rows(incidents: list[Incident], run_id: str, day: dt.date) -> pl.DataFrame:
    rows = [
        {
            "date": day,
            "run_id": run_id,
            "kind": i.kind,
            "state": i.state,
            "severity": i.severity,
            "opened_at": _utc(i.opened_ns),
            "resolved_at": _utc(i.resolved_ns),
            "detail": i.detail,
        }
        for i in incidents
    ]
    return pl.DataFrame(rows, schema=TABLES["incidents"].pl_schema)


def engine_run_row(
    day: dt.date,
    engine: FlowEngine,
    raw_names: list[str],
    windows: int,
    algos: tuple[str, ...],
    origin: str,
    sha: str,
) -> pl.DataFrame:
    """The date's ``engine_runs`` row, as batch detection writes it (no wall time: streamed)."""
    stats = engine.books.stats()
    return pl.DataFrame(
        {
            "date": [day],
            "run_at": [dt.datetime.now(dt.UTC)],
            "engine_version": [ENGINE_VERSION],
            "source_files": [json.dumps(raw_names)],
            "records": [engine.stats.records],
            "option_trades": [engine.stats.option_trades],
            "underlying_trades": [engine.stats.underlying_trades],
            "late_trades": [engine.windows.late_trades.height],
            "windows": [windows],
            "hidden_fills": [int(stats.get("hidden_fills", 0))],
            "book_anomalies": [json.dumps(stats.get("anomalies", {}), sort_keys=True)],
            "seconds": [0.0],
            "detectors": [",".join(algos)],
            "origin": [origin],
            "source_sha": [sha],
        }
    )
