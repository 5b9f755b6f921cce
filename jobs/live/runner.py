"""The live run: the Live feed through the FlowEngine into the lake, in micro-batches, restartable.

``LiveRunner.run`` is what ``ifd live`` and the Prefect ``live_stream`` flow call: one date
(``--date``) or following the feed, the same engine, detectors and baselines as ``ifd detect``,
a capture file, micro-batch flushes and checkpoints, consolidation and labels at each date's end,
and a restart that resumes from the checkpoint (docs/operations.md §Live run).

This module is the loop and its wiring; a date's life is ``dates``, its rows ``rows``, the
capture and checkpoint files ``capture`` and ``checkpoint``, the subscriptions ``feed``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ifd_core.analysis.flow_engine import FlowEngine
from ifd_core.broker.base import Broker, OrderRefused
from ifd_core.calendar import trade_date_bounds, trade_date_of
from ifd_core.marketdata.dbn_stream import ts_recv_of
from ifd_core.marketdata.live_source import Gap, LiveFeedError, LiveParams, LiveSource
from ifd_core.marketdata.record_source import RecordBatch
from ifd_core.settings import Settings
from ifd_core.trading.rollout import Decision
from ifd_core.units import NS
from jobs.detect import ALGOS, make_detectors, refresh_baselines
from jobs.live.capture import Capture
from jobs.live.checkpoint import checkpoint_path, is_unfinished, read_checkpoint, unfinished_day
from jobs.live.dates import DayResult, DayState, RunContext
from jobs.live.desk import RealTimeDesk
from jobs.live.feed import live_params, subscriptions_for
from jobs.live.guard import LiveGuard
from warehouse.lake import Lake
from warehouse.migrations import ensure_migrated
from warehouse.ops_events import AlertStore

log = logging.getLogger(__name__)


class BrokerNotReady(RuntimeError):
    """Real-time trading was asked for and the broker refused or cannot be reached."""

    def __init__(self, message: str, live_refused: bool = False) -> None:
        super().__init__(message)
        self.live_refused = live_refused  # a real-money account without consent


SESSION_GRACE_NS = 60 * NS
RECONNECT_AFTER_END_S = 5.0  # late records after a real-time session's close still count


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


class LiveRunner:
    """The live run of ``ifd live`` and the ``live_stream`` flow: reads the Live feed, routes
    each record to its trade date's ``DayState`` (engine, capture, flushes, checkpoint), and
    wires in the guard (rollout, breakers, alerts), the broker and the backfiller. Restartable:
    a rerun of an unfinished date resumes from its checkpoint."""

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
        self._day: DayState | None = None
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
        return is_unfinished(self.live_dir, self.options.day or unfinished_day(self.live_dir))

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
            start_ns=trade_date_bounds(fixed)[0] if fixed else None,
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
        resume = fixed or unfinished_day(self.live_dir)
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
                    late = ts < trade_date_bounds(day)[1]
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
        ckpt = read_checkpoint(checkpoint_path(self.live_dir, day))
        if ckpt and ckpt.get("finalized"):
            ckpt = None  # a finished date streamed again starts over
        run_id = ckpt["run_id"] if ckpt else _new_run_id(day)
        summary.run_id = run_id
        ds = DayState(self._context(), day, run_id, ckpt)
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
            ds.desk = RealTimeDesk(
                self.lake,
                self.settings,
                self.guard,
                self.broker,
                self.broker_breaker,
                day=day,
                run_id=run_id,
                origin=ds.origin,
                algos=self.options.algos,
                quote=ds.engine.quote,
                process_tag=self.process_tag,
                progress=self.progress,
            )
        if ckpt:  # a restart: the capture is the stream consumed so far; replay it
            synthetic = ckpt.get("origin") == "synthetic"
            capture = Capture(ds.capture_path, params.dataset, lo, synthetic)
            summary.resumed_from = ds.replay_capture(capture, source)
            self.progress(f"{day}: resumed after {summary.resumed_from:,} captured records")
        ds.start_monitor()
        self._day = ds

    def _context(self) -> RunContext:
        """What the run's dates share (the guard exists once ``run`` has started)."""
        return RunContext(
            lake=self.lake,
            settings=self.settings,
            guard=self.guard,
            live_dir=self.live_dir,
            algos=self.options.algos,
            validate=self.options.validate,
            trade=self.options.trade,
            progress=self.progress,
            stop=self._stop,
        )

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

    def _book_usage(self, ds: DayState) -> None:
        """Live data is a cost (docs/operations.md §Costs): the date's received bytes are booked at
        the per-GB rate in force (only the increase over what this run booked before), then the
        month is held against the budget. An exhausted budget escalates (a critical alert); it stops
        the feed only with ``costs.live_streaming_budget_stop``, because a stopped feed blinds the
        system."""
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


def _new_run_id(day: dt.date) -> str:
    return f"{day:%Y%m%d}-{uuid.uuid4().hex[:8]}"
