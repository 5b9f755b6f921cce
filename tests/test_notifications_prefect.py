"""Notifications and secrets against a real Prefect server (docs/operations.md §Notifications,
§Secrets): the automations `ifd notify setup` creates post to a loopback webhook receiver when an
IFD flow run fails and when a critical alert goes FIRING, not for a warning; Secret blocks fill
the Databento key and IB settings the environment does not give, below every other source, and
the key appears in no log, repr or `ifd config show`."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

KEY = "db-SECRET-4f1c9e2a7b"  # a made-up key: only its absence from the output matters
WAIT_S = 90  # the server's triggers and actions services are polled loops


class Receiver:
    """A webhook receiver on 127.0.0.1: keeps the JSON body of every POST."""

    def __init__(self) -> None:
        posts: list[dict] = []
        self.posts = posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                posts.append(json.loads(body or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, text: str, timeout: float = WAIT_S) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self.posts:
                if text in p.get("subject", "") + p.get("body", ""):
                    return p
            time.sleep(0.5)
        raise AssertionError(f"no POST with {text!r} within {timeout} s; got {self.posts}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def notifications(prefect_server, receiver):
    """The block and automations of `ifd notify setup`, removed after the test (the server is
    shared by the session)."""
    from prefect.automations import Automation
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    from flows.notifications import AUTOMATIONS, BLOCK_NAME
    from ifd_cli.app import app

    for _ in range(2):  # twice: the second run updates in place
        result = CliRunner().invoke(app, ["notify", "setup"], input=receiver.url + "\n")
        assert result.exit_code == 0, result.output
    yield
    for name in AUTOMATIONS:
        Automation.read(name=name).delete()
    CustomWebhookNotificationBlock.delete(BLOCK_NAME)


@pytest.fixture
def secret_blocks(prefect_server):
    from prefect.blocks.system import Secret

    from flows.secrets import SECRET_SETTINGS

    yield
    for s in SECRET_SETTINGS:
        with contextlib.suppress(ValueError):  # not stored by this test
            Secret.delete(s.block)


def test_the_test_server_runs_the_triggers_service(prefect_server):
    # Automations are evaluated by the triggers service (its actions service shares the setting).
    from prefect.settings import get_current_settings

    assert get_current_settings().server.services.triggers.enabled


def test_setup_is_idempotent_and_status_shows_it(notifications, receiver):
    from prefect.client.orchestration import get_client

    from flows.notifications import AUTOMATIONS
    from ifd_cli.app import app

    with get_client(sync_client=True) as client:
        for name in AUTOMATIONS:
            assert len(client.read_automations_by_name(name)) == 1
    result = CliRunner().invoke(app, ["notify", "status"])
    assert result.exit_code == 0
    assert "ifd-notify -> 127.0.0.1" in result.output and "missing" not in result.output
    assert receiver.url not in result.output  # the host only: a webhook URL may hold a token
    assert CliRunner().invoke(app, ["notify", "test"]).exit_code == 0
    receiver.wait_for("IFD test notification", timeout=10)


def test_a_failed_ifd_flow_run_notifies(notifications, receiver):
    from prefect import flow

    from flows.baseline_refresh import baseline_refresh

    @flow(name="not_an_ifd_flow")
    def other():
        raise RuntimeError("someone else's flow")

    assert other(return_state=True).is_failed()
    state = baseline_refresh(trade_date=dt.date(2026, 3, 10), return_state=True)
    assert state.is_failed()
    post = receiver.wait_for("baseline_refresh")
    assert "Failed" in post["subject"] and "no stored sessions before it" in post["body"]
    assert post["source"] == "ifd-notify"
    time.sleep(3)  # the other flow's failure came first; it must not have posted
    assert not [p for p in receiver.posts if "not_an_ifd_flow" in json.dumps(p)]


def test_a_critical_alert_notifies_and_a_warning_does_not(notifications, receiver, lake, caplog):
    from flows.notifications import ALERT_EVENTS, install_alert_events
    from ifd_core.settings import get_settings
    from warehouse.ops_events import AlertStore

    install_alert_events()
    settings = get_settings()
    s = settings.alerts
    warning = (s.latency_p95_warning_ms + s.latency_p95_critical_ms) / 2
    critical = s.latency_p95_critical_ms * 2
    before = ALERT_EVENTS.emitted
    store = AlertStore(lake, settings)
    store.observe([("latency.decision_p95", "warn-subject", warning, "")])
    store.observe([("latency.decision_p95", "crit-subject", critical, "")])
    assert ALERT_EVENTS.emitted == before + 2
    post = receiver.wait_for("crit-subject")
    assert "IFD critical alert: latency.decision_p95" in post["subject"]
    assert "FIRING critical" in post["body"]
    time.sleep(3)
    assert not [p for p in receiver.posts if "warn-subject" in json.dumps(p)]


def test_secret_blocks_fill_what_the_environment_does_not_give(
    secret_blocks, monkeypatch, caplog, capsys
):
    from flows.settings import flow_settings
    from ifd_cli.app import app

    runner = CliRunner()
    for block, value in [
        ("ifd-databento-api-key", KEY),
        ("ifd-ib-port", "7497"),
        ("ifd-ib-account", "DU1234567"),
    ]:
        result = runner.invoke(app, ["secrets", "set", block], input=value + "\n")
        assert result.exit_code == 0, result.output
        assert value not in result.output
    with caplog.at_level(logging.DEBUG):
        s = flow_settings()
    assert s.databento.api_key.get_secret_value() == KEY
    assert (s.ib.port, s.ib.account, s.ib.host) == (7497, "DU1234567", "127.0.0.1")
    assert "databento.api_key, ib.port, ib.account" in caplog.text
    for text in (caplog.text, repr(s), str(s.model_dump()), capsys.readouterr().out):
        assert KEY not in text
    status = runner.invoke(app, ["secrets", "status"]).output
    assert "ifd-databento-api-key" in status and "Secret block" in status and KEY not in status

    # Every other source wins over the block: the SDK variable, then IFD's own over both.
    monkeypatch.setenv("DATABENTO_API_KEY", "db-from-sdk-env")
    monkeypatch.setenv("IFD_IB__PORT", "4002")
    s = flow_settings()
    assert s.databento.api_key.get_secret_value() == "db-from-sdk-env"
    assert (s.ib.port, s.ib.account) == (4002, "DU1234567")
    monkeypatch.setenv("IFD_DATABENTO__API_KEY", "db-from-ifd-env")
    assert flow_settings().databento.api_key.get_secret_value() == "db-from-ifd-env"
    shown = runner.invoke(app, ["config", "show"]).output
    assert "db-from-ifd-env" not in shown and "api_key = **********" in shown


def test_a_bad_secret_value_is_refused_before_it_is_stored(secret_blocks):
    from prefect.blocks.system import Secret

    from ifd_cli.app import app

    result = CliRunner().invoke(app, ["secrets", "set", "ifd-ib-port"], input="not-a-port\n")
    assert result.exit_code == 2 and "ib.port" in result.output
    with pytest.raises(ValueError):
        Secret.load("ifd-ib-port")
