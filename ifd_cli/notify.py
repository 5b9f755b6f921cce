"""`ifd notify`: a person is told of failed flow runs and critical alerts (docs/operations.md
§Notifications), through a Prefect webhook block and two automations on the Prefect server."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ifd_cli.common import EXIT_SERVICE, EXIT_USAGE, fail, out

commands = typer.Typer(
    help="Notifications of failed flow runs and critical alerts (Prefect automations).",
    no_args_is_help=True,
)


def read_value(what: str) -> str:
    """A value from standard input when it is piped, else from a hidden prompt: never argv,
    where it would stay in the shell history and the process list."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().strip()
    return typer.prompt(what, hide_input=True).strip()


def prefect_api() -> str:
    """The Prefect API to talk to (`PREFECT_API_URL`, else a temporary server); exit 5 if none."""
    from flows.prefect_api import PrefectUnavailable, ensure_prefect_api

    try:
        api = ensure_prefect_api()
    except PrefectUnavailable as exc:
        raise fail(str(exc), EXIT_SERVICE) from None
    if api.temporary:
        out.print(
            "no PREFECT_API_URL: using $PREFECT_HOME's database through a temporary server; "
            "automations run only while a server runs (`ifd serve`)",
            highlight=False,
        )
    return api.url


@commands.command("setup")
def notify_setup(
    url: Annotated[
        str | None,
        typer.Option(
            help="Webhook URL that receives a JSON POST {subject, body, source}. Omit it to read "
            "it from standard input or a hidden prompt (webhook URLs often hold a token).",
        ),
    ] = None,
) -> None:
    """Create or update the webhook block `ifd-notify` and the automations `ifd: flow run
    failed` (any IFD flow run Failed or Crashed) and `ifd: critical alert` (an alert FIRING or
    ESCALATED at critical severity). Running it again updates them in place."""
    from flows.notifications import setup_notifications

    url = url or read_value("webhook URL")
    if not url.startswith(("http://", "https://")):
        raise fail("the webhook URL must start with http:// or https://", EXIT_USAGE)
    prefect_api()
    try:
        done = setup_notifications(url)
    except Exception as exc:  # the server refused or went away
        raise fail(f"Prefect did not store the notifications: {exc}", EXIT_SERVICE) from None
    out.print(f"block ifd-notify: {done.block_id}", highlight=False)
    for name, automation_id in done.automations.items():
        out.print(f"automation {name!r}: {automation_id}", highlight=False)


@commands.command("test")
def notify_test() -> None:
    """Post one test message through the `ifd-notify` block now."""
    from flows.notifications import send_test_notification

    prefect_api()
    try:
        send_test_notification()
    except ValueError:
        raise fail("no block ifd-notify: run `ifd notify setup` first", EXIT_USAGE) from None
    except Exception as exc:
        raise fail(f"the webhook did not take the message: {exc}", EXIT_SERVICE) from None
    out.print("sent a test notification through ifd-notify")


@commands.command("status")
def notify_status() -> None:
    """Show the block (the webhook's host only) and whether each automation is enabled."""
    from flows.notifications import notification_status

    prefect_api()
    try:
        status = notification_status()
    except Exception as exc:
        raise fail(f"Prefect did not answer: {exc}", EXIT_SERVICE) from None
    for key, value in status.items():
        out.print(f"{key}: {value or '[red]missing[/]'}", highlight=False)
