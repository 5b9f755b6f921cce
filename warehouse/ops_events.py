"""Writing the operational event tables: alerts, incidents and breaker transitions.

Each write is one new Parquet file (append-only, docs/architecture.md): alert episodes and incidents
are never updated in place, a later row says what changed. Any process (the live flow, a nightly
flow, a CLI command) can write them at the same time without a lock.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Iterable

import polars as pl

from ifd_core.ops.alerts import AlertBook, AlertEvent, rules_from
from ifd_core.ops.resilience import Transition
from ifd_core.settings import Settings
from warehouse.lake import Lake
from warehouse.migrations import ensure_migrated
from warehouse.tables import TABLES

log = logging.getLogger(__name__)

AlertListener = Callable[[list[AlertEvent]], None]
# Told of every alert row once it is stored. The flows layer adds the one that emits a Prefect
# event per row (flows/notifications.py), so a person is notified of a FIRING critical alert
# without the warehouse or the jobs importing Prefect (docs/operations.md §Notifications).
_ALERT_LISTENERS: list[AlertListener] = []


def add_alert_listener(listener: AlertListener) -> None:
    """Call ``listener`` with the rows of each stored alert write (once per listener)."""
    if listener not in _ALERT_LISTENERS:
        _ALERT_LISTENERS.append(listener)


def remove_alert_listener(listener: AlertListener) -> None:
    if listener in _ALERT_LISTENERS:
        _ALERT_LISTENERS.remove(listener)


def _tell_listeners(events: list[AlertEvent]) -> None:
    # A listener that fails must not lose the stored alert nor stop the caller (the live run):
    # the row is already in the table; the failure is logged with its traceback.
    for listener in list(_ALERT_LISTENERS):
        try:
            listener(events)
        except Exception:
            log.exception("alert listener %r failed; the alerts are stored", listener)


def write_incident_rows(lake: Lake, rows: list[dict]) -> None:
    """Append incident rows (dicts with the ``incidents`` columns; ``date`` from ``opened_at``)."""
    if not rows:
        return
    full = [{"date": r["opened_at"].date(), **r} for r in rows]
    df = pl.DataFrame(full, schema=TABLES["incidents"].pl_schema, orient="row")
    lake.write("incidents", df, key=f"ops-{uuid.uuid4().hex}")


def breaker_incident(t: Transition, run_id: str, opened_at: dt.datetime | None = None) -> dict:
    """A breaker transition as an incident row: opening is critical, recovery a resolution.

    The episode runs from the first transition out of CLOSED (``opened_at``) to the return to
    CLOSED, so the resolved row carries the episode's start like the live path's incidents.
    """
    kind = f"breaker:{t.breaker}"
    if t.to_state == "closed":
        state, severity = "resolved", "warning"
    else:
        state, severity = "open", "critical" if t.to_state == "open" else "warning"
    return {
        "run_id": run_id,
        "kind": kind,
        "state": state,
        "severity": severity,
        "opened_at": opened_at or t.at,
        "resolved_at": t.at if state == "resolved" else None,
        "detail": f"{t.from_state} -> {t.to_state}: {t.reason}"
        + (f" (cool-down {t.cooldown_s:g} s)" if t.cooldown_s else ""),
    }


class BreakerIncidents:
    """An ``on_change`` sink for a BreakerRegistry: every transition becomes an incident row.

    A failed write must not take the guarded call down with it, but it must not vanish either:
    it is kept and retried with the next transition, and ``pending`` says how many wait.
    """

    def __init__(self, lake: Lake, run_id: str) -> None:
        self.lake = lake
        self.run_id = run_id
        self.pending: list[dict] = []
        self._since: dict[str, dt.datetime] = {}

    def __call__(self, t: Transition) -> None:
        since = self._since.setdefault(t.breaker, t.at)
        if t.to_state == "closed":
            del self._since[t.breaker]
        self.pending.append(breaker_incident(t, self.run_id, since))
        try:
            write_incident_rows(self.lake, self.pending)
        except OSError:
            return
        self.pending = []


class AlertStore:
    """The ``alerts`` table behind an AlertBook: observe values, persist state changes only."""

    def __init__(self, lake: Lake, settings: Settings, run_id: str = "") -> None:
        ensure_migrated(lake)
        self.lake = lake
        self.run_id = run_id
        self.rules = rules_from(settings.alerts)
        rows = lake.scan("alerts").collect().to_dicts()
        self.book = AlertBook.from_rows(self.rules, rows)

    def observe(
        self,
        observations: Iterable[tuple[str, str, float | None, str]],
        ts: dt.datetime | None = None,
    ) -> list[AlertEvent]:
        """Observe (rule, subject, value, detail) tuples at ``ts``; returns the rows written."""
        ts = ts or dt.datetime.now(dt.UTC)
        events: list[AlertEvent] = []
        for rule, subject, value, detail in observations:
            events += self.book.observe(rule, subject, value, ts, detail)
        self.write(events)
        return events

    def write(self, events: list[AlertEvent]) -> None:
        if not events:
            return
        df = pl.DataFrame(
            [e.row(self.run_id) for e in events], schema=TABLES["alerts"].pl_schema, orient="row"
        )
        self.lake.write("alerts", df, key=f"alerts-{uuid.uuid4().hex}")
        _tell_listeners(events)

    def open_alerts(self) -> list[tuple[str, str, str]]:
        return self.book.firing()


def evaluate_daily_alerts(lake: Lake, settings: Settings, mc, day: dt.date) -> list[AlertEvent]:
    """Budget, daily cost, RTH uptime and completeness rules for ``day`` (docs/operations.md
    §Health, SLIs and alerts, docs/operations.md §Health, SLIs and alerts, docs/operations.md
    §Costs): the month's episodes are per month, so a new month starts without any open budget
    alert."""
    from warehouse.slis import day_slis

    _, cost, completeness, uptime, _ = day_slis(lake, day)
    budget = mc.budget or None
    obs = [
        ("budget.month", mc.month, mc.utilization, f"${mc.spent:,.2f} of ${mc.budget:,.2f}"),
        (
            "budget.projection",
            mc.month,
            mc.projection / budget if budget else None,
            f"projection ${mc.projection:,.2f}",
        ),
        ("cost.daily", day.isoformat(), cost, ""),
        ("uptime.rth", day.isoformat(), uptime, ""),
        ("data.completeness", day.isoformat(), completeness, ""),
    ]
    return AlertStore(lake, settings, run_id=f"cost-report-{day}").observe(obs)
