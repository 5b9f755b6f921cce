"""`ifd rollout`: the challenger's stage, promotions and rollbacks."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated

import typer

from ifd_cli.common import choice_option, fail, load_settings, out

commands = typer.Typer(
    help="The one rollout controller: challenger stage, promotions, rollbacks"
    " (docs/algorithms.md §16).",
    no_args_is_help=True,
)


class Stage(StrEnum):
    """The stages an operator can promote to: ifd_core.trading.rollout.STAGES (kept equal by
    tests/test_cli_typed_options.py; spelled out so that `ifd --help` imports no core module)."""

    SHADOW = "SHADOW"
    PAPER = "PAPER"
    LIVE_CANARY = "LIVE_CANARY"
    LIVE_LIMITED = "LIVE_LIMITED"
    LIVE_MAJORITY = "LIVE_MAJORITY"
    LIVE_FULL = "LIVE_FULL"


def _controller(profile: str | None):
    from jobs.rollout import RolloutController
    from warehouse.lake import Lake

    settings = load_settings(profile)
    return RolloutController(Lake(settings.data_dir), settings)


@commands.command("status")
def rollout_status(
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """The challenger's stage, executed share, and the last decision."""
    c = _controller(profile)
    st = c.state()
    last = c.events().row(-1, named=True)
    doc = {
        "challenger": c.s.challenger,
        "incumbent": c.s.incumbent,
        "stage": st.stage,
        "share": st.share,
        "since": st.since.isoformat(),
        "last_action": last["action"],
        "last_reason": last["reason"],
        "last_operator": last["operator"],
    }
    if as_json:
        typer.echo(json.dumps(doc, indent=1))
        return
    out.print(
        f"[bold]{doc['challenger']}[/] vs {doc['incumbent']}: [bold]{st.stage}[/] "
        f"share {st.share} % since {doc['since']}",
        highlight=False,
    )
    out.print(f"last: {last['action']} by {last['operator']}: {last['reason']}", markup=False)


@commands.command("promote")
def rollout_promote(
    to: Annotated[
        Stage | None,
        choice_option(Stage, "Target stage (default: the next one)."),
    ] = None,
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
) -> None:
    """Promote the challenger (an operator's approval); refused during a rollback cool-down."""
    from ifd_core.trading.rollout import RolloutRefused

    try:
        d = _controller(profile).promote(to=None if to is None else to.value)
    except RolloutRefused as exc:
        raise fail(str(exc), 1) from None
    out.print(f"{d.from_stage} -> {d.to_stage} (share {d.share} %)", highlight=False)


@commands.command("rollback")
def rollout_rollback(
    reason: Annotated[str, typer.Option(help="Why (recorded with the event).")] = "",
    halt: Annotated[bool, typer.Option(help="HALTED instead of ROLLED_BACK.")] = False,
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
) -> None:
    """Roll the challenger back now (share 0). Always executes; a running live flow stops the
    challenger's orders at its next flush."""
    d = _controller(profile).rollback(reason, halt=halt)
    out.print(f"{d.from_stage} -> {d.to_stage}: {d.reason}", highlight=False, markup=False)


@commands.command("history")
def rollout_history(
    limit: Annotated[int, typer.Option(help="Last N events.")] = 20,
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """The append-only decision history with the rules that failed."""
    ev = _controller(profile).events().tail(limit)
    rows = [
        {
            "ts": r["ts"].isoformat(timespec="seconds"),
            "action": r["action"],
            "from": r["from_stage"],
            "to": r["to_stage"],
            "share": r["share"],
            "failed": [x["id"] for x in json.loads(r["rules"] or "[]") if not x["passed"]],
            "reason": r["reason"],
            "operator": r["operator"],
        }
        for r in ev.iter_rows(named=True)
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    for r in rows:
        out.print(
            f"{r['ts']} {r['action']:<8} {r['from'] or '-':>13} -> {r['to']:<13} "
            f"{r['share']:>3} %  {r['operator']}: {r['reason']}",
            highlight=False,
            markup=False,
        )
