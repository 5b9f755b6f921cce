"""`ifd demo`: the `demo` flow (flows/demo.py) on SYNTHETIC data, then on the console what landed
in the lake, the last session's signals, and each verdict beside the simulator's truth.

The flow returns data; everything printed is here, so flows/ never imports the CLI.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from ifd_cli.common import EXIT_SERVICE, fail, load_settings, note, out, print_frame

commands = typer.Typer()


@commands.command()
def demo(
    days: Annotated[
        int, typer.Option(min=21, help="Trading days to simulate (20 warm-up, then flows).")
    ] = 30,
    seed: Annotated[int, typer.Option(help="Simulator seed.")] = 7,
    scale: Annotated[float, typer.Option(min=0.01, help="Simulator activity multiplier.")] = 0.3,
) -> None:
    """The main job on embedded default data: simulate → ingest → summary of what landed."""
    raise typer.Exit(run_demo(load_settings(), days=days, seed=seed, scale=scale))


def run_demo(settings, *, days: int, seed: int, scale: float) -> int:
    """The `demo` flow, then what landed, the signals and where to look; the exit code."""
    from flows.demo import report_paths, run_demo_flow
    from flows.prefect_api import PrefectUnavailable
    from warehouse.lake import Lake
    from warehouse.sql import query

    out.rule("[bold]IFD demo — SYNTHETIC data, as Prefect flow runs[/]")
    out.print(
        "Each step is a Prefect flow run; without PREFECT_API_URL the first one starts a local "
        "temporary Prefect server (about 15 s).",
        highlight=False,
    )
    try:
        run = run_demo_flow(days, seed, scale, step=_say_step)
    except PrefectUnavailable as exc:
        raise fail(str(exc), EXIT_SERVICE) from None
    if not run.completed:
        out.print(f"[red]the demo flow ended {run.state}[/]: {run.message}")
        return 1
    result = run.result
    lake = Lake(settings.data_dir)
    landed = query(
        lake,
        " UNION ALL ".join(
            f"SELECT '{t}' AS \"table\", origin, count(*) AS rows, count(DISTINCT date) AS days, "
            f"min(date) AS first, max(date) AS last FROM {t} GROUP BY ALL"
            for t in ("mbo", "trades", "instruments", "open_interest", "settlements")
        ),
    )
    print_frame(landed, title="What landed in the lake (origin says SYNTHETIC data)")
    day = result["days"][-1]
    sig = query(
        lake,
        "SELECT algo, raw_symbol, direction, view, round(confidence, 3) AS confidence, tier, label "
        "FROM "
        "signals_with_outcomes WHERE date = ? ORDER BY decision_ts, algo",
        [dt.date.fromisoformat(day)],
    )
    print_frame(sig, title=f"Signals on {day} (SYNTHETIC)")
    _print_verdicts(result)
    out.print(
        f"\nThe story ran as Prefect flow runs in {run.seconds:.0f}s. All of it is SYNTHETIC."
        f" Ground truth: {result['truth']}",
        highlight=False,
    )
    for k, v in report_paths(result).items():
        out.print(f"{k + ':':<22} {v}", highlight=False)
    out.print(
        f'\nSQL: uv run ifd sql "SELECT algo, raw_symbol, direction, view, confidence, label '
        f"FROM signals_with_outcomes WHERE date = DATE '{day}'\"\n{ui_hint(run.api)}",
        highlight=False,
    )
    return 0


def _say_step(what: str, done: int, total: int) -> None:
    """One line per step of the demo on stderr (not a live bar: Prefect's own run logs share
    the terminal and would tear it), e.g. ``demo step 4/17: detection of 2026-03-31``."""
    note(f"demo step {done + 1}/{total}: {what}" if total and done < total else f"demo: {what}")


def ui_hint(api) -> str:
    """Where the demo's runs are seen: the server it ran on, or, after Prefect's temporary server
    (gone with this process, its database kept), the URL `ifd serve` serves with its defaults."""
    from flows.serve import browser_url, default_address

    if not api.temporary:
        return f"UI:  {api.url.removesuffix('/api')} (the demo's runs, artifacts and reports)"
    return (
        f"UI:  uv run ifd serve   then open {browser_url(*default_address())} (the demo's runs, "
        "artifacts and reports are there)"
    )


def _print_verdicts(result: dict) -> None:
    """Per algorithm, what it found against what was planted, beside the backtest's accuracy;
    then the A/B and extended-test verdicts."""
    bt, ext = result["backtest"], result["extended"]
    acc = bt.get("accuracy") or {}
    out.rule("[bold]Verdicts beside the truth the simulator knows (SYNTHETIC)[/]")
    for r in result["evaluation"]:
        informed = (
            f"{r['informed_found'] / r['found']:.2f} ({r['informed_found']}/{r['found']})"
            if r["found"]
            else "n/a (none found)"
        )
        a = acc.get(r["algo"]) or {}
        accuracy = (
            f"{a['accuracy']:.2f} [{a['ci_low']:.2f}, {a['ci_high']:.2f}] over {a['resolved']} "
            "resolved episodes"
            if a.get("accuracy") is not None
            else "n/a (no resolved episodes)"
        )
        out.print(
            f"[bold]{r['algo']}[/]: found {r['found']}/{r['planted']} planted flows in "
            f"{r['days']} sessions, {r['signals_on_decoys']} signals on {r['decoys']} decoys, "
            f"{r['stray_signals']} stray signals; true informed share of the flows it found: "
            f"{informed}; backtest accuracy {accuracy}",
            highlight=False,
        )
    out.print(f"A/B verdict: {bt.get('verdict')}", highlight=False)
    out.print(f"Extended test: {ext.get('verdict')}", highlight=False)
    out.print(
        f"Extended test, statistical criteria only (a replay measures no latency or "
        f"uptime): {ext.get('statistical_verdict')}",
        highlight=False,
    )
    out.print(
        "An informed flow is followed by a move of the underlying; the label needs it to reach "
        "the barrier first, so even a perfect detector's accuracy sits below its informed share. "
        "README 'Calibration' measures these statistics on many such markets.",
        highlight=False,
    )
