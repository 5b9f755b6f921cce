"""`ifd config`: the effective configuration."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ifd_cli.common import load_settings, out

commands = typer.Typer(help="Show the effective configuration.", no_args_is_help=True)


@commands.command("show")
def config_show(
    profile: Annotated[
        str | None, typer.Option(help="Named profile from config/profiles/.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the effective settings (defaults → profile → .env → environment), secrets masked."""
    from ifd_core.settings import available_profiles

    s = load_settings(profile)
    payload = {"config_version": s.config_version(), **s.masked()}
    if as_json:
        typer.echo(json.dumps(payload, indent=2, default=str))
        return
    out.print(
        f"[bold]profile[/]: {s.profile or '(none)'}   available: {', '.join(available_profiles())}"
    )
    out.print(f"[bold]config_version[/]: {payload['config_version']}")
    _print_tree(payload, "")


def _print_tree(d: dict, prefix: str) -> None:
    for k, v in d.items():
        if k == "config_version":
            continue
        if isinstance(v, dict):
            _print_tree(v, f"{prefix}{k}.")
        else:
            out.print(f"  {prefix}{k} = {v}", highlight=False)
