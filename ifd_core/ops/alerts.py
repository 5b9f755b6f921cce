"""Alert rules and their deduplication (docs/operations.md §Health, SLIs and alerts).

The reference built alert ids from timestamps, so one persisting condition re-alerted every 30 s.
Here an alert is an *episode* per (rule, subject): one FIRING row when the value first crosses the
warning (or critical) level, at most one ESCALATED row if it later reaches critical, and one
RESOLVED row when it is back on the good side of the warning level. However often a condition is
evaluated, an episode writes at most three rows. The book of open episodes is rebuilt from the
``alerts`` table, so a restarted process does not fire again for an episode already open.

Values are evaluated over windows by the caller (a p95 over five minutes, the accuracy of the last
50 resolved signals, the month's utilization); a missing value (``None``: no samples yet) changes
nothing, because "no data" is a different condition with its own incidents.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ifd_core.settings import AlertSettings

AlertState = Literal["FIRING", "ESCALATED", "RESOLVED"]
Level = Literal["warning", "critical"]


@dataclass(frozen=True)
class AlertRule:
    """A threshold pair on one measured value; ``higher_is_bad`` says which side is bad."""

    key: str
    description: str
    warning: float
    critical: float
    higher_is_bad: bool = True
    unit: str = ""

    def level(self, value: float) -> Level | None:
        bad = (lambda t: value > t) if self.higher_is_bad else (lambda t: value < t)
        if bad(self.critical):
            return "critical"
        if bad(self.warning):
            return "warning"
        return None

    def threshold(self, level: Level) -> float:
        return self.critical if level == "critical" else self.warning

    def describe(self, value: float, level: Level | None) -> str:
        op = ">" if self.higher_is_bad else "<"
        v = _fmt(value, self.unit)
        if level is None:
            return f"{self.description}: {v}, back within {_fmt(self.warning, self.unit)}"
        return f"{self.description}: {v} {op} {_fmt(self.threshold(level), self.unit)} ({level})"


def _fmt(v: float, unit: str) -> str:
    if unit == "%":
        return f"{v * 100:.2f} %"
    if unit == "$":
        return f"${v:,.2f}"
    if math.isinf(v):
        return "none"
    return f"{v:g} {unit}".strip()


def rules_from(s: AlertSettings) -> dict[str, AlertRule]:
    """The platform's alert rules with the thresholds of the settings (REF warning/critical)."""
    rules = [
        AlertRule(
            "latency.decision_p95",
            f"decision latency p95 over {s.latency_window_s:g} s",
            s.latency_p95_warning_ms,
            s.latency_p95_critical_ms,
            unit="ms",
        ),
        AlertRule(
            "accuracy.last_resolved",
            f"accuracy of the last {s.accuracy_last_resolved} resolved signals",
            s.accuracy_warning,
            s.accuracy_critical,
            higher_is_bad=False,
            unit="%",
        ),
        AlertRule(
            "detector.error_rate",
            "detector error rate",
            s.error_rate_warning,
            s.error_rate_critical,
            unit="%",
        ),
        AlertRule(
            "uptime.rth",
            "RTH-minute uptime",
            s.uptime_warning,
            s.uptime_critical,
            higher_is_bad=False,
            unit="%",
        ),
        AlertRule(
            "data.completeness",
            "data completeness (RTH)",
            s.completeness_warning,
            s.completeness_critical,
            higher_is_bad=False,
            unit="%",
        ),
        AlertRule(
            "cost.daily",
            "data cost of the day",
            s.daily_cost_warning,
            s.daily_cost_critical,
            unit="$",
        ),
        AlertRule(
            "budget.month",
            "monthly data budget used",
            s.budget_warning,
            s.budget_critical,
            unit="%",
        ),
        # docs/operations.md §Costs CAUTION: on course to overspend. Warning only (critical never
        # reached).
        AlertRule(
            "budget.projection",
            "projected month spend / budget",
            1.0,
            math.inf,
            unit="%",
        ),
        # Databento's open interest and settlements against Barchart's chain (subject: the root).
        AlertRule(
            "barchart.disagreements",
            "options on which Databento and Barchart disagree",
            s.barchart_disagreements_warning,
            s.barchart_disagreements_critical,
        ),
        # A dependency's circuit breaker not closed (1 = open or half-open).
        AlertRule("breaker.open", "circuit breaker not closed", 0.5, 0.5),
    ]
    return {r.key: r for r in rules}


@dataclass(frozen=True)
class AlertEvent:
    """One row of the ``alerts`` table."""

    alert_id: str
    episode_id: str
    rule: str
    subject: str
    state: AlertState
    severity: str
    value: float
    threshold: float
    ts: dt.datetime
    detail: str

    def row(self, run_id: str = "") -> dict[str, Any]:
        return {
            "date": self.ts.date(),
            "alert_id": self.alert_id,
            "episode_id": self.episode_id,
            "rule": self.rule,
            "subject": self.subject,
            "state": self.state,
            "severity": self.severity,
            "value": float(self.value),
            "threshold": float(self.threshold),
            "ts": self.ts,
            "detail": self.detail,
            "run_id": run_id,
        }


@dataclass
class _Open:
    episode_id: str
    level: Level


@dataclass
class AlertBook:
    """Open episodes by (rule, subject); ``observe`` returns only the rows that change state."""

    rules: Mapping[str, AlertRule]
    open: dict[tuple[str, str], _Open] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rules: Mapping[str, AlertRule], rows: Iterable[Mapping]) -> AlertBook:
        """Rebuild the open episodes from stored alert rows (any order)."""
        latest: dict[str, Mapping] = {}
        for r in sorted(rows, key=lambda r: (r["ts"], r["alert_id"])):
            latest[r["episode_id"]] = r
        book = cls(rules)
        for r in latest.values():
            if r["state"] != "RESOLVED":
                book.open[(r["rule"], r["subject"])] = _Open(r["episode_id"], r["severity"])
        return book

    def observe(
        self, rule_key: str, subject: str, value: float | None, ts: dt.datetime, detail: str = ""
    ) -> list[AlertEvent]:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return []
        if ts.tzinfo is None:
            raise ValueError("alert timestamps must be timezone-aware (UTC)")
        rule = self.rules[rule_key]
        level = rule.level(value)
        key = (rule_key, subject)
        cur = self.open.get(key)
        text = rule.describe(value, level) + (f"; {detail}" if detail else "")

        def event(state: AlertState, episode: str, sev: str, thr: float) -> AlertEvent:
            return AlertEvent(
                uuid.uuid4().hex, episode, rule_key, subject, state, sev, value, thr, ts, text
            )

        if cur is None:
            if level is None:
                return []
            ep = uuid.uuid4().hex
            self.open[key] = _Open(ep, level)
            return [event("FIRING", ep, level, rule.threshold(level))]
        if level is None:
            del self.open[key]
            return [event("RESOLVED", cur.episode_id, cur.level, rule.warning)]
        if level == "critical" and cur.level == "warning":
            cur.level = "critical"
            return [event("ESCALATED", cur.episode_id, "critical", rule.critical)]
        return []

    def firing(self) -> list[tuple[str, str, str]]:
        """(rule, subject, level) of every open episode."""
        return sorted((k[0], k[1], o.level) for k, o in self.open.items())
