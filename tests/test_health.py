"""`ifd status` (docs/operations.md §Health, SLIs and alerts): every component's health from what the lake holds —
open breaker episodes, the rollout stage, firing alerts, cost against the budget — and nothing
claimed healthy that was never observed."""

from __future__ import annotations

import datetime as dt
import json

from typer.testing import CliRunner

from ifd_cli.app import app
from ifd_core.ops.resilience import Transition
from ifd_core.settings import get_settings
from jobs.health import health_snapshot
from jobs.rollout import RolloutController
from warehouse.lake import Lake
from warehouse.migrations import ensure_migrated
from warehouse.ops_events import AlertStore, BreakerIncidents

T0 = dt.datetime(2026, 3, 10, 15, 0, tzinfo=dt.UTC)


def _health(doc: dict) -> dict[str, str]:
    return {c["name"]: c["health"] for c in doc["components"]}


def test_an_empty_lake_is_unknown_not_healthy(tmp_path):
    lake = Lake(tmp_path)
    ensure_migrated(lake)
    doc = health_snapshot(lake, get_settings(data_dir=tmp_path), now=T0)
    h = _health(doc)
    assert h["feed"] == "unknown" and h["rollout"] == "unknown" and h["engine"] == "unknown"
    assert h["decision latency"] == "unknown"
    # No prices configured: the cost figure cannot be trusted, and says so.
    cost = next(c for c in doc["components"] if c["name"] == "cost")
    assert cost["health"] == "warning" and "NO PRICES CONFIGURED" in cost["detail"]
    assert doc["overall"] == "warning"


def test_open_breaker_rollback_and_firing_alert_are_critical_until_resolved(tmp_path):
    lake = Lake(tmp_path)
    ensure_migrated(lake)
    settings = get_settings(data_dir=tmp_path)
    sink = BreakerIncidents(lake, "run-1")
    sink(Transition("warehouse:lake", "closed", "open", "3 consecutive failures", T0, 30.0))
    RolloutController(lake, settings).promote(to="PAPER", operator="test")
    RolloutController(lake, settings).rollback("test rollback", operator="test")
    AlertStore(lake, settings).observe([("latency.decision_p95", "live", 500.0, "")], ts=T0)

    doc = health_snapshot(lake, settings, now=T0)
    h = _health(doc)
    assert h["breaker:warehouse:lake"] == "critical"
    assert h["rollout"] == "critical" and h["alerts"] == "critical"
    assert doc["overall"] == "critical"

    # The breaker closes (its episode resolves), the alert clears: those components recover;
    # the rollout stays critical until someone promotes again.
    later = T0 + dt.timedelta(minutes=5)
    sink(Transition("warehouse:lake", "open", "half_open", "cool-down over", later, 30.0))
    sink(Transition("warehouse:lake", "half_open", "closed", "2 probes ok", later, 0.0))
    AlertStore(lake, settings).observe([("latency.decision_p95", "live", 10.0, "")], ts=later)
    h = _health(health_snapshot(lake, settings, now=later))
    assert h["breakers"] == "ok" and h["alerts"] == "ok" and h["rollout"] == "critical"

    res = CliRunner().invoke(
        app, ["status", "--json"], env={"IFD_WAREHOUSE__DATA_DIR": str(tmp_path)}
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["overall"] == "critical"
