"""`ifd status`, `repair` and `serve`: the platform's health, recovery of a killed writer,
and the Prefect cockpit.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ifd_cli.common import EXIT_SERVICE, err, esc, fail, load_settings, out

commands = typer.Typer()


@commands.command()
def status(
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Health of every component at a glance: feed, breakers, rollout, alerts, SLIs, cost."""
    from jobs.health import health_snapshot
    from warehouse.lake import Lake

    settings = load_settings(profile)
    doc = health_snapshot(Lake(settings.data_dir), settings)
    if as_json:
        typer.echo(json.dumps(doc, indent=1, default=str))
        return
    colour = {"ok": "green", "warning": "yellow", "critical": "red", "unknown": "dim"}
    for c in doc["components"]:
        out.print(
            f"[{colour[c['health']]}]{c['health']:<8}[/] [bold]{c['name']:<22}[/] "
            f"{esc(c['detail'])}",
            highlight=False,
            soft_wrap=True,
        )


@commands.command()
def repair(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Finish what a killed writer left: roll back its uncommitted lake transactions.

    Every writing command does this first on its own; run it to see what was rolled back. A
    transaction is dead when the lock its writer holds is free (the writer is gone); a live
    one on another machine of a shared lake is left alone. Nothing committed is ever undone.
    """
    from warehouse.lake import Lake

    lake = Lake(load_settings(None).data_dir)
    before = lake.snapshot_id()
    rolled = lake.recover()
    doc = {"snapshot": before, "rolled_back": rolled}
    if as_json:
        typer.echo(json.dumps(doc, indent=1))
        return
    for r in rolled:
        who = f"pid {r.get('pid', '?')} on {r.get('host', '?')}"
        line = f"rolled back: {r.get('unit')} (started {r.get('started', '?')} by {who})"
        out.print(line, highlight=False, markup=False)
    out.print(
        f"lake at snapshot {before}: {len(rolled)} unfinished unit(s) rolled back",
        highlight=False,
    )


@commands.command()
def serve(
    port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Port of the Prefect server (UI and API). Default: PREFECT_SERVER_API_PORT, "
            "else 4200.",
        ),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(
            help="Address the server listens on. Default: PREFECT_SERVER_API_HOST, else 127.0.0.1."
        ),
    ] = None,
    activate: Annotated[
        bool, typer.Option(help="Activate every schedule (prefect.yaml keeps them inactive).")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, help="Flow runs at the same time.")] = 4,
    reports_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="Port serving <data>/reports/ (read-only HTTP, same host) for the report links "
            "of artifacts. Default: the UI's port + 1; 0: any free port.",
        ),
    ] = None,
) -> None:
    """The Prefect cockpit on one machine: server + every deployment of prefect.yaml, served.

    Starts a Prefect server (or reuses the one at PREFECT_API_URL / host:port) and serves all
    deployments from this process until Ctrl-C; each flow run is its own subprocess. Open the UI
    at the URL it prints (http://HOST:PORT); the HTML reports of <data>/reports/ are served at
    the second URL it prints (http://HOST:PORT+1/), which the artifacts' report links use.
    Browsers on other machines need PREFECT_UI_API_URL=http://<address they reach>:PORT/api and
    IFD_REPORTS__BASE_URL=http://<address they reach>:PORT+1. For several machines use a work
    pool and workers (README).
    """
    from flows.serve import serve as run_serve

    try:
        run_serve(
            host,
            port,
            activate=activate,
            limit=limit,
            reports_port=reports_port,
            say=lambda m: err.print(m, highlight=False, soft_wrap=True),
        )
    except RuntimeError as exc:
        raise fail(str(exc), EXIT_SERVICE) from None
    except KeyboardInterrupt:
        err.print("stopped")
