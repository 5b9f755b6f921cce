"""Alert episodes (docs/operations.md §Health, SLIs and alerts): one FIRING and one RESOLVED per persisting condition."""

from __future__ import annotations

import datetime as dt

import pytest

from ifd_core.ops.alerts import AlertBook, AlertRule, rules_from
from ifd_core.settings import get_settings
from warehouse.ops_events import AlertStore
from warehouse.sql import query

T0 = dt.datetime(2025, 3, 10, 15, 0, tzinfo=dt.UTC)
LAT = "latency.decision_p95"
ACC = "accuracy.last_resolved"


@pytest.fixture
def settings():
    return get_settings()


@pytest.fixture
def book(settings) -> AlertBook:
    return AlertBook(rules_from(settings.alerts))


def _states(events) -> list[str]:
    return [e.state for e in events]


def test_condition_persisting_10_minutes_fires_once_and_resolves_once(book):
    events = []
    # latency p95 of 100 ms (warning 80, critical 150) for 10 minutes, observed every 30 s
    for i in range(20):
        events += book.observe(LAT, "v3", 100.0, T0 + dt.timedelta(seconds=30 * i))
    assert _states(events) == ["FIRING"]
    assert book.firing() == [(LAT, "v3", "warning")]
    events += book.observe(LAT, "v3", 40.0, T0 + dt.timedelta(minutes=10))
    for i in range(5):  # staying healthy writes nothing more
        events += book.observe(LAT, "v3", 40.0, T0 + dt.timedelta(minutes=10, seconds=30 * i))
    assert _states(events) == ["FIRING", "RESOLVED"]
    assert events[0].episode_id == events[1].episode_id
    assert events[0].severity == "warning" and events[0].threshold == 80.0
    assert book.firing() == []
    # the next occurrence is a new episode
    again = book.observe(LAT, "v3", 100.0, T0 + dt.timedelta(minutes=20))
    assert _states(again) == ["FIRING"] and again[0].episode_id != events[0].episode_id


def test_warning_then_critical_escalates_once(book):
    events = []
    for i, v in enumerate([100.0, 120.0, 200.0, 300.0, 160.0, 100.0, 200.0]):
        events += book.observe(LAT, "v3", v, T0 + dt.timedelta(seconds=30 * i))
    assert _states(events) == ["FIRING", "ESCALATED"]
    assert events[1].severity == "critical" and events[1].threshold == 150.0
    assert len({e.episode_id for e in events}) == 1
    assert book.firing() == [(LAT, "v3", "critical")]
    events += book.observe(LAT, "v3", 10.0, T0 + dt.timedelta(minutes=5))
    assert _states(events) == ["FIRING", "ESCALATED", "RESOLVED"]


def test_direct_critical_fires_critical_without_escalation(book):
    events = book.observe(LAT, "v3", 500.0, T0)
    events += book.observe(LAT, "v3", 500.0, T0 + dt.timedelta(seconds=30))
    assert _states(events) == ["FIRING"]
    assert events[0].severity == "critical"


def test_lower_is_bad_rule_fires_below(book):
    # accuracy warning 0.75, critical 0.70: high accuracy is fine
    assert book.observe(ACC, "v3", 0.90, T0) == []
    assert book.observe(ACC, "v3", 0.75, T0) == []  # at the threshold is not below it
    ev = book.observe(ACC, "v3", 0.72, T0 + dt.timedelta(seconds=30))
    assert _states(ev) == ["FIRING"] and ev[0].severity == "warning"
    ev = book.observe(ACC, "v3", 0.60, T0 + dt.timedelta(seconds=60))
    assert _states(ev) == ["ESCALATED"]
    ev = book.observe(ACC, "v3", 0.80, T0 + dt.timedelta(seconds=90))
    assert _states(ev) == ["RESOLVED"]


def test_rule_level():
    hi = AlertRule("x", "x", warning=1.0, critical=2.0)
    lo = AlertRule("y", "y", warning=0.9, critical=0.8, higher_is_bad=False)
    assert [hi.level(v) for v in (0.5, 1.0, 1.5, 2.0, 2.5)] == [
        None,
        None,
        "warning",
        "warning",
        "critical",
    ]
    assert [lo.level(v) for v in (0.95, 0.9, 0.85, 0.8, 0.7)] == [
        None,
        None,
        "warning",
        "warning",
        "critical",
    ]


def test_none_or_nan_value_changes_nothing(book):
    assert book.observe(LAT, "v3", None, T0) == []
    assert book.observe(LAT, "v3", float("nan"), T0) == []
    assert book.firing() == []
    book.observe(LAT, "v3", 100.0, T0)
    assert book.observe(LAT, "v3", None, T0 + dt.timedelta(seconds=30)) == []
    assert book.firing() == [(LAT, "v3", "warning")]  # "no data" does not resolve


def test_naive_timestamp_rejected(book):
    with pytest.raises(ValueError):
        book.observe(LAT, "v3", 100.0, dt.datetime(2025, 3, 10, 15, 0))


def test_subjects_are_separate_episodes(book):
    a = book.observe(LAT, "v1", 100.0, T0)
    b = book.observe(LAT, "v3", 100.0, T0)
    assert _states(a) == _states(b) == ["FIRING"]
    assert a[0].episode_id != b[0].episode_id


def test_from_rows_rebuilds_open_episodes(book, settings):
    rows = [e.row() for e in book.observe(LAT, "v3", 200.0, T0)]
    rows += [e.row() for e in book.observe(ACC, "v3", 0.5, T0)]
    rows += [e.row() for e in book.observe(ACC, "v3", 0.9, T0 + dt.timedelta(seconds=30))]
    rebuilt = AlertBook.from_rows(rules_from(settings.alerts), list(reversed(rows)))
    assert rebuilt.firing() == [(LAT, "v3", "critical")]
    assert rebuilt.observe(LAT, "v3", 300.0, T0 + dt.timedelta(minutes=1)) == []


def test_budget_month_subject_per_month(book):
    rule = "budget.month"
    jan = book.observe(rule, "2025-01", 0.85, T0)
    assert _states(jan) == ["FIRING"]
    assert book.observe(rule, "2025-01", 0.86, T0 + dt.timedelta(hours=1)) == []
    feb = book.observe(rule, "2025-02", 0.85, T0 + dt.timedelta(days=30))
    assert _states(feb) == ["FIRING"]
    assert feb[0].episode_id != jan[0].episode_id
    assert [s for _, s, _ in book.firing()] == ["2025-01", "2025-02"]


# ---------------------------------------------------------------- AlertStore over the lake


def _open_episodes(lake) -> list[tuple[str, str, str]]:
    df = query(lake, "SELECT rule, subject, episode_id FROM alerts_open ORDER BY rule, subject")
    return [tuple(r) for r in df.rows()]


def test_alert_store_restart_does_not_refire_and_resolves(lake, settings):
    store = AlertStore(lake, settings, run_id="r1")
    fired = store.observe([(LAT, "v3", 100.0, "")], ts=T0)
    assert _states(fired) == ["FIRING"]
    ep = fired[0].episode_id
    assert _open_episodes(lake) == [(LAT, "v3", ep)]

    restarted = AlertStore(lake, settings, run_id="r2")
    assert restarted.open_alerts() == [(LAT, "v3", "warning")]
    assert restarted.observe([(LAT, "v3", 110.0, "")], ts=T0 + dt.timedelta(seconds=30)) == []
    resolved = restarted.observe([(LAT, "v3", 20.0, "")], ts=T0 + dt.timedelta(minutes=10))
    assert _states(resolved) == ["RESOLVED"] and resolved[0].episode_id == ep
    assert _open_episodes(lake) == []

    rows = lake.scan("alerts").collect()
    assert sorted(rows["state"].to_list()) == ["FIRING", "RESOLVED"]
    assert AlertStore(lake, settings).open_alerts() == []


def test_alert_store_escalation_survives_restart(lake, settings):
    AlertStore(lake, settings).observe([(LAT, "v3", 100.0, "")], ts=T0)
    AlertStore(lake, settings).observe([(LAT, "v3", 200.0, "")], ts=T0 + dt.timedelta(seconds=30))
    third = AlertStore(lake, settings)
    assert third.open_alerts() == [(LAT, "v3", "critical")]
    assert third.observe([(LAT, "v3", 300.0, "")], ts=T0 + dt.timedelta(seconds=60)) == []
    states = sorted(lake.scan("alerts").collect()["state"].to_list())
    assert states == ["ESCALATED", "FIRING"]
    assert len(_open_episodes(lake)) == 1
