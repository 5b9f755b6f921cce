"""The `ifd` command: the Typer app, its global options, and the command modules it mounts.

The CLI is the top layer: it composes flows, jobs, reports, the warehouse and ifd_core, importing
them lazily inside each command so that `ifd --help` stays fast. Each module of this package holds
one command group (listed in the package docstring); `common` holds what they share.

Exit codes (stable, for scripts):
  0 success · 1 bad or rejected data (refused, quarantined) · 2 usage error
  3 refused by the budget gate · 4 warehouse busy · 5 outside service failed
"""

from __future__ import annotations

from typing import Annotated

import typer

from ifd_cli import (
    barchart,
    config,
    cost,
    crossasset,
    data,
    demo,
    detect,
    ib,
    live,
    notify,
    ops,
    research,
    rollout,
    secret_blocks,
)
from ifd_cli.common import (  # re-exported: the exit codes are part of the command's contract
    EXIT_BROKEN_PIPE,
    EXIT_BUDGET,
    EXIT_BUSY,
    EXIT_DATA,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SERVICE,
    EXIT_USAGE,
    fail,
    start_invocation,
)

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_BUDGET",
    "EXIT_BUSY",
    "EXIT_DATA",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_SERVICE",
    "EXIT_USAGE",
    "app",
    "main",
]

app = typer.Typer(
    name="ifd",
    help=(
        "IFD: institutional flow detection in CME NQ futures options.\n\n"
        "Exit codes: 0 ok, 1 bad or rejected data, 2 usage error, 3 refused by the budget gate, "
        "4 warehouse busy, 5 outside service failed."
    ),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"ifd {version('ifd')}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _global_options(
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version of IFD and exit.",
        ),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Log at DEBUG (overrides the log_level setting)."),
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="Log warnings and errors only (overrides log_level)."),
    ] = False,
) -> None:
    if verbose and quiet:
        raise fail("choose one of --verbose and --quiet", EXIT_USAGE)
    start_invocation("DEBUG" if verbose else "WARNING" if quiet else None, quiet=quiet)


# Commands are listed in `ifd --help` in this order: the single commands, then the groups.
for module in (data, detect, live, research, ops, demo):
    app.add_typer(module.commands)
app.add_typer(config.commands, name="config")
app.add_typer(cost.commands, name="cost")
app.add_typer(rollout.commands, name="rollout")
app.add_typer(ib.commands, name="ib")
app.add_typer(notify.commands, name="notify")
app.add_typer(secret_blocks.commands, name="secrets")
app.add_typer(barchart.commands, name="barchart")
app.add_typer(crossasset.commands, name="crossasset")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
