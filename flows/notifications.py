"""Notifications through Prefect's own blocks and automations (docs/operations.md §Notifications).

A failed run or a critical alert must reach a person, not only a table. IFD does not send
anything itself: `ifd notify setup` stores one webhook notification block and two automations on
the Prefect server, whose triggers service evaluates them and whose actions service posts:

* ``ifd: flow run failed`` — a run of any IFD flow enters Failed or Crashed;
* ``ifd: critical alert`` — an ``ifd.alert.firing`` (or ``ifd.alert.escalated``) event of
  severity critical, which IFD emits here for every alert row the warehouse stores
  (:func:`install_alert_events`, added by ``flows.settings.flow_settings``).

Events go out only when a Prefect API is configured (``PREFECT_API_URL``, as under ``ifd serve``
and its workers); without one the alert is still stored and a warning says, once per process,
that nobody is notified.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ifd_core.ops.alerts import AlertEvent

log = logging.getLogger(__name__)

BLOCK_NAME = "ifd-notify"
FLOW_FAILED_AUTOMATION = "ifd: flow run failed"
CRITICAL_ALERT_AUTOMATION = "ifd: critical alert"
AUTOMATIONS = (FLOW_FAILED_AUTOMATION, CRITICAL_ALERT_AUTOMATION)

# The flow names of IFD (each flow's ``@flow(name=...)``; tests/test_notifications.py checks the
# list against flows/): only their runs notify, so a shared server's other flows stay quiet.
IFD_FLOWS = (
    "barchart_check",
    "baseline_refresh",
    "cost_report",
    "demo",
    "detection",
    "extended_test",
    "historical_ingest",
    "lake_compaction",
    "live_stream",
    "nightly_backtest",
)
FAILED_STATES = ("Failed", "Crashed")

ALERT_EVENT = {
    "FIRING": "ifd.alert.firing",
    "ESCALATED": "ifd.alert.escalated",
    "RESOLVED": "ifd.alert.resolved",
}
# The states that notify when critical: a new critical episode, or a warning that became one.
NOTIFYING_ALERT_EVENTS = (ALERT_EVENT["FIRING"], ALERT_EVENT["ESCALATED"])

FLOW_FAILED_SUBJECT = "IFD: {{ flow.name }} run {{ flow_run.name }} {{ flow_run.state.name }}"
FLOW_FAILED_BODY = (
    "Flow run {{ flow_run.name }} of {{ flow.name }} entered {{ flow_run.state.name }}: "
    "{{ flow_run.state.message }}"
)
ALERT_SUBJECT = "IFD critical alert: {{ event.payload.rule }} ({{ event.payload.subject }})"
ALERT_BODY = "{{ event.payload.state }} {{ event.payload.severity }}: {{ event.payload.detail }}"


# -- the alert events --------------------------------------------------------------------------


def alert_event(e: AlertEvent) -> dict[str, Any]:
    """The Prefect event for one alert row: name, resource (labels the trigger matches) and
    payload (what the notification's template shows)."""
    return {
        "event": ALERT_EVENT[e.state],
        "resource": {
            "prefect.resource.id": f"ifd.alert.{e.rule}.{e.subject}",
            "prefect.resource.name": f"{e.rule} {e.subject}",
            "ifd.alert.rule": e.rule,
            "ifd.alert.severity": e.severity,
            "ifd.alert.episode": e.episode_id,
        },
        "occurred": e.ts,
        "payload": {
            "rule": e.rule,
            "subject": e.subject,
            "state": e.state,
            "severity": e.severity,
            "value": e.value,
            "threshold": e.threshold,
            "detail": e.detail,
        },
    }


def prefect_api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


class PrefectAlertEvents:
    """The alert listener that emits one Prefect event per stored alert row.

    Without ``PREFECT_API_URL`` it emits nothing (Prefect would otherwise start a temporary
    server inside the job) and warns once per process: the alert is stored, nobody is told.
    """

    def __init__(self) -> None:
        self.warned = False
        self.emitted = 0

    def __call__(self, events: list[AlertEvent]) -> None:
        if not events:
            return
        if prefect_api_url() is None:
            if not self.warned:
                self.warned = True
                log.warning(
                    "no PREFECT_API_URL: alert events are not sent to Prefect, so no "
                    "notification goes out for them (the alerts table has them; "
                    "docs/operations.md §Notifications)"
                )
            return
        from prefect.events import emit_event

        for e in events:
            if emit_event(**alert_event(e)) is not None:
                self.emitted += 1
            elif not self.warned:
                self.warned = True
                log.warning("Prefect did not accept the %s event for %s", e.state, e.rule)


ALERT_EVENTS = PrefectAlertEvents()


def install_alert_events() -> None:
    """Emit a Prefect event for every alert row this process stores (idempotent)."""
    from warehouse.ops_events import add_alert_listener

    add_alert_listener(ALERT_EVENTS)


# -- the block and the automations -------------------------------------------------------------


@dataclass(frozen=True)
class NotificationSetup:
    block_id: str
    automations: dict[str, str]  # name -> id


def _flow_failed_trigger():
    from prefect.events.schemas.automations import EventTrigger, Posture

    return EventTrigger(
        expect={f"prefect.flow-run.{s}" for s in FAILED_STATES},
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related={"prefect.resource.role": "flow", "prefect.resource.name": list(IFD_FLOWS)},
        posture=Posture.Reactive,
        threshold=1,
        within=0,
    )


def _critical_alert_trigger():
    from prefect.events.schemas.automations import EventTrigger, Posture

    return EventTrigger(
        expect=set(NOTIFYING_ALERT_EVENTS),
        match={"prefect.resource.id": "ifd.alert.*", "ifd.alert.severity": "critical"},
        posture=Posture.Reactive,
        threshold=1,
        within=0,
    )


def setup_notifications(url: str) -> NotificationSetup:
    """Create or update the webhook block ``ifd-notify`` (a POST of JSON ``subject``/``body``
    to ``url``) and the two automations that use it; running it again changes nothing else."""
    from prefect.automations import Automation
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.events.actions import SendNotification

    block = CustomWebhookNotificationBlock(
        name=BLOCK_NAME,
        url=url,
        method="POST",
        json_data={"subject": "{{subject}}", "body": "{{body}}", "source": "{{name}}"},
    )
    block_id = block.save(BLOCK_NAME, overwrite=True)
    wanted = {
        FLOW_FAILED_AUTOMATION: (
            "A run of an IFD flow entered Failed or Crashed.",
            _flow_failed_trigger(),
            FLOW_FAILED_SUBJECT,
            FLOW_FAILED_BODY,
        ),
        CRITICAL_ALERT_AUTOMATION: (
            "An IFD alert went FIRING (or ESCALATED) at critical severity.",
            _critical_alert_trigger(),
            ALERT_SUBJECT,
            ALERT_BODY,
        ),
    }
    ids: dict[str, str] = {}
    for name, (description, trigger, subject, body) in wanted.items():
        fields = {
            "name": name,
            "description": description,
            "enabled": True,
            "trigger": trigger,
            "actions": [SendNotification(block_document_id=block_id, subject=subject, body=body)],
        }
        try:
            existing = Automation.read(name=name)
        except ValueError:
            ids[name] = str(Automation(**fields).create().id)
            continue
        updated = Automation(id=existing.id, **fields)
        updated.update()
        ids[name] = str(existing.id)
    return NotificationSetup(str(block_id), ids)


def send_test_notification() -> None:
    """Post one message through the stored block now (not through an automation)."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    block = CustomWebhookNotificationBlock.load(BLOCK_NAME)
    block.notify("IFD test notification: the webhook is reachable.", subject="IFD test")


def notification_status() -> dict[str, Any]:
    """Whether the block exists (and where it posts, host only) and each automation's state."""
    from urllib.parse import urlsplit

    from prefect.automations import Automation
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    status: dict[str, Any] = {"api": prefect_api_url() or "(temporary server)"}
    try:
        block = CustomWebhookNotificationBlock.load(BLOCK_NAME)
        status["block"] = f"{BLOCK_NAME} -> {urlsplit(block.url).netloc or '?'}"
    except ValueError:
        status["block"] = None
    for name in AUTOMATIONS:
        try:
            status[name] = "enabled" if Automation.read(name=name).enabled else "disabled"
        except ValueError:
            status[name] = None
    return status
