"""One trade date of a live run, as a state machine: fed batch by batch, flushed to the lake
every few seconds (one transaction per flush, then a checkpoint), finished at the date's close
(last flush, capture ingested, the day's micro-batch files consolidated into the files batch
detection writes, signals labelled and traded), or left checkpointed for a restart.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from ifd_core.analysis.flow_engine import FlowEngine
from ifd_core.calendar import trade_date_bounds
from ifd_core.marketdata.dbn_stream import ts_recv_of
from ifd_core.marketdata.live_source import Gap, LiveParams, LiveSource, Stall
from ifd_core.marketdata.record_source import RecordBatch
from ifd_core.ops.liveness import FeedLiveness, Incident
from ifd_core.ops.resilience import BreakerOpen
from ifd_core.settings import Settings
from ifd_core.trading.labels import BarrierParams
from ifd_core.units import NS
from jobs.detect import engine_params, label_day, raw_files_for, rollup, source_key, window_rows
from jobs.live.capture import Capture
from jobs.live.checkpoint import checkpoint_path, gaps_from, read_checkpoint, write_checkpoint
from jobs.live.desk import RealTimeDesk
from jobs.live.guard import LiveGuard
from jobs.live.rows import (
    LIVE_KEY,
    engine_run_row,
    flush_bucket,
    gap_rows,
    incident_rows,
    latency_frame,
    latency_rows,
    live_source_sha,
    mark_incomplete,
    signal_rows,
)
from warehouse.lake import Lake
from warehouse.tables import TABLES

log = logging.getLogger(__name__)


class WarehouseUnavailable(RuntimeError):
    """The lake could not take the date's outputs; the capture keeps them for a rerun."""


@dataclass
class DayResult:
    """What one streamed date came to (the run summary lists one per date it touched)."""

    day: dt.date
    records: int = 0
    windows: int = 0
    signals: int = 0
    incomplete_windows: int = 0
    finalized: bool = False
    ingested: str = ""
    orders: dict[str, int] = field(default_factory=dict)
    rollout: str = ""
    bytes: int = 0  # record bytes received for the date (what live usage is billed on)
    live_cost_usd: float | None = None  # booked this run; None when no per-GB price is set

    def to_row(self) -> dict:
        """What ``ifd live --json`` and the flow's table artifact show of a streamed date."""
        return {
            "date": self.day.isoformat(),
            "records": self.records,
            "windows": self.windows,
            "incomplete_windows": self.incomplete_windows,
            "signals": self.signals,
            "finalized": self.finalized,
            "orders": self.orders,
            "rollout": self.rollout,
            "bytes": self.bytes,
            "live_cost_usd": self.live_cost_usd,
        }


@dataclass(frozen=True)
class RunContext:
    """What every date of one live run shares: the lake and settings, the run's guard and
    options, the folder of its captures and checkpoints, how it reports, and its stop signal."""

    lake: Lake
    settings: Settings
    guard: LiveGuard
    live_dir: Path
    algos: tuple[str, ...]
    validate: bool  # the mbo suite on every micro-batch
    trade: bool  # paper-trade the routed signals at the end of each date
    progress: Callable[[str], None]
    stop: threading.Event


class DayState:
    """Everything of one trade date's live run: engine, pending outputs, capture, checkpoint.

    The runner opens it (wiring its engine and desk); it is fed batch by batch, flushed every few
    seconds, and finished at the date's close or left checkpointed for a restart.
    """

    def __init__(self, run: RunContext, day: dt.date, run_id: str, ckpt: dict | None) -> None:
        self.run = run
        self.lake = run.lake
        self.settings = run.settings
        self.day = day
        self.run_id = run_id
        self.ckpt_path = checkpoint_path(run.live_dir, day)
        self.seq = int(ckpt["flush_seq"]) if ckpt else 0
        self.origin = ckpt.get("origin", "live") if ckpt else "live"
        self.window_params = engine_params(self.settings)[0]
        self.bounds = trade_date_bounds(day)
        self.deadline_ns: int | None = None  # wall-clock end of a date streamed in real time
        self.capture_path = run.live_dir / day.isoformat() / f"capture-{run_id}.dbn"
        self._monitor_thread: threading.Thread | None = None
        self.engine: FlowEngine | None = None
        self.capture: Capture | None = None
        self.result = DayResult(day)
        self.records_fed = 0
        self.data_now = 0  # exchange time (ns) of the latest record fed
        self.write_error: str | None = None  # the last deferred flush's reason, until one lands
        self._windows: list[pl.DataFrame] = []
        self._signals: list[pl.DataFrame] = []
        self._latency: list[dict] = []
        self._mbo: list[np.ndarray] = []
        self._gaps: list[Gap] = []
        self.all_gaps: list[Gap] = gaps_from(ckpt)
        self._incidents: list[Incident] = []
        self._lock = threading.Lock()
        self.incident_count = 0
        self.decision_latencies: list[int] = []
        self.liveness = FeedLiveness(stale_after_s=self.settings.live.stale_after_s)
        self._last_flush = time.monotonic()
        self._since_flush = 0
        self._monitor_stop = threading.Event()
        self._ticks: pl.DataFrame | None = None
        self._defs: list[np.ndarray] = []
        self._defs_seen = -1
        self.desk: RealTimeDesk | None = None  # when the run trades in real time

    # -- feeding
    def replay_capture(self, capture: Capture, source: LiveSource) -> int:
        """Rebuild the engine from the capture; outputs of records already checkpointed are
        dropped (they are in the lake), the rest are kept. Returns the records replayed."""
        self.capture = capture
        done = int(read_checkpoint(self.ckpt_path)["records_fed"])
        n = 0
        last: RecordBatch | None = None
        replayed: list[pl.DataFrame] = []  # signals of the day so far: their episodes are done
        for batch in capture.read():
            cut = min(max(done - n, 0), len(batch))  # records of this batch already written
            if cut:
                self._remember(batch)
                head = RecordBatch(batch.schema, batch.records[:cut], batch.origin)
                replayed.append(self.engine.process(head).signals)
            if cut < len(batch):
                tail = RecordBatch(batch.schema, batch.records[cut:], batch.origin)
                self._remember(tail)
                out = self.engine.process(tail)
                replayed.append(out.signals)
                self._collect(tail, out, None)
            n += len(batch)
            self.records_fed = n
            self.result.bytes += batch.records.nbytes
            self._advance_clock(batch)
            last = batch
        if last is not None:
            ts = ts_recv_of(last)
            at = np.flatnonzero(ts == ts[-1])
            seam = [last.records[i : i + 1].tobytes() for i in at.tolist()]
            source.resume_after(int(ts[-1]), int(last.records["ts_event"][-1]), seam)
        self.result.records = n
        if self.desk is not None:  # one decision per episode across a restart too
            self.desk.note_past(pl.concat(replayed) if replayed else pl.DataFrame())
        # Everything regenerated from the capture beyond the checkpoint is written now, under
        # the next sequence number: a superset of anything a crash left half-written.
        self.flush(force=True)
        return n

    def _remember(self, batch: RecordBatch) -> None:
        if batch.schema == "definition":
            self._defs.append(batch.records)

    def ensure_capture(self, params: LiveParams, origin: str) -> None:
        """The capture file starts with this date's first record (its origin known by then)."""
        if self.capture is None:
            self.origin = origin
            self.capture = Capture(
                self.capture_path, params.dataset, self.bounds[0], origin == "synthetic"
            )

    def feed(self, batch: RecordBatch, source: LiveSource) -> None:
        self.capture.write(batch)
        self._remember(batch)
        out = self.engine.process(batch)
        self._collect(batch, out, source.last_receive_ns)
        if self.desk is not None:
            self._trade(out.signals, self.engine.last_option_trades)
        self.records_fed += len(batch)
        self.result.records += len(batch)
        self.result.bytes += batch.records.nbytes
        self._since_flush += len(batch)
        now = time.time_ns()
        self.liveness.on_record(now)
        self._advance_clock(batch)
        self.run.guard.after_batch(self.liveness, self.data_now, now)
        self.maybe_flush()

    def _trade(self, signals: pl.DataFrame, trades: pl.DataFrame) -> None:
        self._guarded_trading(self.desk.on_batch, signals, trades, self.data_now)

    def close_trading(self, why: str, late: pl.DataFrame | None = None) -> None:
        end = self.bounds[1] if why == "session_end" else max(self.data_now, self.bounds[0])
        late = late if late is not None else pl.DataFrame()
        self._guarded_trading(self.desk.close, end, late, why)

    def _guarded_trading(self, step, *args) -> None:
        """A trading failure is a critical incident, never the end of the capture or of the
        date's flush (the data must land whatever the broker does)."""
        try:
            step(*args)
        except Exception as exc:  # noqa: BLE001 - recorded as a critical incident, said
            self._trading_incident(exc)

    def _trading_incident(self, exc: Exception) -> None:
        log.error("real-time trading failed", exc_info=exc)
        self.run.progress(f"{self.day}: trading error: {exc}")
        what = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self._incidents.append(
                Incident("trading_error", "open", time.time_ns(), None, what, "critical")
            )

    def _advance_clock(self, batch: RecordBatch) -> None:
        """Exchange time is the market's clock (rollback cutoffs, error windows): a replayed
        capture must move it as the live stream did."""
        if batch.schema == "mbo" and len(batch):
            self.data_now = max(self.data_now, int(batch.records["ts_event"].max()))

    def _collect(self, batch: RecordBatch, out, local_recv_ns: int | None) -> None:
        emit_ns = time.time_ns()
        if batch.schema == "mbo":
            self._mbo.append(batch.records)
        if out.windows.height:
            self._windows.append(out.windows)
        if out.signals.height:
            self._signals.append(out.signals)
            if local_recv_ns:
                grace_ns = int(self.window_params.grace_s * NS)
                rows = latency_rows(
                    batch, out.signals, local_recv_ns, emit_ns, self.run_id, grace_ns
                )
                self._latency += rows
                self.run.guard.on_signals_latency(rows)

    def maybe_flush(self) -> None:
        lv = self.settings.live
        if (
            self._since_flush >= lv.flush_every_records
            or time.monotonic() - self._last_flush >= lv.flush_every_s
        ):
            self.flush()

    # -- gaps, stalls, incidents (called from the feed's threads: lock)
    def on_gap(self, gap: Gap) -> None:
        with self._lock:
            self._gaps.append(gap)
            self.all_gaps.append(gap)
            if gap.status in ("unrecovered", "skipped_budget"):
                self._incidents.append(
                    Incident(
                        kind="gap_unrecovered",
                        state="open",
                        opened_ns=gap.disconnected_wall_ns,
                        resolved_ns=None,
                        detail=f"gap {gap.gap_id} [{gap.start_ns}, {gap.end_ns}): {gap.detail}",
                        severity="critical",
                    )
                )

    def on_stall(self, stall: Stall) -> None:
        with self._lock:
            self._incidents.extend(
                self.liveness.on_stall(stall.start_wall_ns, stall.end_wall_ns, stall.buffered_bytes)
            )

    def _monitor(self) -> None:
        from ifd_core.calendar import SessionPolicy, period_at

        policy = SessionPolicy(self.settings.live.session_policy)
        while not self._monitor_stop.wait(1.0):
            now = time.time_ns()
            # In real time the exchange calendar says when silence matters; a replayed date is
            # "in session" throughout (a paced replay still sends heartbeats).
            realtime = self.deadline_ns is not None
            in_session = period_at(now, policy) is not None if realtime else True
            found = self.liveness.check(now, in_session)
            if found:
                with self._lock:
                    self._incidents.extend(found)

    def start_monitor(self) -> None:
        self._monitor_thread = threading.Thread(
            target=self._monitor, daemon=True, name=f"ifd-liveness-{self.day}"
        )
        self._monitor_thread.start()

    def stop_monitor(self) -> None:
        self._monitor_stop.set()
        if self._monitor_thread is not None:
            self._monitor_thread.join(timeout=5)

    # -- writing
    def flush(self, force: bool = False) -> bool:
        """Write the pending outputs under the next key and checkpoint; True when written.

        The warehouse writer is an outside dependency behind its breaker (``warehouse:lake``).
        When a write fails or the breaker is open, the outputs stay pending and are written at
        the next flush under the same key (a half-written flush is overwritten, never doubled),
        and the checkpoint does not advance: the capture holds every record, so even a crash in
        between loses nothing. Not retried in place: the stream must keep being read.
        """
        if self.capture is not None:
            self.capture.sync()  # the capture first: a restart replays it
        with self._lock:
            gaps, self._gaps = self._gaps, []
            incidents, self._incidents = self._incidents, []
        parts = (self._windows, self._signals, self._latency, self._mbo)
        self._windows, self._signals, self._latency, self._mbo = [], [], [], []
        if not any([*parts, gaps, incidents]) and not force:
            self._last_flush = time.monotonic()
            return True
        key = f"{live_source_sha(self.run_id)}-{self.seq + 1:06d}"
        try:
            done = self.run.guard.lake_breaker.call(self._write, *parts, gaps, incidents, key)
        except (OSError, BreakerOpen) as exc:
            windows, signals, latency, mbo = parts
            self._windows, self._signals = windows + self._windows, signals + self._signals
            self._latency, self._mbo = latency + self._latency, mbo + self._mbo
            with self._lock:
                self._gaps[:0], self._incidents[:0] = gaps, incidents
            self.write_error = str(exc)
            self.run.progress(f"{self.day}: warehouse write deferred ({exc}); kept pending")
            log.warning("live flush %s deferred: %s", key, exc)
            self._last_flush = time.monotonic()
            return False
        self.write_error = None
        self.seq += 1
        windows, incomplete, signals, latencies, n_incidents = done
        self.result.windows += windows
        self.result.incomplete_windows += incomplete
        self.result.signals += signals
        self.decision_latencies += latencies
        self.incident_count += n_incidents
        self.run.guard.on_flush(self.data_now)
        self.checkpoint(finalized=False)
        self._last_flush = time.monotonic()
        self._since_flush = 0
        return True

    def _write(self, windows, signals, latency, mbo, gaps, incidents, key: str):
        """Every table of one flush under ``key``, in one lake commit (all or nothing); returns
        the counts to add once all landed."""
        with self.lake.transaction(f"live flush {key}"):
            return self._write_tables(windows, signals, latency, mbo, gaps, incidents, key)

    def _write_tables(self, windows, signals, latency, mbo, gaps, incidents, key: str):
        lake, day = self.lake, self.day
        bucket = flush_bucket()
        n_windows = n_incomplete = n_signals = 0
        if windows:
            w = pl.concat(windows, how="diagonal_relaxed").filter(pl.col("date") == day)
            w = mark_incomplete(w, self.all_gaps)
            n_windows, n_incomplete = w.height, int((~w["complete"]).sum())
            rows = window_rows(w, live_source_sha(self.run_id), self.origin)
            lake.write("pressure_windows", rows, key, bucket)
        if signals:
            s = pl.concat(signals).filter(pl.col("date") == day)
            s = signal_rows(s, self.settings.config_version(), self.origin, self.run_id)
            n_signals = s.height
            lake.write("signals", s, key, bucket)
        if latency:
            lake.write("signal_latency", latency_frame(latency, day), key, bucket)
        incidents = list(incidents)
        if mbo and self.run.validate:
            incidents += self._validate(np.concatenate(mbo), key)
        if gaps:
            lake.write("gaps", gap_rows(gaps, self.run_id, day, self.origin), key, bucket)
        if incidents:
            lake.write("incidents", incident_rows(incidents, self.run_id, day), key, bucket)
        if self.desk is not None:  # the ledger so far (a snapshot under this process's key)
            self.desk.origin = self.origin
            try:
                self.desk.write()
            except OSError:
                raise  # the lake: deferred with the rest of the flush
            except Exception as exc:  # noqa: BLE001 - a ledger bug must not stop the capture
                self._trading_incident(exc)
        lat_ns = [r["decision_latency_ns"] for r in latency]
        return n_windows, n_incomplete, n_signals, lat_ns, len(incidents)

    def _validate(self, mbo: np.ndarray, key: str) -> list[Incident]:
        """The mbo suite on the micro-batch; failures become incidents (the data was already
        received: it cannot be refused, only flagged)."""
        from expectations.runner import validate
        from ifd_core.marketdata.frames import instruments_frame, mbo_frame
        from warehouse.ingest import KnownInstruments

        if self._ticks is None or len(self._defs) != self._defs_seen:
            extra = instruments_frame(np.concatenate(self._defs)) if self._defs else None
            self._ticks = KnownInstruments(self.lake).ticks(extra=extra)
            self._defs_seen = len(self._defs)
        df = mbo_frame(mbo)
        v = validate("mbo", df, self._ticks, self.run_id, key)
        self.lake.write(
            "dq_results",
            pl.DataFrame(v.rows).with_columns(pl.lit(self.day).alias("date")),
            key,
            flush_bucket(),
        )
        if v.success:
            return []
        now = time.time_ns()
        return [Incident("dq_failed", "open", now, None, f"{key}: {v.reason}", "warning")]

    def checkpoint(self, finalized: bool) -> None:
        write_checkpoint(
            self.ckpt_path,
            {
                "day": self.day.isoformat(),
                "run_id": self.run_id,
                "capture": str(self.capture.path) if self.capture else None,
                "records_fed": self.records_fed,
                "flush_seq": self.seq,
                "origin": self.origin,
                "finalized": finalized,
                "rollout": self.run.guard.checkpoint(),
                "gaps": [g.__dict__ for g in self.all_gaps],
                "written_at": dt.datetime.now(dt.UTC).isoformat(),
            },
        )

    # -- end of the date
    def finish(self, capture: Capture) -> None:
        out = self.engine.finish()
        if self.desk is not None:
            self.close_trading("session_end", out.signals)
        self._collect(RecordBatch("end", np.empty(0, np.uint8), self.origin), out, None)
        if not self._final_flush():
            raise WarehouseUnavailable(
                f"{self.day}: the date's last outputs could not be written to the warehouse "
                f"({self.write_error}); nothing is lost: the capture and checkpoint are kept, "
                "run the same command again once the warehouse is writable"
            )
        lake, day = self.lake, self.day
        from ifd_core.marketdata.dbn_files import DecodeLimits
        from warehouse.ingest import ingest_files

        # Always: ingestion adds only the records the lake lacks (a Historical download of
        # the same day loaded earlier holds most of them; re-running this adds nothing).
        target = capture.compress(
            capture.path.with_name(f"glbx-mdp3-{day:%Y%m%d}.live-{self.run_id}.dbn.zst")
        )
        limits = DecodeLimits.from_settings(self.settings)
        report = ingest_files([target], lake, origin=self.origin, limits=limits)
        self.result.ingested = "; ".join(f.reason or f.status for f in report.files)
        if not report.ok:  # said plainly: the day's signals stand, the raw data did not load
            self.run.progress(f"{day}: the capture was not ingested: {self.result.ingested}")
        raw = raw_files_for(lake, day)
        with lake.transaction(f"live consolidate {day}"):
            self._consolidate(raw)
        guard = self.run.guard
        if self.desk is not None:  # traded in real time; now with the day's labels
            self.desk.write()
            self.result.orders = self.desk.entries_sent()
        elif self.run.trade and raw:
            from ifd_core.marketdata.record_source import FileReplaySource

            batches = list(FileReplaySource(raw, batch_records=500_000).batches())
            signals = lake.scan("signals").filter(pl.col("date") == day).collect()
            placed = guard.trade_day(
                day, batches, signals, self.bounds[1], self.origin, self.run.algos
            )
            self.result.orders = placed
            self.run.progress(f"{day}: paper orders placed {placed}")
        self.result.rollout = guard.review(day).to_stage
        self.result.finalized = True
        self.checkpoint(finalized=True)
        capture.close()

    def _final_flush(self) -> bool:
        """The date's last flush waits out a warehouse outage for up to the breaker's longest
        cool-down (its probe times when open), because giving up here means a rerun."""
        res = self.settings.resilience
        deadline = time.monotonic() + res.breaker.cooldown_max_s
        while not self.flush(force=True):
            retry_at = self.run.guard.lake_breaker.snapshot()["retry_at"]
            wait = res.retry.base_s
            if retry_at is not None:
                wait = max((retry_at - dt.datetime.now(dt.UTC)).total_seconds(), 0.0) + 0.05
            if time.monotonic() + wait > deadline:
                return False
            self.run.progress(f"{self.day}: waiting {wait:.1f} s for the warehouse")
            if self.run.stop.wait(wait):
                return self.flush(force=True)
        return True

    def _consolidate(self, raw: list[Path]) -> None:
        """The day's live micro-batch files become the files batch detection writes."""
        lake, day = self.lake, self.day
        sha = source_key(raw) if raw else live_source_sha(self.run_id)

        def live_rows(table: str) -> pl.DataFrame:
            files = [f for f in lake.files(table, day) if f.name.startswith(LIVE_KEY)]
            if not files:
                return TABLES[table].empty()
            return pl.read_parquet([str(f) for f in files])

        w = live_rows("pressure_windows").with_columns(pl.lit(sha).alias("source_sha"))
        s = live_rows("signals").with_columns(pl.lit(sha).alias("source_sha"))
        lake.replace_day("pressure_windows", day, w, "windows")
        lake.replace_day("option_flow_daily", day, rollup(w) if w.height else w.head(0), "flow")
        algos = self.run.algos
        for algo in algos:
            lake.replace_day("signals", day, s.filter(pl.col("algo") == algo), algo)
        lake.remove(
            f
            for table in ("pressure_windows", "signals")
            for f in lake.files(table, day)
            if f.name.startswith(LIVE_KEY)
        )
        run = engine_run_row(
            day, self.engine, [p.name for p in raw], w.height, algos, self.origin, sha
        )
        lake.replace_day("engine_runs", day, run, "-".join(["engine", *algos]))
        if raw:
            label_day(lake, day, s, BarrierParams.from_settings(self.settings), algos=algos)
