"""`ifd crossasset`: the optional Massive cross-asset confirmation of a day's v3 episodes."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

import typer

from ifd_cli.common import (
    DATE_METAVAR,
    EXIT_BUSY,
    EXIT_SERVICE,
    EXIT_USAGE,
    fail,
    iso_date,
    load_settings,
    out,
)

commands = typer.Typer(
    help="Massive (optional): QQQ/NDX options flow confirming v3 episodes.",
    no_args_is_help=True,
)


@commands.command("confirm")
def confirm(
    day: Annotated[
        dt.date,
        typer.Option("--date", parser=iso_date, metavar=DATE_METAVAR, help="Trade date."),
    ],
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Fetch the QQQ/NDX options trades of DATE's v3 episode minutes from Massive and store one
    confirmation per episode in cross_asset_confirmations (docs/operations.md, "Massive
    (optional)"). Costs requests, throttled to massive.requests_per_minute.

    Exit 0 when stored, 2 without an API key, 5 when Massive cannot serve (an incident is
    recorded and the day's earlier confirmations are kept)."""
    from ifd_core.marketdata.massive_options import API_KEY_ENV, make_client
    from jobs.cross_asset import run_confirmation
    from warehouse.lake import Lake
    from warehouse.migrations import CatalogBusy

    settings = load_settings(profile)
    client = make_client(settings)
    if not client.enabled:
        raise fail(
            f"no Massive API key: set {API_KEY_ENV} (environment or .env) to enable the "
            "optional cross-asset confirmation",
            EXIT_USAGE,
        )
    try:
        outcome = run_confirmation(settings, Lake(settings.data_dir), day, client=client)
    except CatalogBusy as exc:
        raise fail(str(exc), EXIT_BUSY) from None
    if outcome.status == "failed":
        if as_json:
            typer.echo(json.dumps(outcome.to_dict(), indent=1))
        raise fail(outcome.error or "Massive failed", EXIT_SERVICE)
    if as_json:
        typer.echo(json.dumps(outcome.to_dict(), indent=1))
        return
    s = outcome.summary
    assert s is not None  # "ok" always carries its summary
    out.print(
        f"[bold]Cross-asset {day}[/]: {s.episodes} v3 episodes confirmed from {s.trades} "
        f"QQQ/NDX options trades in {s.windows} windows ({s.requests} Massive requests)",
        highlight=False,
    )
