"""`ifd cost`: data cost against the monthly budget."""

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
    err,
    fail,
    iso_date,
    load_settings,
    out,
)

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
    (status, projection, cost per actionable signal), the cost advice (as `ifd cost advise`) and
    the HTML report (docs/operations.md §Costs)."""
    from ifd_core.ops.costs import NO_PRICES
    from jobs.cost_advice import advice_lines, cost_advice
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
        advice = cost_advice(lake, settings, d.replace(day=1), d)
    except (CatalogBusy, SqlError) as exc:
        raise fail(str(exc), EXIT_BUSY) from None
    report = write_cost_report(settings.data_dir, mc, advice=advice)
    if not mc.prices_configured:
        err.print(f"[bold red]{NO_PRICES}[/]", highlight=False, soft_wrap=True)
    doc = {
        **mc.to_dict(),
        "report": str(report),
        "booked_subscription_entries": len(booked),
        "advice": advice.to_dict()["advice"],
    }
    if as_json:
        typer.echo(json.dumps(doc, indent=1))
        return
    out.print(
        f"[bold]Costs {mc.month}[/] to {d}: booked {len(booked)} subscription entries",
        highlight=False,
    )
    for line in summary_lines(mc)[(0 if mc.prices_configured else 2) :]:
        out.print(line, highlight=False, markup=False)
    for line in advice_lines(advice):
        out.print(line, highlight=False, markup=False)
    out.print(f"report: {report}", highlight=False)


def advice_period(
    month: str | None, start: dt.date | None, end: dt.date | None, today: dt.date
) -> tuple[dt.date, dt.date]:
    """[start, end] of `ifd cost advise`: a month (to today if it is this month), a range, or
    this month to today."""
    if month and (start or end):
        raise fail("give --month or --start/--end, not both", EXIT_USAGE)
    if month:
        try:
            first = dt.date.fromisoformat(f"{month}-01")
        except ValueError:
            raise fail(f"--month must look like YYYY-MM, got {month!r}", EXIT_USAGE) from None
        nxt = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        return first, min(nxt - dt.timedelta(days=1), today)
    if start or end:
        if not (start and end):
            raise fail("--start and --end go together", EXIT_USAGE)
        if end < start:
            raise fail(f"--end {end} is before --start {start}", EXIT_USAGE)
        return start, end
    return today.replace(day=1), today


@commands.command("advise")
def cost_advise(
    month: Annotated[
        str | None, typer.Option(metavar="YYYY-MM", help="Month to advise on (trade dates).")
    ] = None,
    start: Annotated[
        dt.date | None,
        typer.Option(parser=iso_date, metavar=DATE_METAVAR, help="First trade date."),
    ] = None,
    end: Annotated[
        dt.date | None,
        typer.Option(parser=iso_date, metavar=DATE_METAVAR, help="Last trade date."),
    ] = None,
    quote: Annotated[
        bool,
        typer.Option(
            help="Quote alternative requests with Databento's metadata.get_cost (free; booked "
            "as quotes in the ledger). Needs IFD_DATABENTO__API_KEY."
        ),
    ] = True,
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the advice as JSON.")] = False,
) -> None:
    """Advice on cutting data cost from what the lake actually received and the signals it
    produced: far strikes, mbo that trades could replace, idle hours, repeated pulls; each with
    its saving (from the ledger or a get_cost quote) and the signals it would have cost
    (docs/operations.md §Costs). Default period: this month to today (UTC)."""
    from ifd_core.marketdata.historical import HistoricalError
    from jobs.cost_advice import advice_lines, cost_advice
    from warehouse.lake import Lake
    from warehouse.migrations import CatalogBusy
    from warehouse.sql import SqlError

    settings = load_settings(profile)
    today = dt.datetime.now(dt.UTC).date()
    lo, hi = advice_period(month, start, end, today)
    try:
        report = cost_advice(Lake(settings.data_dir), settings, lo, hi, quote=quote)
    except (CatalogBusy, SqlError) as exc:
        raise fail(str(exc), EXIT_BUSY) from None
    except HistoricalError as exc:
        raise fail(str(exc), EXIT_SERVICE) from None
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=1, default=str))
        return
    for line in advice_lines(report):
        out.print(line, highlight=False, markup=False)
