"""`ifd gateway`, `live`, `halt` and `resume`: the live feed (or its replay), and the
emergency stop every trading mode obeys.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer

from ifd_cli.common import (
    DATE_METAVAR,
    EXIT_DATA,
    EXIT_SERVICE,
    EXIT_USAGE,
    Algo,
    choice_option,
    err,
    esc,
    fail,
    load_settings,
    out,
    parse_algos,
    require_databento_key,
    session_date,
)

commands = typer.Typer()


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise fail(f"--gateway must be HOST:PORT, got {value!r}", EXIT_USAGE)
    return host, int(port)


@commands.command()
def gateway(
    data: Annotated[Path, typer.Option(help="Directory (or file) of DBN files to serve.")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0 picks a free one).")] = 13000,
    speed: Annotated[str, typer.Option(help="1, 10 (times real time) or max.")] = "max",
    drop_after: Annotated[
        int | None, typer.Option(help="Drop the connection once, after N records.")
    ] = None,
    drop_every: Annotated[
        int | None, typer.Option(help="Drop the connection every N records.")
    ] = None,
    replay_window_s: Annotated[
        float | None, typer.Option(help="Refuse intraday replay older than this (seconds).")
    ] = None,
    outage_s: Annotated[
        float, typer.Option(help="Market time a reconnect without replay misses after a drop.")
    ] = 0.0,
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
) -> None:
    """Serve stored DBN files over the Databento live protocol on loopback (a replay gateway).

    The unmodified Databento Live client connects to it: authentication with the API key from
    the settings (IFD_DATABENTO__API_KEY), subscriptions with parent symbols, intraday replay from
    `start`, heartbeats, then the records in ts_recv order at the chosen speed. Use it to replay
    stored days through `ifd live`, and to test reconnects with --drop-after / --drop-every.
    """
    from ifd_core.marketdata.replay_gateway import run_gateway

    settings = load_settings(profile)
    key = require_databento_key(settings, "the gateway accepts that key only")
    if speed == "max":
        pace = None
    else:
        try:
            pace = float(speed)
        except ValueError:
            raise fail(f"--speed must be a number or max, got {speed!r}", EXIT_USAGE) from None
        if pace <= 0:
            raise fail("--speed must be positive", EXIT_USAGE)
    if not data.exists():
        raise fail(f"{data}: no such file or directory", EXIT_USAGE)

    def ready(bound: int) -> None:
        err.print(f"replay gateway serving {data} on {host}:{bound} (speed {speed})")

    try:
        stats = run_gateway(
            data,
            [key],
            host,
            port,
            pace,
            drop_after,
            drop_every,
            replay_window_s,
            outage_s,
            on_ready=ready,
        )
    except (OSError, ValueError) as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    err.print(
        f"replay gateway stopped: {stats.connections} connections, {stats.sessions_completed} "
        f"sessions served to the end, {stats.records_sent:,} records, {stats.drops} drops, "
        f"{stats.auth_failures} refused keys",
        highlight=False,
    )


@commands.command()
def live(
    gateway: Annotated[str, typer.Option("--gateway", help="Live gateway HOST:PORT.")],
    date: Annotated[
        dt.date | None,
        typer.Option(
            parser=session_date,
            metavar=DATE_METAVAR,
            help="Stream this trade date (a CME session) from its start and stop after it. "
            "Without it the run follows the feed, date after date.",
        ),
    ] = None,
    exit_on_end: Annotated[
        bool, typer.Option(help="Stop when the gateway ends the session.")
    ] = False,
    algo: Annotated[Algo, choice_option(Algo, "Detectors to run.")] = Algo.both,
    trade: Annotated[
        bool,
        typer.Option(
            help="Trade the routed signals: paper at the end of each date, or through IB as "
            "they are decided when execution.broker=ib."
        ),
    ] = True,
    confirm_live: Annotated[
        bool,
        typer.Option(
            "--confirm-live",
            help="Consent to trading a real-money IB account (also needs ib.live_trading_enabled).",
        ),
    ] = False,
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON.")] = False,
) -> None:
    """Run the FlowEngine on the live feed: windows, signals, gaps and incidents to the lake.

    The stream is captured to a DBN file per trade date and the lake is written in micro-batches
    with a checkpoint after each; SIGTERM or Ctrl-C flushes and exits, and the same command
    resumes from the checkpoint without losing or repeating anything. At the end of a date the
    capture is ingested and the day's files are the ones `ifd detect` would write. Against the
    replay gateway (`ifd gateway`), --exit-on-end stops when it has served all its days.
    """
    import signal

    from ifd_core.marketdata.live_source import LiveFeedError
    from jobs.live.dates import WarehouseUnavailable
    from jobs.live.runner import BrokerNotReady, LiveOptions, LiveRunner
    from warehouse.lake import Lake

    host, port = _host_port(gateway)
    settings = load_settings(profile)
    require_databento_key(settings, "the live gateway authenticates with it")
    day = date
    opts = LiveOptions(
        host,
        port,
        day=day,
        exit_on_end=exit_on_end,
        algos=parse_algos(algo),
        trade=trade,
        confirm_live=confirm_live,
    )
    runner = LiveRunner(
        Lake(settings.data_dir), settings, opts, progress=lambda m: err.print(m, highlight=False)
    )
    handler = lambda *_: runner.stop()  # noqa: E731
    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        summary = runner.run()
    except BrokerNotReady as exc:
        raise fail(str(exc), EXIT_USAGE if exc.live_refused else EXIT_SERVICE) from None
    except (LiveFeedError, WarehouseUnavailable) as exc:
        raise fail(str(exc), EXIT_SERVICE) from None
    except ValueError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    _print_live(summary, as_json)


def _print_live(summary, as_json: bool) -> None:
    import numpy as np

    lat = np.array(summary.decision_latency_ns, dtype=float) / 1e6
    doc = {
        "run_id": summary.run_id,
        "ended": summary.ended,
        "stopped": summary.stopped,
        "resumed_after_records": summary.resumed_from,
        "days": [d.to_row() for d in summary.days],
        "gaps": [
            {
                "gap_id": g.gap_id,
                "status": g.status,
                "start_ns": g.start_ns,
                "end_ns": g.end_ns,
                "duplicates_removed": g.duplicates_removed,
            }
            for g in summary.gaps
        ],
        "incidents": summary.incidents,
        "late_records": summary.late_records,
        "halted": summary.halted,
        "decision_latency_ms": {
            "signals": len(lat),
            "p50": float(np.percentile(lat, 50)) if len(lat) else None,
            "p99": float(np.percentile(lat, 99)) if len(lat) else None,
        },
    }
    if as_json:
        typer.echo(json.dumps(doc, indent=1))
        return
    if summary.halted:
        out.print(
            f"EMERGENCY STOP was on during this run: new entries refused ({summary.halted})",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    for d in doc["days"]:
        state = "finalized" if d["finalized"] else "checkpointed (resume with the same command)"
        cost = "" if d["live_cost_usd"] is None else f", live usage ${d['live_cost_usd']:,.2f}"
        out.print(
            f"{d['date']}: {d['records']:,} records ({d['bytes'] / 1e6:,.1f} MB{cost}), "
            f"{d['windows']:,} windows ({d['incomplete_windows']} incomplete), "
            f"{d['signals']} signals; {state}",
            highlight=False,
        )
    statuses: dict[str, int] = {}
    for g in doc["gaps"]:
        statuses[g["status"]] = statuses.get(g["status"], 0) + 1
    out.print(
        f"gaps: {len(doc['gaps'])} {statuses or ''}; incidents: {doc['incidents']}",
        highlight=False,
    )
    lm = doc["decision_latency_ms"]
    if lm["signals"]:
        out.print(
            f"decision latency over {lm['signals']} signals: p50 {lm['p50']:.2f} ms, "
            f"p99 {lm['p99']:.2f} ms (upper bound: from the oldest record of each chunk)",
            highlight=False,
        )


@commands.command()
def halt(
    reason: Annotated[str, typer.Option(help="Why trading stops (kept in the history).")],
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
) -> None:
    """Emergency stop: block every new position-opening order in every mode until `ifd resume`.

    Persisted under the data root, so running backtests, paper sessions, the live flow and the
    IB adapter see it at their next order. Exits (stops, targets, session-end flatten) still run.
    Works whatever data/control/halt.json holds: an unreadable file is kept aside next to it.
    """
    if not reason.strip():
        raise fail("--reason must not be empty: say why trading stops", EXIT_USAGE)
    from ifd_core.trading.halt import EmergencyStop

    stop = EmergencyStop(load_settings(profile).data_dir)
    try:
        change = stop.halt(reason, by="cli")
    except OSError as exc:
        raise _stop_write_failed(stop, "record the halt", exc) from None
    _said_kept_aside(stop, change)
    out.print(
        f"[bold red]HALTED[/]: {esc(reason.strip())}. New orders are refused until `ifd resume`.",
        highlight=False,
        soft_wrap=True,
    )


@commands.command()
def resume(profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None) -> None:
    """Lift the emergency stop.

    An unreadable data/control/halt.json (which every reader treats as halted) is kept aside
    next to it and replaced by a not-halted state whose history records it.
    """
    from ifd_core.trading.halt import EmergencyStop

    stop = EmergencyStop(load_settings(profile).data_dir)
    try:
        change = stop.resume(by="cli")
    except OSError as exc:
        raise _stop_write_failed(stop, "lift the halt", exc) from None
    _said_kept_aside(stop, change)
    if change:
        out.print("trading resumed: new orders are allowed again")
    else:
        out.print("trading was not halted")


def _said_kept_aside(stop, change) -> None:
    if change.kept_as is not None:
        out.print(
            f"the emergency-stop file {stop.path} was unreadable ({change.unreadable}); kept as "
            f"{change.kept_as} for inspection",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


def _stop_write_failed(stop, what: str, exc: OSError) -> typer.Exit:
    st = stop.state()
    now = "trading is treated as HALTED" if st.halted else "trading is NOT halted"
    why = esc(st.reason or "no halt recorded")
    where = esc(str(stop.path))
    return fail(f"could not {what} in {where}: {esc(str(exc))}; {now} ({why})", EXIT_DATA)
