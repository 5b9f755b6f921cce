"""`ifd barchart`: the optional Barchart OnDemand cross-check of Databento's open interest."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

import typer

from ifd_cli.common import (
    DATE_METAVAR,
    EXIT_BUSY,
    EXIT_DATA,
    EXIT_SERVICE,
    EXIT_USAGE,
    fail,
    iso_date,
    load_settings,
    out,
)

commands = typer.Typer(
    help="Barchart OnDemand (optional): cross-check Databento's open interest and settlements.",
    no_args_is_help=True,
)


@commands.command("check")
def check(
    day: Annotated[
        dt.date,
        typer.Option("--date", parser=iso_date, metavar=DATE_METAVAR, help="Trade date."),
    ],
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Fetch Barchart's chain of DATE into barchart_chain, compare it per strike with the
    lake's Databento open interest and settlements, write the results to dq_results and alert
    when too many options disagree (docs/operations.md, "Barchart OnDemand (optional)").

    Exit 0 when every option agrees, 1 when some disagree or the lake has no Databento
    statistics for DATE, 2 without an API key, 5 when Barchart cannot serve the chain."""
    from ifd_core.marketdata.barchart import API_KEY_ENV, BarchartError, make_client
    from jobs.barchart_check import NothingToCheck, run_check
    from warehouse.migrations import CatalogBusy

    settings = load_settings(profile)
    client = make_client(settings)
    if not client.enabled:
        raise fail(
            f"no Barchart API key: set {API_KEY_ENV} (environment or .env) to enable the "
            "optional Barchart cross-check",
            EXIT_USAGE,
        )
    try:
        result = run_check(settings, day, client=client)
    except BarchartError as exc:
        raise fail(str(exc), EXIT_SERVICE) from None
    except NothingToCheck as exc:
        raise fail(str(exc), EXIT_DATA) from None
    except CatalogBusy as exc:
        raise fail(str(exc), EXIT_BUSY) from None
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=1))
    else:
        out.print(
            f"[bold]Barchart {result.root} {day}[/]: {result.chain_rows} options fetched, "
            f"{result.compared} compared, {result.disagreements} disagree (run {result.run_id})",
            highlight=False,
        )
        for chk, n in result.failed.items():
            if n:
                out.print(f"  {chk}: {n}", highlight=False, markup=False)
        if result.reason:
            out.print(result.reason, highlight=False, markup=False, soft_wrap=True)
        for e in result.alerts:
            out.print(f"alert {e.state} ({e.severity}): {e.detail}", highlight=False, markup=False)
    if not result.success:
        raise typer.Exit(EXIT_DATA)
