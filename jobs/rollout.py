"""The rollout controller over the lake: state from ``rollout_events``, evidence from the ledger.

One controller per challenger (docs/algorithms.md §16). Its state is the latest row of the
append-only ``rollout_events`` table (view ``rollout_state``), so the live flow, a nightly review
and an operator's ``ifd rollout rollback`` act on the same truth and a restart changes nothing.
Every decision — promotions, holds, demotions, rollbacks — is a row with the rules it judged; a
rollback is also a critical incident and an alert, so it shows wherever operators look.
"""

from __future__ import annotations

import datetime as dt
import getpass
import uuid
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from ifd_core.ops.budget import SPEND_ENTRY_TYPES
from ifd_core.settings import Settings
from ifd_core.trading.ab_stats import bootstrap_diff_ci
from ifd_core.trading.rollout import (
    Decision,
    LiveHealth,
    RolloutState,
    StageEvidence,
    check_immediate,
    operator_promote,
    operator_rollback,
    review_session,
    routed,
    share_of,
)
from ifd_core.units import ns_to_utc
from warehouse.lake import Lake
from warehouse.migrations import ensure_migrated
from warehouse.ops_events import write_incident_rows
from warehouse.slis import day_slis, latency_p95_by_day
from warehouse.tables import TABLES

TABLE = "rollout_events"
NY = ZoneInfo("America/New_York")


def decision_markdown(d: Decision, challenger: str, data_ts: int | None = None) -> str:
    """A decision as the markdown a Prefect artifact shows: what changed, why, and every rule
    with its value and threshold, so the UI answers "why was it rolled back" by itself."""
    lines = [f"# Rollout {d.action}: {challenger} {d.from_stage} -> {d.to_stage}", "", d.reason]
    if data_ts:
        at = ns_to_utc(data_ts).isoformat(timespec="seconds")
        lines += ["", f"Effective at exchange time {at}: no {challenger} order after it."]
    if d.rules:
        lines += ["", "| rule | passed | value | threshold | detail |", "|---|---|---|---|---|"]
        lines += [
            f"| {r.id} | {'yes' if r.passed else '**no**'} | {r.value} | {r.threshold} | "
            f"{r.detail} |"
            for r in d.rules
        ]
    return "\n".join(lines)


def _operator() -> str:
    try:
        return getpass.getuser()
    except OSError:  # no login name (some containers)
        return "operator"


def first_judged_date(since: dt.datetime) -> dt.date:
    """The first trade date a stage that began at ``since`` is judged on: the same date when it
    began before that day's 09:30 ET open, else the next (a session is judged whole)."""
    ny = since.astimezone(NY)
    return ny.date() if ny.time() < dt.time(9, 30) else ny.date() + dt.timedelta(days=1)


class RolloutController:
    """State, routing and decisions of the rollout of ``settings.rollout.challenger``."""

    def __init__(self, lake: Lake, settings: Settings, *, run_id: str = "") -> None:
        ensure_migrated(lake)
        self.lake = lake
        self.settings = settings
        self.s = settings.rollout
        self.run_id = run_id
        self._state: RolloutState | None = None

    # ------------------------------------------------------------------ state
    def events(self) -> pl.DataFrame:
        return (
            self.lake.scan(TABLE)
            .filter(pl.col("challenger") == self.s.challenger)
            .sort("ts", "event_id")
            .collect()
        )

    def state(self, refresh: bool = False) -> RolloutState:
        if self._state is None or refresh:
            self._state = self._load()
        return self._state

    def _load(self) -> RolloutState:
        ev = self.events()
        if ev.height == 0:
            init = Decision("init", "", "SHADOW", 0, (), "rollout started in SHADOW")
            self.record(init, operator="system")
            ev = self.events()
        last = ev.row(-1, named=True)
        stage = last["to_stage"]
        changes = ev.filter(pl.col("to_stage") != pl.col("from_stage"))
        since = changes["ts"][-1] if changes.height else last["ts"]
        rb = ev.filter(pl.col("action").is_in(["rollback", "halt"]))
        started = first_judged_date(since)
        return RolloutState(
            stage=stage,
            share=int(last["share"]),
            since=since,
            stage_started=started,
            last_rollback=rb["ts"][-1] if rb.height else None,
            rolled_back_from=rb["from_stage"][-1] if rb.height else None,
        )

    def record(self, d: Decision, *, operator: str = "system", data_ts: int | None = None) -> dict:
        now = dt.datetime.now(dt.UTC)
        row = {
            "date": now.date(),
            "event_id": uuid.uuid4().hex,
            "ts": now,
            "data_ts": data_ts,
            "challenger": self.s.challenger,
            "incumbent": self.s.incumbent,
            "action": d.action,
            "from_stage": d.from_stage,
            "to_stage": d.to_stage,
            "share": d.share,
            "rules": d.rules_json(),
            "reason": d.reason,
            "operator": operator,
            "config_version": self.settings.config_version(),
            "run_id": self.run_id,
        }
        df = pl.DataFrame([row], schema=TABLES[TABLE].pl_schema, orient="row")
        self.lake.write(TABLE, df, key=f"rollout-{row['event_id']}")
        if d.action in ("rollback", "halt"):
            write_incident_rows(
                self.lake,
                [
                    {
                        "run_id": self.run_id,
                        "kind": f"rollout_{d.action}",
                        "state": "open",
                        "severity": "critical",
                        "opened_at": now,
                        "resolved_at": None,
                        "detail": f"{self.s.challenger} {d.from_stage} -> {d.to_stage}: "
                        f"{d.reason} (by {operator})",
                    }
                ],
            )
        if d.to_stage != d.from_stage and d.from_stage in ("ROLLED_BACK", "HALTED"):
            write_incident_rows(  # the rollback episode ends when the challenger is back
                self.lake,
                [
                    {
                        "run_id": self.run_id,
                        "kind": f"rollout_{'halt' if d.from_stage == 'HALTED' else 'rollback'}",
                        "state": "resolved",
                        "severity": "critical",
                        "opened_at": self.state().last_rollback or now,
                        "resolved_at": now,
                        "detail": f"{d.from_stage} -> {d.to_stage} by {operator}",
                    }
                ],
            )
        self._state = None
        return row

    # ------------------------------------------------------------------ routing
    def executes(self, algo: str, signal_id: str) -> bool:
        """Whether a signal of ``algo`` is executed now (challenger: by share; incumbent: always,
        except at LIVE_FULL where it is the fallback only while the challenger is off)."""
        st = self.state()
        if algo == self.s.challenger:
            return st.share > 0 and routed(signal_id, self.s.salt, st.share)
        if algo == self.s.incumbent:
            return st.stage != "LIVE_FULL"
        return False

    # ------------------------------------------------------------------ decisions
    def tick(self, health: LiveHealth, data_ts: int | None = None) -> Decision | None:
        """Immediate triggers; a rollback is recorded at once (never rate-limited)."""
        d = check_immediate(self.state(), health, self.s)
        if d is not None:
            self.record(d, operator="system", data_ts=data_ts)
        return d

    def rollback(self, reason: str, *, operator: str | None = None, halt: bool = False):
        d = operator_rollback(self.state(), reason, halt=halt)
        self.record(d, operator=operator or _operator())
        return d

    def promote(self, *, to: str | None = None, operator: str | None = None) -> Decision:
        st = self.state()
        reviewed = 0
        if st.last_rollback is not None:
            ev = self.events()
            reviewed = ev.filter(
                (pl.col("ts") > st.last_rollback) & (pl.col("action") == "hold")
            ).height
        d = operator_promote(
            st, self.s, dt.datetime.now(dt.UTC), to, sessions_since_rollback=reviewed
        )
        self.record(d, operator=operator or _operator())
        return d

    def review(self, day: dt.date, *, approved: bool = False, operator: str = "system"):
        """The session-close review of ``day`` (promote / hold / demote), recorded."""
        st = self.state()
        ev = self.evidence(st, day)
        d = review_session(st, ev, self.s, dt.datetime.now(dt.UTC), approved=approved)
        self.record(d, operator=operator)
        return d, ev

    # ------------------------------------------------------------------ evidence
    def evidence(self, st: RolloutState, day: dt.date) -> StageEvidence:
        """Pooled since the stage started, up to and including ``day``."""
        lo = st.stage_started or day
        lake, c, i = self.lake, self.s.challenger, self.s.incumbent
        sig = (
            lake.scan("signals")
            .filter(pl.col("date").is_between(lo, day))
            .select("signal_id", "algo", "date")
            .unique()
            .collect()
        )
        lab = lake.scan("signal_outcomes").select("signal_id", "label").unique().collect()
        both = sig.join(lab, on="signal_id", how="left")

        def counts(algo: str) -> tuple[int, int]:
            a = both.filter(pl.col("algo") == algo)
            correct = a.filter(pl.col("label") == "correct").height
            return correct + a.filter(pl.col("label") == "incorrect").height, correct

        rc, cc = counts(c)
        ri, ci = counts(i)
        sessions = sig.filter(pl.col("algo") == c)["date"].n_unique()
        pos = (
            lake.scan("positions")
            .filter(
                pl.col("date").is_between(lo, day)
                & (pl.col("algo") == c)
                & pl.col("mode").is_in(["paper", "live"])
            )
            .select("net_pnl")
            .collect()
        )["net_pnl"].to_numpy()
        per_trade = float(pos.mean()) if pos.size else None
        # One-sample percentile bootstrap of the mean = the paired one against zero.
        boot = bootstrap_diff_ci(
            pos,
            np.zeros_like(pos),
            resamples=self.settings.backtest.bootstrap_resamples,
            confidence=0.90,
        )
        ci_low = boot[1] if boot else None
        days = sorted(set(sig["date"].to_list()))
        lat = latency_p95_by_day(lake, days).filter(pl.col("algo") == c)
        p95 = float(lat["latency_p95_ms"].max()) if lat.height else None
        uptimes = [u for _, _, _, u, _ in (day_slis(lake, d) for d in days) if u is not None]
        uptime = float(np.mean(uptimes)) if uptimes else None
        spend = (
            lake.scan("cost_ledger")
            .filter(
                pl.col("date").is_between(lo, day)
                & pl.col("entry_type").is_in(list(SPEND_ENTRY_TYPES))
            )
            .select(pl.col("amount_usd").sum())
            .collect()
            .item()
        )
        n_c = sig.filter(pl.col("algo") == c).height
        cps = float(spend or 0.0) / n_c if n_c else None
        since_ts = dt.datetime.combine(lo, dt.time(), dt.UTC)
        inc = lake.scan("incidents").filter(pl.col("opened_at") >= since_ts).collect()
        critical = inc.filter(pl.col("severity") == "critical")["opened_at"].n_unique()
        return StageEvidence(
            sessions=sessions,
            resolved_c=rc,
            correct_c=cc,
            resolved_i=ri,
            correct_i=ci,
            pnl_per_trade_ci_low=ci_low,
            pnl_per_trade=per_trade,
            trades=int(pos.size),
            latency_p95_ms=p95,
            uptime_rth=uptime,
            cost_per_signal=cps,
            critical_incidents=int(critical),
        )

    def share(self) -> int:
        return share_of(self.state().stage, self.s)
