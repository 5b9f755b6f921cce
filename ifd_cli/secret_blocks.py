"""`ifd secrets`: the Databento key and IB connection as Prefect Secret blocks, for workers that
have no environment of IFD's (docs/operations.md §Secrets)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from ifd_cli.common import EXIT_SERVICE, EXIT_USAGE, fail, load_settings, out
from ifd_cli.notify import prefect_api, read_value

commands = typer.Typer(
    help="Secrets in Prefect Secret blocks (used when the environment does not give them).",
    no_args_is_help=True,
)

# The block names of flows/secrets.py (a test keeps them equal); an Enum so --help lists them.
SecretBlock = StrEnum(
    "SecretBlock",
    {
        n: n
        for n in (
            "ifd-databento-api-key",
            "ifd-ib-host",
            "ifd-ib-port",
            "ifd-ib-client-id",
            "ifd-ib-account",
        )
    },
)


@commands.command("set")
def secrets_set(
    block: Annotated[SecretBlock, typer.Argument(help="The Secret block to store.")],
) -> None:
    """Store BLOCK's value, read from standard input (piped) or a hidden prompt, never argv."""
    from flows.secrets import BY_NAME, check_value, store_secret

    value = read_value(block.value)
    try:
        check_value(BY_NAME[block.value], value)
    except ValueError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    prefect_api()
    try:
        store_secret(block.value, value)
    except Exception as exc:  # the message may quote the request; name the failure only
        why = type(exc).__name__
        raise fail(f"Prefect did not store {block.value}: {why}", EXIT_SERVICE) from None
    out.print(f"stored Secret block {block.value}", highlight=False)


@commands.command("status")
def secrets_status(
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
) -> None:
    """Where each secret setting comes from for a flow run here (never its value)."""
    from flows.secrets import secret_status

    settings = load_settings(profile)
    prefect_api()
    for block, key, where in secret_status(settings):
        out.print(f"{key:<18} {block:<24} {where}", highlight=False)
