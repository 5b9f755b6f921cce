"""`ifd cost`: data cost against the monthly budget."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

import typer

from ifd_cli.common import DATE_METAVAR, EXIT_BUSY, err, fail, iso_date, load_settings, out

commands = typer.Typer(help="Data cost against the monthly budget.", no_args_is_help=True)


@commands.command("report")
def cost_report(
    day: Annotated[
        dt.date | None,
        typer.Option(
            parser=iso_date,
            metavar=DATE_METAVAR,
            help="Report day (UTC, the ledger's; default today).",
        ),
    ] = None,
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Book the month's subscription days up to DAY, then the month to date against the budget
    (status, projection, cost per actionable signal) and the HTML report (docs/operations.md
    §Costs)."""
    from ifd_core.ops.costs import NO_PRICES
    from jobs.cost_report import month_to_date, summary_lines
    from reports.cost import write_cost_report
    from warehouse.cost_ledger import LakeCostLedger
    from warehouse.lake import Lake
    from warehouse.migrations import CatalogBusy
    from warehouse.sql import SqlError

    settings = load_settings(profile)
    d = day or dt.datetime.now(dt.UTC).date()
    lake = Lake(settings.data_dir)
    try:
        booked = LakeCostLedger(lake, settings.costs).book_subscriptions(d)
        mc = month_to_date(lake, settings, d)
    except (CatalogBusy, SqlError) as exc:
        raise fail(str(exc), EXIT_BUSY) from None
    report = write_cost_report(settings.data_dir, mc)
    if not mc.prices_configured:
        err.print(f"[bold red]{NO_PRICES}[/]", highlight=False, soft_wrap=True)
    doc = {**mc.to_dict(), "report": str(report), "booked_subscription_entries": len(booked)}
    if as_json:
        typer.echo(json.dumps(doc, indent=1))
        return
    out.print(
        f"[bold]Costs {mc.month}[/] to {d}: booked {len(booked)} subscription entries",
        highlight=False,
    )
    for line in summary_lines(mc)[(0 if mc.prices_configured else 2) :]:
        out.print(line, highlight=False, markup=False)
    out.print(f"report: {report}", highlight=False)
