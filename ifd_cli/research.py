"""`ifd backtest`, `ab` and `extended-test`: the judges of a detector over stored days, each
writing its ledger rows and an HTML report.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

import typer

from ifd_cli.common import (
    DATE_METAVAR,
    EXIT_USAGE,
    Algo,
    check_range,
    choice_option,
    fail,
    iso_date,
    load_settings,
    note,
    out,
    parse_algos,
    print_frame,
    progress_bar,
)

commands = typer.Typer()

# A range of trade dates; days that are not CME sessions inside it are simply not there.
StartDate = Annotated[
    dt.date, typer.Option(parser=iso_date, metavar=DATE_METAVAR, help="First trade date.")
]
EndDate = Annotated[
    dt.date,
    typer.Option(parser=iso_date, metavar=DATE_METAVAR, help="Last trade date (inclusive)."),
]


# Days' detection side by side (jobs/fanout.py; docs/operations.md, "Scaling out").
Workers = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Days detected side by side: overrides compute.workers (IFD_COMPUTE__WORKERS); "
        "with runner inline, more than 1 means a local process pool. Results do not change.",
    ),
]


def _metrics_for(result):
    from jobs.backtest import metrics_of

    return metrics_of(result)


def _units(metrics) -> dict:
    """What a report's accuracy counts: episodes (one outcome per flow), with both counts."""
    rows = metrics.to_dicts()
    return {
        "unit": "episodes",
        "n_episodes": {r["algo"]: r["episodes"] for r in rows},
        "n_signals": {r["algo"]: r["signals"] for r in rows},
    }


def _unit_line(units: dict) -> str:
    counts = ", ".join(
        f"{a} {units['n_episodes'][a]} episodes from {units['n_signals'][a]} signals"
        for a in units["n_episodes"]
    )
    return (
        "accuracy, its Wilson interval and the tests count signal episodes (one outcome per "
        f"flow: its first signal's label): {counts}"
    )


def _metrics_view(metrics):
    """The columns a trader reads first, rounded."""
    import polars as pl

    def pct(c):
        return (pl.col(c) * 100).round(1)

    return metrics.select(
        "algo",
        "signals",
        "episodes",
        pl.col("resolved").alias("resolved ep."),
        pct("accuracy").alias("acc %"),
        pl.format("[{}, {}]", pct("ci_low"), pct("ci_high")).alias("Wilson 95 %"),
        pct("neutral_share").alias("neutral %"),
        "trades",
        pct("win_rate").alias("win %"),
        pl.col("payoff_ratio").round(2).alias("payoff"),
        pl.col("count_wl_ratio").round(2).alias("W/L"),
        pl.col("profit_factor").round(2).alias("PF"),
        pl.col("net_pnl").round(2).alias("net P&L $"),
        pl.col("max_drawdown").round(2).alias("max DD $"),
        pl.col("daily_sharpe").round(2).alias("Sharpe"),
    )


@commands.command()
def backtest(
    start: StartDate,
    end: EndDate,
    algo: Annotated[Algo, choice_option(Algo, "Detectors to run.")] = Algo.both,
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
    walk_forward: Annotated[
        bool, typer.Option("--walk-forward", help="Tune min confidence on rolling windows.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    workers: Workers = None,
) -> None:
    """Backtest stored days: the FlowEngine and the paper executor, labels, metrics, Monte Carlo.

    Deterministic: two runs over the same days give identical fills and P&L. The ledger goes to
    the lake (orders, fills, positions, pnl_daily with mode=backtest) and an HTML report to
    data/reports/.
    """
    from ifd_core.trading.halt import EmergencyStop
    from jobs.backtest import run_backtest, warm_backtest
    from jobs.fanout import mapper_for
    from reports.trading import write_backtest_report
    from warehouse.lake import Lake

    check_range(start, end)
    settings = load_settings(profile)
    lake = Lake(settings.data_dir)
    s, e = start, end
    stop = EmergencyStop(settings.data_dir)
    halted_at_start = stop.state()
    try:
        with progress_bar() as prog, mapper_for(settings.compute, workers, warm_backtest) as mapper:
            task = prog.add_task("backtest days (detection, then account)", total=None)
            result = run_backtest(
                lake,
                settings,
                s,
                e,
                parse_algos(algo),
                walk_forward=walk_forward,
                progress=note,
                days_done=lambda done, total: prog.update(task, completed=done, total=total),
                mapper=mapper,
            )
    except ValueError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    halt_doc = _backtest_halt(halted_at_start, stop.state(), result.orders)
    metrics = _metrics_for(result)
    report = write_backtest_report(settings.data_dir, result, metrics)
    doc = {
        "run_id": result.run_id,
        "data": "SYNTHETIC" if result.synthetic else "real",
        "days": [d.isoformat() for d in result.days],
        "records": result.records,
        "seconds": round(result.seconds, 2),
        **_units(metrics),
        "metrics": {r["algo"]: r for r in metrics.to_dicts()},
        "monte_carlo": result.monte_carlo,
        "walk_forward": result.walk_forward,
        "report": str(report),
        "emergency_stop": halt_doc,
    }
    if as_json:
        typer.echo(json.dumps(doc, indent=1, default=str))
        return
    if halt_doc["active"]:
        out.print(halt_doc["line"], highlight=False, markup=False, soft_wrap=True)
    label = " (SYNTHETIC data: not evidence about real markets)" if result.synthetic else ""
    out.print(
        f"[bold]Backtest {result.run_id}[/]{label}: {len(result.days)} days, "
        f"{result.records:,} records in {result.seconds:.1f} s",
        highlight=False,
    )
    print_frame(_metrics_view(metrics), title="Metrics per algorithm")
    out.print(_unit_line(_units(metrics)), highlight=False)
    for a, mc in result.monte_carlo.items():
        out.print(
            f"{a} Monte Carlo ({mc['paths']:,} paths): 5th pct terminal return "
            f"{mc['terminal_return_p5']:+.2%}, worst-5% drawdown {mc['worst5_drawdown']:.2%}, "
            f"P(loss) {mc['prob_loss']:.1%}, P(ruin) {mc['prob_ruin']:.1%}",
            highlight=False,
        )
    out.print(f"report: {report}", highlight=False)
    if halt_doc["active"]:
        out.print(halt_doc["line"], highlight=False, markup=False, soft_wrap=True)


def _backtest_halt(start, end, orders) -> dict:
    """The emergency stop as a backtest saw it: before and after the run, and the entries it
    refused (a halted backtest is not what the strategy would have done)."""
    import polars as pl

    refused = 0
    if {"purpose", "status", "reason"} <= set(orders.columns):
        refused = orders.filter(
            (pl.col("purpose") == "entry")
            & (pl.col("status") == "rejected")
            & pl.col("reason").str.starts_with("emergency stop:")
        ).height
    active = start.halted or end.halted or refused > 0
    reason = end.reason if end.halted else start.reason
    unreadable = end.unreadable or start.unreadable
    line = (
        f"EMERGENCY STOP ACTIVE during this backtest: {refused} entries refused ({reason}); "
        "the results are not what the strategy would have done"
        + ("" if unreadable else "; `ifd resume` lifts it")
    )
    return {
        "active": active,
        "halted_at_start": start.halted,
        "halted_at_end": end.halted,
        "reason": reason,
        "unreadable": unreadable,
        "entries_refused": refused,
        "line": line if active else None,
    }


@commands.command()
def ab(
    start: StartDate,
    end: EndDate,
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    workers: Workers = None,
) -> None:
    """A/B test v3 against v1 on the same record stream: paired signals, the accuracy test
    (Fisher exact for small cells), a bootstrap CI of the daily P&L difference, and a verdict
    that says how many more resolved episodes are needed when the sample cannot decide. The
    unit is the signal episode: one flow seen in several windows is one outcome."""
    from jobs.ab import run_ab
    from jobs.backtest import warm_backtest
    from jobs.fanout import mapper_for
    from reports.trading import write_ab_report
    from warehouse.lake import Lake

    check_range(start, end)
    settings = load_settings(profile)
    try:
        with progress_bar() as prog, mapper_for(settings.compute, workers, warm_backtest) as mapper:
            task = prog.add_task("A/B days (detection, then account)", total=None)
            res = run_ab(
                Lake(settings.data_dir),
                settings,
                start,
                end,
                progress=note,
                days_done=lambda done, total: prog.update(task, completed=done, total=total),
                mapper=mapper,
            )
    except ValueError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    metrics = _metrics_for(res.backtest)
    doc = res.to_dict()
    doc["report"] = str(write_ab_report(settings.data_dir, res, metrics))
    doc["metrics"] = {r["algo"]: r for r in metrics.to_dicts()}
    if as_json:
        typer.echo(json.dumps(doc, indent=1, default=str))
        return
    label = " (SYNTHETIC data: not evidence about real markets)" if res.backtest.synthetic else ""
    out.print(f"[bold]A/B v3 vs v1[/]{label}: {len(res.backtest.days)} days", highlight=False)
    print_frame(_metrics_view(metrics), title="Both algorithms, same stream")
    out.print(_unit_line(_units(metrics)), highlight=False)
    t = res.test
    p = "n/a" if t.get("p_value") is None else f"{t['p_value']:.4f}"
    out.print(
        f"accuracy v3 - v1 over episodes: {t.get('test')} test, one-sided p = {p}; paired "
        f"episodes {res.pairs}, agreement {res.agreement}",
        highlight=False,
    )
    if res.pnl_diff_ci:
        m, lo, hi = res.pnl_diff_ci
        out.print(f"daily P&L v3 - v1: {m:+.2f} $ [{lo:+.2f}, {hi:+.2f}] (bootstrap by day)")
    out.print(f"[bold]verdict[/]: {res.verdict.text}", highlight=False)
    out.print(f"report: {doc['report']}", highlight=False)


@commands.command("extended-test")
def extended_test(
    start: Annotated[
        dt.date | None,
        typer.Option(
            parser=iso_date, metavar=DATE_METAVAR, help="First session (default: the last N)."
        ),
    ] = None,
    end: Annotated[
        dt.date | None, typer.Option(parser=iso_date, metavar=DATE_METAVAR, help="Last session.")
    ] = None,
    realtime: Annotated[
        str | None,
        typer.Option(help="Real-time mode: add the newest session to this test id's rows."),
    ] = None,
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    workers: Workers = None,
) -> None:
    """The two-week extended test: daily rows per algorithm, weekly and final reports pooled
    from counts, and PASS / FAIL(reasons) / INCONCLUSIVE(reasons) against settings.extended."""
    import polars as pl

    from jobs.backtest import warm_backtest
    from jobs.extended import run_extended
    from jobs.fanout import mapper_for
    from reports.trading import write_extended_report
    from warehouse.lake import Lake

    check_range(start, end)
    settings = load_settings(profile)
    try:
        with mapper_for(settings.compute, workers, warm_backtest) as mapper:
            res = run_extended(
                Lake(settings.data_dir),
                settings,
                start=start,
                end=end,
                realtime_test_id=realtime,
                progress=note,
                mapper=mapper,
            )
    except ValueError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    doc = res.to_dict()
    doc["report"] = str(write_extended_report(settings.data_dir, res))
    fin = res.final.to_dicts()
    units = {
        "unit": "episodes",
        "n_episodes": {r["algo"]: r["episodes"] for r in fin},
        "n_signals": {r["algo"]: r["signals"] for r in fin},
    }
    doc.update(units)
    if as_json:
        typer.echo(json.dumps(doc, indent=1, default=str))
        return
    label = " (SYNTHETIC data: not evidence about real markets)" if res.synthetic else ""
    out.print(
        f"[bold]Extended test {res.test_id}[/]{label}: {len(res.days)} sessions ({res.mode})",
        highlight=False,
    )
    view = res.final.select(
        "algo",
        "days",
        "signals",
        "episodes",
        pl.col("resolved").alias("resolved ep."),
        (pl.col("accuracy") * 100).round(1).alias("acc %"),
        pl.format(
            "[{}, {}]",
            (pl.col("accuracy_ci_low") * 100).round(1),
            (pl.col("accuracy_ci_high") * 100).round(1),
        ).alias("Wilson 95 %"),
        "trades",
        (pl.col("win_rate") * 100).round(1).alias("win %"),
        pl.col("payoff").round(2),
        pl.col("count_wl").round(2).alias("W/L"),
        pl.col("net_pnl").round(2).alias("net P&L $"),
        pl.col("cost_per_signal").round(2).alias("$/signal"),
        pl.col("latency_p95_ms").round(1).alias("p95 ms"),
        (pl.col("tick_coverage") * 100).round(1).alias("coverage %"),
    )
    print_frame(view, title="Final (pooled from daily counts)")
    out.print(_unit_line(units), highlight=False)
    out.print(f"[bold]verdict[/]: {res.verdict}", highlight=False)
    if (eff := res.cross_asset_weight) is not None:
        out.print(_weight_line(eff), highlight=False)
    out.print(f"report: {doc['report']}", highlight=False)


def _weight_line(eff: dict) -> str:
    """One line on massive.confidence_weight: its measured effect, or why it was not measured."""
    if "episodes" not in eff:  # nothing counted (real-time mode)
        return f"cross-asset weight {eff['weight']:g}: {eff['status']}"
    head = (
        f"cross-asset weight {eff['weight']:g}: {eff['episodes_confirmed']}/{eff['episodes']} "
        f"{eff['algo']} episodes confirmed on {eff['days_with_confirmations']}/{eff['days']} days"
    )
    if eff["status"] != "measured":
        return f"{head}; {eff['status']}"
    w, wo = eff["with_weight"], eff["without_weight"]
    return (
        f"{head}; trades {w['trades']} vs {wo['trades']} without, net P&L "
        f"${w['net_pnl']:,.2f} vs ${wo['net_pnl']:,.2f}, verdict {w['status']} vs {wo['status']}"
    )
