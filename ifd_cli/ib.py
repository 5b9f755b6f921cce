"""`ifd ib`: Interactive Brokers (TWS / IB Gateway), read-only checks and market data."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

import typer

from ifd_cli.common import (
    DATE_METAVAR,
    EXIT_DATA,
    EXIT_SERVICE,
    EXIT_USAGE,
    err,
    fail,
    load_settings,
    out,
    session_date,
)

commands = typer.Typer(help="Interactive Brokers (TWS / IB Gateway).", no_args_is_help=True)


@commands.command("check")
def ib_check(
    confirm_live: Annotated[
        bool,
        typer.Option(
            "--confirm-live",
            help="Accept a live (real-money) account; also needs "
            "IFD_IB__LIVE_TRADING_ENABLED=true.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Connect, and show what IFD would trade with: accounts, paper or live, open orders and
    positions (reconciled at every connect), orders IFD did not place. Sends nothing."""
    from ifd_core.broker.base import OrderRefused
    from ifd_core.broker.ib_broker import IBBroker, LiveTradingRefused

    settings = load_settings()
    broker = IBBroker(settings.ib, confirm_live=confirm_live)
    try:
        rec = broker.connect()
    except LiveTradingRefused as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    except OrderRefused as exc:
        raise fail(str(exc), EXIT_SERVICE) from None
    try:
        doc = {
            "gateway": f"{settings.ib.host}:{settings.ib.port}",
            "accounts": list(rec.accounts),
            "account": broker.account,
            "mode": broker.mode,
            "open_orders": [u.__dict__ for u in rec.open_orders],
            "positions": {str(k): v for k, v in rec.positions.items()},
            "not_placed_by_ifd": list(rec.unknown_orders),
        }
    finally:
        broker.close()
    if as_json:
        typer.echo(json.dumps(doc, indent=1))
        return
    kind = "REAL MONEY" if doc["mode"] == "ib" else "paper"
    out.print(
        f"connected to {doc['gateway']}: account {doc['account']} ({kind}); managed "
        f"{', '.join(doc['accounts'])}",
        highlight=False,
    )
    out.print(
        f"IFD's open orders: {len(doc['open_orders'])}; positions of known contracts: "
        f"{doc['positions'] or 'none'}",
        highlight=False,
    )
    for u in doc["not_placed_by_ifd"]:
        out.print(f"[yellow]not placed by IFD[/]: {u}", highlight=False)


@commands.command("record-underlying")
def ib_record_underlying(
    date: Annotated[
        dt.date | None,
        typer.Option(
            parser=session_date,
            metavar=DATE_METAVAR,
            help="Trade date (a CME session) whose futures to record; default: today's.",
        ),
    ] = None,
    seconds: Annotated[
        float | None,
        typer.Option(min=0.0, help="Record this long; default: until the session's end."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Record the underlying futures' trades from IB market data into `underlying_ticks`: the
    labeller's prices where the lake's Databento trades of the future end (Databento
    unavailable). The futures are those under the date's options; read-only, sends no order."""
    import signal
    import threading
    import time

    from ifd_core.broker.ib_quotes import QuotesUnavailable
    from ifd_core.calendar import trade_date_bounds, trade_date_of
    from jobs.ib_underlying import futures_of, record_underlying
    from warehouse.lake import Lake
    from warehouse.migrations import ensure_migrated

    settings = load_settings()
    lake = Lake(settings.data_dir)
    ensure_migrated(lake)
    day = date or trade_date_of(time.time_ns())
    until = time.time() + seconds if seconds is not None else trade_date_bounds(day)[1] / 1e9
    futures = futures_of(lake, day)
    if not futures:
        raise fail(
            f"no option of {day} is defined in the lake: ingest its definitions first", EXIT_DATA
        )
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        summary = record_underlying(
            lake,
            settings,
            until,
            futures,
            stopped=stop.is_set,
            progress=lambda m: err.print(m, highlight=False),
        )
    except QuotesUnavailable as exc:
        raise fail(str(exc), EXIT_SERVICE) from None
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    doc = {"date": day.isoformat(), **summary.__dict__}
    if as_json:
        typer.echo(json.dumps(doc, indent=1))
        return
    what = f"{summary.ticks} trades of {', '.join(summary.futures)} from IB"
    out.print(
        f"{day}: {what} in {summary.files} files; reconnects {summary.reconnects}", highlight=False
    )
