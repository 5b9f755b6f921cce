"""Notifications (docs/operations.md §Notifications): the alert events and their listener, without
a Prefect server. The end-to-end path through a server is tests/test_notifications_prefect.py."""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import pkgutil

import pytest

import flows
from flows.notifications import IFD_FLOWS, PrefectAlertEvents, alert_event
from ifd_core.ops.alerts import AlertEvent
from ifd_core.settings import get_settings
from warehouse.ops_events import AlertStore, add_alert_listener, remove_alert_listener

T0 = dt.datetime(2026, 3, 30, 14, 0, tzinfo=dt.UTC)


def _event(state="FIRING", severity="critical") -> AlertEvent:
    return AlertEvent(
        "a1",
        "ep1",
        "latency.decision_p95",
        "live",
        state,
        severity,
        900.0,
        500.0,
        T0,
        "decision latency p95: 900 ms > 500 ms (critical)",
    )


def test_every_ifd_flow_is_watched_by_the_failure_automation():
    from prefect import Flow

    names = set()
    for mod in pkgutil.iter_modules(flows.__path__):
        module = importlib.import_module(f"flows.{mod.name}")
        names |= {v.name for v in vars(module).values() if isinstance(v, Flow)}
    assert names == set(IFD_FLOWS)


def test_an_alert_row_becomes_an_event_the_trigger_can_match():
    ev = alert_event(_event())
    assert ev["event"] == "ifd.alert.firing"
    assert ev["resource"]["prefect.resource.id"] == "ifd.alert.latency.decision_p95.live"
    assert ev["resource"]["ifd.alert.severity"] == "critical"
    assert ev["payload"]["detail"].startswith("decision latency p95")
    assert alert_event(_event("ESCALATED"))["event"] == "ifd.alert.escalated"
    assert alert_event(_event("RESOLVED", "warning"))["event"] == "ifd.alert.resolved"


def test_without_an_api_the_alert_is_stored_and_a_warning_says_so_once(lake, monkeypatch, caplog):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # The session's Prefect test server sets PREFECT_API_URL in Prefect's settings context, not
    # only in the environment: both must be empty for this case.
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    # Only this listener: a flow run earlier in the session registers the process-wide one.
    monkeypatch.setattr("warehouse.ops_events._ALERT_LISTENERS", [])
    listener = PrefectAlertEvents()
    add_alert_listener(listener)
    try:
        store = AlertStore(lake, get_settings())
        with (
            temporary_settings(restore_defaults={PREFECT_API_URL}),
            caplog.at_level(logging.WARNING, logger="flows.notifications"),
        ):
            store.observe([("latency.decision_p95", "live", 900.0, "")], T0)
            store.observe([("latency.decision_p95", "other", 900.0, "")], T0)
    finally:
        remove_alert_listener(listener)
    warnings = [r for r in caplog.records if "no PREFECT_API_URL" in r.getMessage()]
    assert len(warnings) == 1 and listener.emitted == 0
    assert lake.scan("alerts").collect().height == 2


def test_a_failing_listener_does_not_lose_the_alert(lake, caplog):
    def broken(events):
        raise RuntimeError("listener down")

    add_alert_listener(broken)
    try:
        with caplog.at_level(logging.ERROR, logger="warehouse.ops_events"):
            events = AlertStore(lake, get_settings()).observe(
                [("latency.decision_p95", "live", 900.0, "")], T0
            )
    finally:
        remove_alert_listener(broken)
    assert [e.state for e in events] == ["FIRING"]
    assert lake.scan("alerts").collect().height == 1
    assert "listener down" in caplog.text


@pytest.mark.parametrize("url", ["ftp://x", "hooks.example"])
def test_setup_refuses_a_url_that_is_not_http(url):
    from typer.testing import CliRunner

    from ifd_cli.app import app

    result = CliRunner().invoke(app, ["notify", "setup", "--url", url])
    assert result.exit_code == 2 and "http://" in result.output


def test_the_cli_offers_exactly_the_secret_blocks_flows_read():
    from flows.secrets import BY_NAME
    from ifd_cli.secret_blocks import SecretBlock

    assert [b.value for b in SecretBlock] == list(BY_NAME)


def test_no_block_is_read_without_an_api_or_for_a_setting_the_environment_gave(monkeypatch):
    from flows.secrets import SECRET_SETTINGS, apply_secret_blocks, given_elsewhere

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert apply_secret_blocks(get_settings()) == []  # no API: nothing read, nothing changed
    monkeypatch.setenv("DATABENTO_API_KEY", "db-sdk")
    monkeypatch.setenv("IFD_IB__PORT", "7497")
    s = get_settings()
    given = {x.key for x in SECRET_SETTINGS if given_elsewhere(s, x)}
    assert given == {"databento.api_key", "ib.port"}
