"""What guards a live run: detector breakers, the rollout controller, live alerts, paper trading.

The live flow owns the feed and the engine; this module owns the decisions around them: each
detector behind its breaker (``GuardedDetector``), the rollout's immediate rollback triggers after
every batch, the live alert rules at each flush, and at the end of the date the paper trading of
the routed signals and the session-close review. Rules and timing: docs/operations.md §Rollout.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence

import numpy as np
import polars as pl

from ifd_core.analysis.cross_asset import live_weight_note
from ifd_core.analysis.guarded_detector import GuardedDetector
from ifd_core.marketdata.record_source import RecordBatch
from ifd_core.ops.liveness import FeedLiveness, LatencyHistogram
from ifd_core.ops.resilience import BreakerRegistry, ErrorWindow
from ifd_core.settings import Settings
from ifd_core.trading.halt import EmergencyStop
from ifd_core.trading.paper import executor_from_settings
from ifd_core.trading.rollout import Decision, LiveHealth, routed
from ifd_core.units import NS, ns_to_utc
from jobs.rollout import RolloutController
from warehouse.lake import Lake
from warehouse.ops_events import AlertStore, BreakerIncidents
from warehouse.tables import TABLES

log = logging.getLogger(__name__)
MS = 1_000_000
LEDGER = ("orders", "fills", "positions")


class LiveGuard:
    def __init__(
        self,
        lake: Lake,
        settings: Settings,
        run_id: str,
        progress: Callable[[str], None] = lambda m: None,
    ) -> None:
        self.lake = lake
        self.settings = settings
        self.progress = progress
        self.incidents = BreakerIncidents(lake, run_id)
        self.registry = BreakerRegistry(settings.resilience.breaker, on_change=self.incidents)
        # The live flow's warehouse writes (the flush); failures are deferred, not retried here.
        self.lake_breaker = self.registry.get("warehouse:lake")
        self.rollout = RolloutController(lake, settings, run_id=run_id)
        self.alerts = AlertStore(lake, settings, run_id)
        self.detectors: list[GuardedDetector] = []
        self.latency = LatencyHistogram()
        self.severe_since: int | None = None
        self.share = 0
        self.cutoff: tuple[int, str] | None = None
        self.decisions: list[Decision] = []
        self.run_id = run_id
        # Told of a rollback the moment it is recorded (the live flow makes it a UI artifact).
        self.on_rollback: Callable[[Decision, int], None] | None = None

    def set_run(self, run_id: str) -> None:
        self.run_id = run_id
        self.incidents.run_id = run_id
        self.rollout.run_id = run_id
        self.alerts.run_id = run_id

    # ------------------------------------------------------------------ the date
    def start_day(self, detectors: Sequence, saved: dict | None) -> list[GuardedDetector]:
        """Wrap the date's detectors; the challenger's share is fixed for the date here (or
        restored from the checkpoint of an interrupted run, with any cutoff it had)."""
        span = int(self.settings.rollout.error_window_s * NS)
        self.detectors = [
            GuardedDetector(d, self.registry.get(f"detector:{d.name}"), ErrorWindow(span))
            for d in detectors
        ]
        if saved:
            self.share = int(saved["share"])
            self.cutoff = (
                (int(saved["cutoff_ns"]), saved["reason"]) if saved.get("reason") else None
            )
        else:
            self.share = self.rollout.state(refresh=True).share
            self.cutoff = None
        return self.detectors

    def checkpoint(self) -> dict:
        c = self.cutoff
        return {
            "share": self.share,
            "cutoff_ns": c[0] if c else None,
            "reason": c[1] if c else None,
        }

    def _challenger(self) -> GuardedDetector | None:
        name = self.settings.rollout.challenger
        return next((d for d in self.detectors if d.name == name), None)

    # ------------------------------------------------------------------ every batch
    def after_batch(self, liveness: FeedLiveness, data_now: int, wall_ns: int) -> None:
        """Immediate rollback triggers (cheap: counters and one pure function)."""
        if self.cutoff is not None:
            return
        ch = self._challenger()
        opened = liveness.open_incident
        unhealthy = (wall_ns - opened.opened_ns) / NS if opened is not None else 0.0
        health = LiveHealth(
            feed_unhealthy_s=max(unhealthy, 0.0),
            challenger_breaker_open=ch is not None and ch.breaker.state == "open",
            error_windows=ch.errors.windows if ch else 0,
            failed_windows=ch.errors.failed if ch else 0,
            severe_latency_s=(wall_ns - self.severe_since) / NS if self.severe_since else 0.0,
        )
        d = self.rollout.tick(health, data_ts=data_now)
        if d is not None:
            self._rolled_back(d, data_now)

    def _rolled_back(self, d: Decision, data_now: int) -> None:
        self.decisions.append(d)
        self.cutoff = (data_now, f"rollout rolled back: {d.reason}")
        when = ns_to_utc(data_now).isoformat(timespec="seconds")
        self.progress(f"ROLLBACK of {self.settings.rollout.challenger} at {when}: {d.reason}")
        log.warning("rollout rollback at %s: %s", when, d.reason)
        if self.on_rollback is not None:
            try:
                self.on_rollback(d, data_now)
            except Exception:  # the rollback stands whatever a display hook does
                log.exception("rollback hook failed (the rollback itself is recorded)")

    def on_signals_latency(self, rows: list[dict]) -> None:
        for r in rows:
            self.latency.record(int(r["decision_latency_ns"]), at_ns=int(r["emit_ns"]))

    # ------------------------------------------------------------------ every flush
    def on_flush(self, data_now: int) -> None:
        """Operator rollbacks from other processes, the latency window, live alerts."""
        st = self.rollout.state(refresh=True)
        if self.cutoff is None and st.share == 0 and self.share > 0:
            d = Decision("rollback", st.stage, st.stage, 0, (), "rolled back elsewhere")
            self._rolled_back(d, data_now)
        a = self.settings.alerts
        now = time.time_ns()
        recent = self.latency.values_since(now - int(a.latency_window_s * NS))
        p95 = float(np.percentile(recent, 95)) / MS if recent.size >= 5 else None
        severe = self.settings.rollout.severe_latency_ms
        if p95 is not None and p95 > severe:
            self.severe_since = self.severe_since or now
        else:
            self.severe_since = None
        obs: list[tuple[str, str, float | None, str]] = [
            ("latency.decision_p95", "live", p95, f"{recent.size} signals")
        ]
        for d in self.detectors:
            obs.append(("detector.error_rate", d.name, d.errors.rate(), d.last_error))
        for b in self.registry.snapshot():
            obs.append(("breaker.open", b["name"], 0.0 if b["state"] == "closed" else 1.0, ""))
        self.alerts.observe(obs)

    # ------------------------------------------------------------------ end of the date
    def executed(self, signals: pl.DataFrame) -> pl.DataFrame:
        """The signals offered to the executor: incumbent all (but at LIVE_FULL), challenger by
        routing with the date's share and decided before any cutoff."""
        r = self.settings.rollout
        stage = self.rollout.state().stage
        keep = []
        for sid, algo, ts in signals.select("signal_id", "algo", "decision_ts").iter_rows():
            if algo == r.challenger:
                ok = self.share > 0 and routed(sid, r.salt, self.share)
                ok &= self.cutoff is None or ts < self.cutoff[0]
            else:
                ok = algo == r.incumbent and (stage != "LIVE_FULL" or self.share == 0)
            keep.append(ok)
        return signals.filter(pl.Series(keep, dtype=pl.Boolean))

    def trade_day(
        self,
        day: dt.date,
        batches: list[RecordBatch],
        signals: pl.DataFrame,
        session_end_ns: int,
        origin: str,
        algos: Sequence[str],
    ) -> dict[str, int]:
        """Paper-trade the routed signals of the date; ledger rows into the lake."""
        from jobs.backtest import daily_row

        chosen = self.executed(signals)
        halt = EmergencyStop(self.settings.data_dir)
        if note := live_weight_note(self.settings.massive.confidence_weight):
            log.warning(note)
        out: dict[str, int] = {}
        frames: dict[str, list[dict]] = {t: [] for t in LEDGER}
        daily = []
        labels = self.lake.scan("signal_outcomes").filter(pl.col("date") == day).collect()
        for algo in algos:
            sig = chosen.filter(pl.col("algo") == algo)
            ex = executor_from_settings(
                algo, self.settings, halted=halt.reason, run_id=self.run_id, mode="paper"
            )
            stop = self.cutoff if algo == self.settings.rollout.challenger else None
            equity0 = ex.equity
            led = ex.run_day(batches, sig, session_end_ns, stop_at=stop)
            for t in LEDGER:
                frames[t] += [{"date": day, "origin": origin, **row} for row in getattr(led, t)]
            lab = labels.filter(pl.col("signal_id").is_in(sig["signal_id"].implode()))
            daily.append(
                {
                    **daily_row(day, algo, ex, equity0, sig, led, lab),
                    "run_id": self.run_id,
                    "mode": "paper",
                    "origin": origin,
                }
            )
            out[algo] = sum(
                o["purpose"] == "entry" and o["status"] not in ("rejected", "skipped")
                for o in led.orders
            )
        key = f"live-trade-{self.run_id}"
        for t, rows in frames.items():
            if rows:
                df = pl.DataFrame(rows, schema_overrides=_overrides(t, rows[0]))
                self.lake.replace_day(t, day, df.select(list(TABLES[t].schema)), key)
        cols = list(TABLES["pnl_daily"].schema)
        pnl = pl.DataFrame(daily, schema_overrides=_overrides("pnl_daily", daily[0]))
        self.lake.replace_day("pnl_daily", day, pnl.select(cols), key)
        self._loss_and_risk(day, frames["positions"])
        return out

    def _loss_and_risk(self, day: dt.date, positions: list[dict]) -> None:
        """DAILY_LOSS judged on the challenger's realized P&L of the date (paper: at its end)."""
        ch = self.settings.rollout.challenger
        pos = sorted((p for p in positions if p["algo"] == ch), key=lambda p: p["exit_ts"] or 0)
        cum = 0.0
        for p in pos:
            cum += float(p["net_pnl"] or 0.0)
            if self.on_realized(cum, int(p["exit_ts"] or 0)):
                return

    def on_realized(self, day_net: float, ts: int) -> bool:
        """DAILY_LOSS on the challenger's realized P&L of the date so far (a real-time trader
        calls this as its positions close); True when it rolled back."""
        if self.share == 0:
            return False
        h = LiveHealth(realized_daily_loss=max(-day_net, 0.0), capital=self.settings.paper.capital)
        d = self.rollout.tick(h, data_ts=ts)
        if d is not None:
            self._rolled_back(d, ts)
        return d is not None

    def review(self, day: dt.date) -> Decision:
        d, _ = self.rollout.review(day)
        self.decisions.append(d)
        self.progress(
            f"{day}: rollout review {d.from_stage} -> {d.to_stage} ({d.action}): {d.reason}"
        )
        return d


def _overrides(table: str, row: dict) -> dict:
    schema = TABLES[table].pl_schema
    return {c: schema[c] for c in row if c in schema}
