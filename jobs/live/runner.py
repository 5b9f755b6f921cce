"""The live run: the Live feed through the FlowEngine into the lake, in micro-batches, restartable.

``LiveRunner.run`` is what ``ifd live`` and the Prefect ``live_stream`` flow call. Two modes:
a given date (``--date``: intraday replay from the start of its session, so the books are whole
even when started mid-session; done at its close), or following the feed from where it is (no
date: each record goes to its trade date by the lake's rule, a date is done when the stream
passes its close, or in real time when the clock passes it plus a grace). For each date it:

* subscribes to the NQ option chain (every option root whose underlying is an NQ future: the
  configured roots plus those the stored definitions name), their definitions and statistics,
  and the NQ futures;
* feeds every batch to the same FlowEngine and detectors ``ifd detect`` uses, with the same
  baselines (the 20 sessions before the date);
* writes the stream it consumed, duplicates removed, to a capture DBN file, then every few
  seconds appends the closed windows, the signals, their latency, the data-quality results of
  the micro-batch, gaps and incidents to the lake (new files, atomic renames: DESIGN.md's
  warehouse rules; this run is the only writer of its files), and then checkpoints;
* at the end of the date, flushes the engine, ingests the capture (when the date has no raw
  files yet) and consolidates the day's files into the same files batch detection writes, then
  labels the signals.

A restart of the same date resumes from the checkpoint: the capture is replayed through a fresh
engine (outputs already written are not written again), then the feed resumes from the capture's
last record, so nothing is lost or counted twice. SIGTERM (``stop``) flushes and checkpoints.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from ifd_core.analysis.flow_engine import FlowEngine
from ifd_core.broker.base import Broker, OrderRefused
from ifd_core.calendar import et_to_ns, previous_trading_day, trade_date_of
from ifd_core.marketdata.dbn_files import SYNTHETIC_MARKER
from ifd_core.marketdata.dbn_stream import parse_records, ts_recv_of
from ifd_core.marketdata.live_source import (
    Gap,
    LiveFeedError,
    LiveParams,
    LiveSource,
    Stall,
    Subscription,
)
from ifd_core.marketdata.record_source import RecordBatch
from ifd_core.ops.liveness import FeedLiveness, Incident, SignalLatency
from ifd_core.ops.resilience import BreakerOpen
from ifd_core.settings import Settings
from ifd_core.trading.labels import BarrierParams
from ifd_core.trading.rollout import Decision
from ifd_core.units import NS, ns_to_utc
from jobs.detect import (
    ALGOS,
    ENGINE_VERSION,
    label_day,
    make_detectors,
    raw_files_for,
    refresh_baselines,
    rollup,
    source_key,
    window_rows,
)
from jobs.live.guard import LiveGuard
from warehouse.lake import Lake
from warehouse.migrations import ensure_migrated
from warehouse.ops_events import AlertStore
from warehouse.tables import TABLES

log = logging.getLogger(__name__)


class BrokerNotReady(RuntimeError):
    """Real-time trading was asked for and the broker refused or cannot be reached."""

    def __init__(self, message: str, live_refused: bool = False) -> None:
        super().__init__(message)
        self.live_refused = live_refused  # a real-money account without consent


class WarehouseUnavailable(RuntimeError):
    """The lake could not take the date's outputs; the capture keeps them for a rerun."""


LIVE_KEY = "live-"
SESSION_GRACE_NS = 60 * NS
RECONNECT_AFTER_END_S = 5.0  # late records after a real-time session's close still count
# CME product codes of the options on NQ futures: quarterly/serial (NQ), end-of-month (QNE) and
# the weeklies by weekday and week of month. Stored definitions add any others.
NQ_OPTION_ROOTS = (
    "NQ",
    "QNE",
    *[f"QN{w}" for w in range(1, 6)],
    *[f"Q{w}{d}" for d in "ABCD" for w in range(1, 6)],
)


@dataclass
class LiveOptions:
    host: str
    port: int
    day: dt.date | None = None
    exit_on_end: bool = False
    algos: tuple[str, ...] = ALGOS
    validate: bool = True
    trade: bool = True  # trade the routed signals (paper: at the end of each date; ib: live)
    confirm_live: bool = False  # the operator's consent to a real-money IB account


@dataclass
class DayResult:
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


@dataclass
class LiveSummary:
    run_id: str
    days: list[DayResult] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    incidents: int = 0
    ended: bool = False
    stopped: bool = False
    resumed_from: int = 0  # records replayed from the capture after a restart
    late_records: int = 0  # records of a date that arrived after it was finished (counted)
    decision_latency_ns: list[int] = field(default_factory=list)
    # The emergency stop's reason when it was on as the run started, resumed, reconnected or
    # ended (every new entry refused meanwhile); None when it was not.
    halted: str | None = None


def session_bounds(day: dt.date) -> tuple[int, int]:
    """[start, end) in ns of the records of trade date ``day``: from the previous session's
    17:00 New York close (the pre-open belongs to the next date) to this one's."""
    return et_to_ns(previous_trading_day(day), 17), et_to_ns(day, 17)


def subscriptions_for(lake: Lake, settings: Settings) -> list[Subscription]:
    """Definitions, statistics and MBO for every NQ option root and the NQ futures."""
    roots = set(NQ_OPTION_ROOTS) | set(settings.live.option_roots)
    known = (
        lake.scan("instruments")
        .filter(pl.col("instrument_class").is_in(["C", "P"]))
        .select("asset", "underlying_id")
        .unique()
        .collect()
    )
    futures = (
        lake.scan("instruments")
        .filter(
            (pl.col("instrument_class") == "F") & (pl.col("asset") == settings.live.future_root)
        )
        .select("instrument_id")
        .unique()
        .collect()
    )
    fut_ids = set(futures["instrument_id"].to_list())
    roots |= {a for a, u in known.iter_rows() if u in fut_ids and a}
    symbols = tuple(sorted(f"{r}.OPT" for r in roots)) + (f"{settings.live.future_root}.FUT",)
    return [Subscription(s, symbols, "parent") for s in ("definition", "statistics", "mbo")]


def live_params(settings: Settings, host: str, port: int) -> LiveParams:
    key = settings.databento.api_key.get_secret_value()
    if not key:
        raise ValueError(
            "no Databento API key: set IFD_DATABENTO__API_KEY (the replay gateway accepts the "
            "key in the settings it was started with)"
        )
    lv = settings.live
    return LiveParams(
        host=host,
        port=port,
        key=key,
        dataset=settings.databento.dataset,
        heartbeat_interval_s=lv.heartbeat_interval_s,
        reconnect_max_attempts=lv.reconnect_max_attempts,
        reconnect_base_delay_s=lv.reconnect_base_delay_s,
        reconnect_max_delay_s=lv.reconnect_max_delay_s,
        replay_margin_s=lv.replay_margin_s,
        max_buffer_bytes=lv.max_buffer_bytes,
        raw_tap=lv.raw_tap,
    )


# ---------------------------------------------------------------------- capture + checkpoint
class Capture:
    """The consumed stream of one trade date as an uncompressed DBN file (header, then records
    appended in stream order). Uncompressed so a crash leaves at most a cut-off last record,
    which ``open`` trims."""

    def __init__(self, path: Path, dataset: str, start_ns: int, synthetic: bool) -> None:
        import databento_dbn as dbn

        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            symbols = ["NQ.OPT"] + ([SYNTHETIC_MARKER] if synthetic else [])
            meta = dbn.Metadata(
                dataset=dataset,
                start=start_ns,
                stype_in=dbn.SType.PARENT,
                stype_out=dbn.SType.INSTRUMENT_ID,
                schema=None,
                symbols=symbols,
                partial=[],
                not_found=[],
                mappings=[],
            )
            path.write_bytes(bytes(meta))
        self._trim()
        self._fh = path.open("ab")
        self.records = self._count()

    def _header_len(self, data: bytes) -> int:
        return 8 + int.from_bytes(data[4:8], "little")

    def _trim(self) -> None:
        data = self.path.read_bytes()
        body = data[self._header_len(data) :]
        parsed_len = parse_records(body, "capture").consumed
        if parsed_len != len(body):
            with self.path.open("r+b") as fh:
                fh.truncate(self._header_len(data) + parsed_len)

    def _count(self) -> int:
        return sum(len(b) for b in self.read())

    def read(self) -> list[RecordBatch]:
        data = self.path.read_bytes()
        return parse_records(data[self._header_len(data) :], "capture").batches

    def write(self, batch: RecordBatch) -> None:
        self._fh.write(batch.records.tobytes())
        self.records += len(batch)

    def sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def compress(self, target: Path) -> Path:
        import zstandard

        self.sync()
        tmp = target.with_suffix(target.suffix + ".inprogress")
        with self.path.open("rb") as src, tmp.open("wb") as dst:
            zstandard.ZstdCompressor(level=3).copy_stream(src, dst)
        os.replace(tmp, target)
        return target


def _write_json_atomic(path: Path, value: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1))
    os.replace(tmp, path)


# ---------------------------------------------------------------------- the run
class LiveRunner:
    def __init__(
        self,
        lake: Lake,
        settings: Settings,
        options: LiveOptions,
        progress: Callable[[str], None] | None = None,
        on_rollback: Callable[[Decision, int], None] | None = None,
        broker: Broker | None = None,
    ) -> None:
        self.lake = lake
        # Real-time trading: a broker given here, or IB when settings say execution.broker=ib.
        self.broker = broker
        self.broker_breaker = None
        self.process_tag = f"p{time.time_ns() // 1_000_000:x}"
        self.on_rollback = on_rollback
        self.settings = settings
        self.options = options
        self.progress = progress or (lambda msg: None)
        self._stop = threading.Event()
        self._source: LiveSource | None = None
        self._day: _DayState | None = None
        self._closed: set[dt.date] = set()  # dates finished by this run: never reopened
        self._orphan_gaps: list[Gap] = []
        self.live_dir = lake.root / "live"
        self.guard: LiveGuard | None = None

    def stop(self) -> None:
        """Flush, checkpoint and return as soon as the records already received are processed."""
        self._stop.set()
        if self._source is not None:
            self._source.stop()

    # ------------------------------------------------------------------ main loop
    def run(self) -> LiveSummary:
        """Stream until the date is done (``--date``), the gateway ends the session
        (``exit_on_end``), or ``stop``. Without a date the run follows the feed: each record
        belongs to its trade date by the lake's rule, and a date is finished when the stream
        passes its close (or, in real time, when its close plus a grace has passed)."""
        ensure_migrated(self.lake)
        if self.guard is None:  # before the first connection: the feed's breaker lives here
            self.guard = LiveGuard(self.lake, self.settings, "", self.progress)
            self.guard.on_rollback = self.on_rollback
        self._connect_broker()
        params = live_params(self.settings, self.options.host, self.options.port)
        summary = LiveSummary(run_id="")
        when = "resumes" if self._resumes() else "starts"
        while True:
            self._warn_if_halted(summary, when)
            when = "reconnects"
            ended = self._stream(params, summary)
            summary.ended = ended
            if self._stop.is_set() or self.options.day is not None:
                break
            if ended and self.options.exit_on_end:
                break
            if not ended:
                break  # the source returned without an end: it was stopped
            self.progress("the gateway ended the session; reconnecting for the next one")
            if self._stop.wait(RECONNECT_AFTER_END_S):
                break
        summary.stopped = self._stop.is_set()
        self._warn_if_halted(summary, "ends")
        return summary

    def _resumes(self) -> bool:
        """Whether this run resumes an unfinished checkpointed date."""
        day = self.options.day or _unfinished_day(self.live_dir)
        try:
            ckpt = json.loads((self.live_dir / f"checkpoint-{day}.json").read_text())
            return day is not None and not ckpt.get("finalized")
        except (OSError, ValueError, AttributeError):
            return False

    def _warn_if_halted(self, summary: LiveSummary, when: str) -> None:
        """A run that starts, resumes, reconnects or ends under the emergency stop says so."""
        from ifd_core.trading.halt import EmergencyStop

        why = EmergencyStop(self.settings.data_dir).reason()
        if why is None:
            return
        summary.halted = summary.halted or why
        msg = f"live run {when} while the emergency stop is on: new entries are refused ({why})"
        log.warning(msg)
        self.progress("WARNING: " + msg)

    def _connect_broker(self) -> None:
        """Before the first record: a broker that cannot be reached, or a live account without
        consent, stops the run here rather than at the first signal."""
        if not self.options.trade or self.broker_breaker is not None:
            return
        if self.broker is None:
            if self.settings.execution.broker != "ib":
                return  # paper: the end-of-date replay against the MBO book
            from ifd_core.broker.factory import broker_from_settings

            consent = self.options.confirm_live
            self.broker = broker_from_settings(self.settings, confirm_live=consent)
        from ifd_core.broker.ib_broker import LiveTradingRefused

        try:
            rec = self.broker.connect()
        except OrderRefused as exc:
            live = isinstance(exc, LiveTradingRefused)
            raise BrokerNotReady(str(exc), live_refused=live) from None
        self.broker_breaker = self.guard.registry.get(
            f"broker:{self.broker.name}", exclude=(OrderRefused,)
        )
        mode = getattr(self.broker, "mode", self.broker.name)
        self.progress(
            f"broker {self.broker.name} ({mode}) account(s) {', '.join(rec.accounts)}: "
            f"{len(rec.open_orders)} open IFD orders, {len(rec.positions)} positions"
        )
        if rec.unknown_orders:
            self.progress("not placed by IFD (left alone): " + "; ".join(rec.unknown_orders))

    def _stream(self, params: LiveParams, summary: LiveSummary) -> bool:
        """One LiveSource from the date's start (date mode) or from where the feed is (follow
        mode, resuming an unfinished checkpoint first); returns whether the feed ended."""
        fixed = self.options.day
        subs = subscriptions_for(self.lake, self.settings)
        source = LiveSource(
            params,
            subs,
            start_ns=session_bounds(fixed)[0] if fixed else None,
            backfiller=self._backfiller() if self.settings.live.backfill_enabled else None,
            min_backfill_gap_s=self.settings.live.min_backfill_gap_s,
            on_gap=lambda g: self._day.on_gap(g) if self._day else self._orphan_gaps.append(g),
            on_stall=lambda st: self._day.on_stall(st) if self._day else None,
            on_heartbeat=lambda ns: self._day.liveness.on_heartbeat(ns) if self._day else None,
            breaker=self.guard.registry.get("databento:live", exclude=(LiveFeedError,)),
        )
        self._source = source
        if self._stop.is_set():
            source.stop()
        resume = fixed or _unfinished_day(self.live_dir)
        if resume is not None:
            self._open_day(resume, params, summary, source)
        gen = source.batches()
        date_done = False
        try:
            for batch in gen:
                ds = self._day
                if ds is not None and ds.deadline_ns and time.time_ns() >= ds.deadline_ns:
                    self._close_day(summary, complete=True)  # real time: the close has passed
                    if fixed:
                        date_done = True
                        break
                if len(batch) == 0:
                    if self._day is not None:
                        self._day.maybe_flush()
                    continue
                if self._route(batch, params, summary, source):
                    date_done = True
                    break
        except BaseException:
            if self._day is not None:  # flush what is done and checkpoint; a restart resumes
                self._close_day(summary, complete=False)
            raise
        finally:
            gen.close()
            summary.gaps.extend(source.gaps)
        if self._day is not None:
            complete = (date_done or source.ended) and not self._stop.is_set()
            self._close_day(summary, complete=complete)
        return source.ended

    def _route(self, batch: RecordBatch, params, summary, source: LiveSource) -> bool:
        """Feed ``batch`` to the date(s) it belongs to; True when the fixed date is done."""
        ts = ts_recv_of(batch)
        while len(batch):
            if self._day is None:
                day = trade_date_of(int(ts[0]))
                if day in self._closed:  # records after a real-time close plus its grace
                    late = ts < session_bounds(day)[1]
                    summary.late_records += int(late.sum())
                    self.progress(f"{day}: {int(late.sum())} records after its close, not used")
                    batch = RecordBatch(batch.schema, batch.records[~late], batch.origin)
                    ts = ts[~late]
                    continue
                self._open_day(day, params, summary, source)
            ds = self._day
            lo, hi = ds.bounds
            if ts[0] < lo:  # the previous date's tail, asked for by the replay start
                keep = ts >= lo
                batch = RecordBatch(batch.schema, batch.records[keep], batch.origin)
                ts = ts[keep]
                continue
            n = len(ts) if ts[-1] < hi else int(np.searchsorted(ts, hi))
            if n:
                ds.ensure_capture(params, source.origin)
                ds.feed(RecordBatch(batch.schema, batch.records[:n], batch.origin), source)
            if n == len(ts):
                return False
            self._close_day(summary, complete=True)
            if self.options.day is not None:
                return True
            batch = RecordBatch(batch.schema, batch.records[n:], batch.origin)
            ts = ts[n:]
        return False

    def _open_day(self, day: dt.date, params: LiveParams, summary, source: LiveSource) -> None:
        ckpt_path = self.live_dir / f"checkpoint-{day.isoformat()}.json"
        ckpt = json.loads(ckpt_path.read_text()) if ckpt_path.exists() else None
        if ckpt and ckpt.get("finalized"):
            ckpt = None  # a finished date streamed again starts over
        run_id = ckpt["run_id"] if ckpt else _new_run_id(day)
        summary.run_id = run_id
        ds = _DayState(self, day, run_id, ckpt_path, ckpt)
        for g in self._orphan_gaps:  # a drop before the first record of this date
            ds.on_gap(g)
        self._orphan_gaps = []
        lo, hi = ds.bounds
        if hi > time.time_ns():  # streaming in real time: the date ends by the clock too
            ds.deadline_ns = hi + SESSION_GRACE_NS
        self.progress(f"{day}: baselines from the sessions before")
        base, _present = refresh_baselines(self.lake, day, self.settings)
        self.guard.set_run(run_id)
        detectors = make_detectors(self.settings, day, base, self.options.algos)
        guarded = self.guard.start_day(detectors, (ckpt or {}).get("rollout"))
        ds.engine = FlowEngine(ds.window_params, detectors=guarded)
        if self.broker_breaker is not None:
            from jobs.live.desk import RealTimeDesk

            ds.desk = RealTimeDesk(
                self.lake, self.settings, self.guard, self.broker, self.broker_breaker,
                day=day, run_id=run_id, origin=ds.origin, algos=self.options.algos,
                quote=ds.engine.quote, process_tag=self.process_tag, progress=self.progress,
            )  # fmt: skip
        if ckpt:  # a restart: the capture is the stream consumed so far; replay it
            synthetic = ckpt.get("origin") == "synthetic"
            capture = Capture(ds.capture_path, params.dataset, lo, synthetic)
            summary.resumed_from = ds.replay_capture(capture, source)
            self.progress(f"{day}: resumed after {summary.resumed_from:,} captured records")
        ds.start_monitor()
        self._day = ds

    def _close_day(self, summary: LiveSummary, complete: bool) -> None:
        ds, self._day = self._day, None
        ds.stop_monitor()
        if complete:
            self._closed.add(ds.day)
        summary.days.append(ds.result)
        if ds.capture is None:  # nothing arrived for this date
            ds.flush(force=True)
        elif complete:
            ds.finish(ds.capture)
        else:
            if ds.desk is not None:  # nobody would watch the stops: flatten, say so
                self.progress(f"{ds.day}: run stopped; flattening its positions at the broker")
                ds.close_trading("run_stopped")
            written = ds.flush(force=True)
            kept = "" if written else " (the last outputs were not written; the capture has them)"
            self.progress(f"{ds.day}: stopped{kept}; run the same command again to resume")
        summary.incidents += ds.incident_count
        summary.decision_latency_ns.extend(ds.decision_latencies)
        try:
            self._book_usage(ds)
        except Exception as exc:  # noqa: BLE001 - said, and booked by the next close of the run
            log.warning("%s: live usage not booked: %s", ds.day, exc)
            self.progress(f"{ds.day}: live usage not booked ({exc}); the next close books it")

    def _book_usage(self, ds: _DayState) -> None:
        """Live data is a cost (§2.9): the date's received bytes are booked at the per-GB rate
        in force (only the increase over what this run booked before), then the month is held
        against the budget. An exhausted budget escalates (a critical alert); it stops the feed
        only with ``costs.live_streaming_budget_stop``, because a stopped feed blinds the system."""
        from jobs.cost_report import month_to_date
        from warehouse.cost_ledger import LakeCostLedger

        if not ds.result.bytes:
            return
        entry = LakeCostLedger(self.lake, self.settings.costs).book_live_usage(
            ds.run_id, ds.day, ds.result.bytes
        )
        if entry is not None:
            ds.result.live_cost_usd = float(entry["amount_usd"])
        mc = month_to_date(self.lake, self.settings, ds.day)
        spent = f"${mc.spent:,.2f} of ${mc.budget:,.2f}"
        # A fresh store: the cost report may have changed the month's alert since this run began.
        alerts = AlertStore(self.lake, self.settings, ds.run_id)
        alerts.observe([("budget.month", mc.month, mc.utilization, spent)])
        if mc.utilization < 1.0:
            return
        said = f"{mc.month}: data budget exhausted ({spent}); "
        if self.settings.costs.live_streaming_budget_stop:
            self.progress(said + "stopping the live feed (costs.live_streaming_budget_stop)")
            self.stop()
        else:
            self.progress(said + "streaming continues (costs.live_streaming_budget_stop is off)")

    def _backfiller(self):
        from ifd_core.marketdata.historical import add_breaker_sink
        from jobs.live.backfill import HistoricalBackfiller

        # The Historical client's breakers are the process's; their transitions land in this
        # run's incidents like the feed's and the detectors'.
        add_breaker_sink(str(self.lake.root), self.guard.incidents)
        return HistoricalBackfiller(self.lake, self.settings)


class _DayState:
    """Everything of one trade date's live run: engine, pending outputs, capture, checkpoint."""

    def __init__(self, runner: LiveRunner, day, run_id, ckpt_path: Path, ckpt: dict | None):
        from jobs.detect import engine_params

        self.runner = runner
        self.lake = runner.lake
        self.settings = runner.settings
        self.day = day
        self.run_id = run_id
        self.ckpt_path = ckpt_path
        self.seq = int(ckpt["flush_seq"]) if ckpt else 0
        self.origin = ckpt.get("origin", "live") if ckpt else "live"
        self.window_params = engine_params(self.settings)[0]
        self.bounds = session_bounds(day)
        self.deadline_ns: int | None = None  # wall-clock end of a date streamed in real time
        self.capture_path = runner.live_dir / day.isoformat() / f"capture-{run_id}.dbn"
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
        self.all_gaps: list[Gap] = list(_gaps_from(ckpt))
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
        self.desk = None  # RealTimeDesk when the run trades in real time

    # -- feeding
    def replay_capture(self, capture: Capture, source: LiveSource) -> int:
        """Rebuild the engine from the capture; outputs of records already checkpointed are
        dropped (they are in the lake), the rest are kept. Returns the records replayed."""
        self.capture = capture
        done = int(json.loads(self.ckpt_path.read_text())["records_fed"])
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
        self.runner.guard.after_batch(self.liveness, self.data_now, now)
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
        self.runner.progress(f"{self.day}: trading error: {exc}")
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
                rows = _latency_rows(batch, out.signals, local_recv_ns, emit_ns, self)
                self._latency += rows
                self.runner.guard.on_signals_latency(rows)

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
        key = f"{LIVE_KEY}{self.run_id}-{self.seq + 1:06d}"
        try:
            done = self.runner.guard.lake_breaker.call(self._write, *parts, gaps, incidents, key)
        except (OSError, BreakerOpen) as exc:
            windows, signals, latency, mbo = parts
            self._windows, self._signals = windows + self._windows, signals + self._signals
            self._latency, self._mbo = latency + self._latency, mbo + self._mbo
            with self._lock:
                self._gaps[:0], self._incidents[:0] = gaps, incidents
            self.write_error = str(exc)
            self.runner.progress(f"{self.day}: warehouse write deferred ({exc}); kept pending")
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
        self.runner.guard.on_flush(self.data_now)
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
        bucket = _bucket()
        n_windows = n_incomplete = n_signals = 0
        if windows:
            w = pl.concat(windows, how="diagonal_relaxed").filter(pl.col("date") == day)
            w = _mark_incomplete(w, self.all_gaps)
            n_windows, n_incomplete = w.height, int((~w["complete"]).sum())
            rows = window_rows(w, f"{LIVE_KEY}{self.run_id}", self.origin)
            lake.write("pressure_windows", rows, key, bucket)
        if signals:
            s = self._signal_rows(pl.concat(signals).filter(pl.col("date") == day))
            n_signals = s.height
            lake.write("signals", s, key, bucket)
        if latency:
            lat = pl.DataFrame(latency).with_columns(pl.lit(day).alias("date"))
            lat = lat.select(list(TABLES["signal_latency"].schema))
            lake.write("signal_latency", lat, key, bucket)
        incidents = list(incidents)
        if mbo and self.runner.options.validate:
            incidents += self._validate(np.concatenate(mbo), key)
        if gaps:
            lake.write("gaps", _gap_rows(gaps, self.run_id, day, self.origin), key, bucket)
        if incidents:
            lake.write("incidents", _incident_rows(incidents, self.run_id, day), key, bucket)
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

    def _signal_rows(self, sig: pl.DataFrame) -> pl.DataFrame:
        return sig.with_columns(
            pl.lit(self.settings.config_version()).alias("config_version"),
            pl.lit(dt.datetime.now(dt.UTC)).alias("detected_at"),
            pl.lit(self.origin).alias("origin"),
            pl.lit(f"{LIVE_KEY}{self.run_id}").alias("source_sha"),
        ).select(list(TABLES["signals"].schema))

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
            _bucket(),
        )
        if v.success:
            return []
        now = time.time_ns()
        return [Incident("dq_failed", "open", now, None, f"{key}: {v.reason}", "warning")]

    def checkpoint(self, finalized: bool) -> None:
        self.ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(
            self.ckpt_path,
            {
                "day": self.day.isoformat(),
                "run_id": self.run_id,
                "capture": str(self.capture.path) if self.capture else None,
                "records_fed": self.records_fed,
                "flush_seq": self.seq,
                "origin": self.origin,
                "finalized": finalized,
                "rollout": self.runner.guard.checkpoint(),
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
            self.runner.progress(f"{day}: the capture was not ingested: {self.result.ingested}")
        raw = raw_files_for(lake, day)
        with lake.transaction(f"live consolidate {day}"):
            self._consolidate(raw)
        guard = self.runner.guard
        if self.desk is not None:  # traded in real time; now with the day's labels
            self.desk.write()
            self.result.orders = self.desk.entries_sent()
        elif self.runner.options.trade and raw:
            from ifd_core.marketdata.record_source import FileReplaySource

            batches = list(FileReplaySource(raw, batch_records=500_000).batches())
            signals = lake.scan("signals").filter(pl.col("date") == day).collect()
            placed = guard.trade_day(
                day, batches, signals, self.bounds[1], self.origin, self.runner.options.algos
            )
            self.result.orders = placed
            self.runner.progress(f"{day}: paper orders placed {placed}")
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
            retry_at = self.runner.guard.lake_breaker.snapshot()["retry_at"]
            wait = res.retry.base_s
            if retry_at is not None:
                wait = max((retry_at - dt.datetime.now(dt.UTC)).total_seconds(), 0.0) + 0.05
            if time.monotonic() + wait > deadline:
                return False
            self.runner.progress(f"{self.day}: waiting {wait:.1f} s for the warehouse")
            if self.runner._stop.wait(wait):
                return self.flush(force=True)
        return True

    def _consolidate(self, raw: list[Path]) -> None:
        """The day's live micro-batch files become the files batch detection writes."""
        lake, day = self.lake, self.day
        sha = source_key(raw) if raw else f"{LIVE_KEY}{self.run_id}"

        def live_rows(table: str) -> pl.DataFrame:
            files = [f for f in lake.files(table, day) if f.name.startswith(LIVE_KEY)]
            if not files:
                return TABLES[table].empty()
            return pl.read_parquet([str(f) for f in files])

        w = live_rows("pressure_windows").with_columns(pl.lit(sha).alias("source_sha"))
        s = live_rows("signals").with_columns(pl.lit(sha).alias("source_sha"))
        lake.replace_day("pressure_windows", day, w, "windows")
        lake.replace_day("option_flow_daily", day, rollup(w) if w.height else w.head(0), "flow")
        algos = self.runner.options.algos
        for algo in algos:
            lake.replace_day("signals", day, s.filter(pl.col("algo") == algo), algo)
        lake.remove(
            f
            for table in ("pressure_windows", "signals")
            for f in lake.files(table, day)
            if f.name.startswith(LIVE_KEY)
        )
        stats = self.engine.books.stats()
        run = pl.DataFrame(
            {
                "date": [day],
                "run_at": [dt.datetime.now(dt.UTC)],
                "engine_version": [ENGINE_VERSION],
                "source_files": [json.dumps([p.name for p in raw])],
                "records": [self.engine.stats.records],
                "option_trades": [self.engine.stats.option_trades],
                "underlying_trades": [self.engine.stats.underlying_trades],
                "late_trades": [self.engine.windows.late_trades.height],
                "windows": [w.height],
                "hidden_fills": [int(stats.get("hidden_fills", 0))],
                "book_anomalies": [json.dumps(stats.get("anomalies", {}), sort_keys=True)],
                "seconds": [0.0],
                "detectors": [",".join(algos)],
                "origin": [self.origin],
                "source_sha": [sha],
            }
        )
        lake.replace_day("engine_runs", day, run, "-".join(["engine", *algos]))
        if raw:
            label_day(lake, day, s, BarrierParams.from_settings(self.runner.settings), algos=algos)


# ---------------------------------------------------------------------- helpers
def _bucket() -> str:
    """The lake bucket of a live flush: one per UTC hour, so a commit every few seconds links
    at most an hour's files (warehouse.lake ``Lake.write``)."""
    return f"live-h{dt.datetime.now(dt.UTC):%H}"


def _latency_rows(batch, signals: pl.DataFrame, local_recv_ns: int, emit_ns: int, state):
    rec = batch.records
    ts_event = rec["ts_event"].astype(np.int64)
    ts_recv = ts_recv_of(batch).astype(np.int64)
    grace = int(state.window_params.grace_s * NS)
    rows = []
    for sid, algo, decision, wend in signals.select(
        "signal_id", "algo", "decision_ts", "window_end"
    ).iter_rows():
        hit = np.flatnonzero(ts_event >= int(decision))
        i = int(hit[0]) if len(hit) else len(rec) - 1
        lat = SignalLatency(int(ts_event[i]), int(ts_recv[i]), local_recv_ns, emit_ns)
        rows.append(
            {
                "run_id": state.run_id,
                "signal_id": sid,
                "algo": algo,
                "trigger_ts_event": lat.ts_event,
                "trigger_ts_recv": lat.ts_recv,
                "local_recv_ns": local_recv_ns,
                "emit_ns": emit_ns,
                "decision_latency_ns": lat.decision_latency_ns,
                "feed_latency_ns": lat.feed_latency_ns,
                "exchange_to_signal_ns": lat.exchange_to_signal_ns,
                "window_close_latency_ns": emit_ns - (int(wend) + grace),
            }
        )
    return rows


def _mark_incomplete(w: pl.DataFrame, gaps: list[Gap]) -> pl.DataFrame:
    bad = [
        (g.start_ns, g.end_ns or 2**63 - 1)
        for g in gaps
        if g.status not in ("recovered_replay", "backfilled")
    ]
    complete = pl.lit(True)
    for a, b in bad:
        overlaps = (pl.col("window_start") < b) & (pl.col("window_end") > a)
        complete = complete & ~overlaps
    return w.with_columns(complete.alias("complete"))


def _gap_rows(gaps: list[Gap], run_id: str, day: dt.date, origin: str) -> pl.DataFrame:
    def ts(ns):
        return ns_to_utc(ns) if ns else None

    rows = [
        {
            "date": day,
            "run_id": run_id,
            "gap_id": g.gap_id,
            "start_ns": g.start_ns,
            "end_ns": g.end_ns,
            "disconnected_at": ts(g.disconnected_wall_ns),
            "reconnected_at": ts(g.reconnected_wall_ns),
            "reason": g.reason,
            "status": g.status,
            "replay_start_ns": g.replay_start_ns,
            "duplicates_removed": g.duplicates_removed,
            "attempts": g.attempts,
            "backfill_records": g.backfill_records,
            "detail": g.detail,
            "origin": origin,
            "source_sha": f"{LIVE_KEY}{run_id}",
        }
        for g in gaps
    ]
    return pl.DataFrame(rows, schema=TABLES["gaps"].pl_schema)


def _incident_rows(incidents: list[Incident], run_id: str, day: dt.date) -> pl.DataFrame:
    def ts(ns):
        return ns_to_utc(ns) if ns else None

    rows = [
        {
            "date": day,
            "run_id": run_id,
            "kind": i.kind,
            "state": i.state,
            "severity": i.severity,
            "opened_at": ts(i.opened_ns),
            "resolved_at": ts(i.resolved_ns),
            "detail": i.detail,
        }
        for i in incidents
    ]
    return pl.DataFrame(rows, schema=TABLES["incidents"].pl_schema)


def _gaps_from(ckpt: dict | None) -> list[Gap]:
    return [Gap(**g) for g in (ckpt or {}).get("gaps", [])]


def _unfinished_day(live_dir: Path) -> dt.date | None:
    """The latest date whose checkpoint is not finalized: a follow-mode restart resumes it."""
    pending = []
    for path in live_dir.glob("checkpoint-*.json"):
        with contextlib.suppress(ValueError, OSError):
            if not json.loads(path.read_text()).get("finalized"):
                pending.append(dt.date.fromisoformat(path.stem.removeprefix("checkpoint-")))
    return max(pending) if pending else None


def _new_run_id(day: dt.date) -> str:
    return f"{day:%Y%m%d}-{uuid.uuid4().hex[:8]}"
