"""The README's main job on embedded default data: simulate → ingest → detect → evaluate →
backtest.

Everything it produces is SYNTHETIC and says so. It grows with the project (backtests, reports);
today it simulates the default market, ingests it with validation, prints what landed and the
data-quality results, runs the FlowEngine with IFD v3 and v1 over the last session (baselines
from the 20 before it), prints the signals and scores them against the simulator's ground truth,
then backtests both algorithms on paper over every simulated session (Monte Carlo included) and
prints where the HTML report is.
"""

from __future__ import annotations

import time

from rich.console import Console


def run_demo(settings, *, days: int, seed: int, scale: float, console: Console, progress) -> int:
    from ifd_core.marketdata.simulator import simulate_market
    from warehouse.ingest import ingest_files
    from warehouse.lake import Lake
    from warehouse.sql import query

    lake = Lake(settings.data_dir)
    sim_dir = lake.root / "simulated" / f"seed{seed}-days{days}-scale{scale:g}"
    t0 = time.perf_counter()
    console.rule("[bold]IFD demo — SYNTHETIC data[/]")
    with progress() as prog:
        task = prog.add_task("simulating (synthetic)", total=days)
        summary = simulate_market(
            sim_dir, days, seed, scale=scale, progress=lambda d, t: prog.update(task, completed=d)
        )
    t1 = time.perf_counter()
    console.print(
        f"simulated {len(summary.days)} trading days {summary.days[0]}..{summary.days[-1]} "
        f"into {sim_dir} in {t1 - t0:.1f}s ({summary.planted} planted flows, "
        f"{summary.decoys} decoys)",
        highlight=False,
    )
    with progress() as prog:
        task = prog.add_task("ingesting", total=len(summary.files))
        report = ingest_files(summary.files, lake, progress=lambda r: prog.advance(task))
    t2 = time.perf_counter()
    records = sum(report.rows().get(t, 0) for t in ("mbo", "instruments", "statistics"))
    console.print(
        f"ingested {len(report.files)} files, {records:,} records in {t2 - t1:.1f}s "
        f"({records / max(t2 - t1, 1e-9):,.0f} records/s incl. validation)",
        highlight=False,
    )

    from ifd_core.cli import print_frame

    landed = query(
        lake,
        " UNION ALL ".join(
            f"SELECT '{t}' AS \"table\", origin, count(*) AS rows, count(DISTINCT date) AS days, "
            f"min(date) AS first, max(date) AS last FROM {t} GROUP BY ALL"
            for t in ("mbo", "trades", "instruments", "open_interest", "settlements")
        ),
    )
    print_frame(landed, title="What landed in the lake (origin says SYNTHETIC data)")
    dq = query(
        lake,
        """
        SELECT dataset, expectation, "column", count(*) AS batches,
               count(*) FILTER (WHERE success) AS passed, sum(element_count) AS rows_checked,
               sum(unexpected_count) AS unexpected
        FROM dq_results WHERE run_id = ?
        GROUP BY ALL ORDER BY 1, 2, 3""",
        [report.run_id],
    )
    print_frame(dq, title=f"Data-quality results of ingest run {report.run_id}")
    bad = [f for f in report.files if not f.ok]
    for f in bad:
        console.print(f"[red]{f.status}[/] {f.reason}", highlight=False)
    if bad:
        return 1
    _detect_and_evaluate(lake, settings, summary, console, progress)
    report = _backtest(lake, settings, summary, console)
    day = summary.days[-1]
    console.print(
        f"\nAll of this is SYNTHETIC. Ground truth: {summary.truth_path}\n"
        f"Backtest report (open in a browser): {report}\n"
        f"Try: uv run ifd detect --date {day} --algo v3 --json\n"
        f'     uv run ifd sql "SELECT algo, raw_symbol, direction, view, confidence, label '
        f"FROM signals_with_outcomes WHERE date = DATE '{day}'\"",
        highlight=False,
    )
    return 0


def _detect_and_evaluate(lake, settings, summary, console, progress) -> None:
    import json

    import polars as pl

    from ifd_core.analysis.evaluation import evaluate
    from ifd_core.cli import print_frame, signal_json
    from warehouse.analytics import detect_day

    day = summary.days[-1]
    t0 = time.perf_counter()
    with progress() as prog:
        task = prog.add_task(f"engine + detectors, baselines for {day}", total=20)
        run = detect_day(lake, day, settings, ("v3", "v1"), progress=lambda d: prog.advance(task))
    console.print(
        f"detected on {day} in {time.perf_counter() - t0:.1f}s (baselines from "
        f"{len(run.baseline_sessions)} earlier sessions; {run.records:,} records through the "
        f"engine in {run.seconds:.1f}s)",
        highlight=False,
    )
    rows = [signal_json(r) for r in run.signals.sort("decision_ts", "algo").to_dicts()]
    if rows:
        shown = pl.DataFrame(rows).select(
            "algo", "raw_symbol", "direction", "view", "window_start", "confidence", "tier"
        )
        labels = dict(zip(run.outcomes["signal_id"], run.outcomes["label"], strict=True))
        shown = shown.with_columns(
            pl.Series("outcome", [labels.get(r["signal_id"]) for r in rows], pl.String)
        )
        print_frame(shown, title=f"Signals on {day} (SYNTHETIC)")
    else:
        console.print(f"no signals on {day}", highlight=False)
    truth = json.loads(summary.truth_path.read_text())
    events = [e for e in truth["events"] if e["date"] == day.isoformat()]
    hours = (run.windows["window_end"].max() - run.windows["window_start"].min()) / 3.6e12
    for algo in ("v3", "v1"):
        ev = evaluate(run.signals.filter(pl.col("algo") == algo), events, algo, hours)
        console.print(
            f"[bold]{algo}[/] against the ground truth (SYNTHETIC): found {ev.found}/{ev.planted} "
            f"planted flows, {ev.decoy_signals} signals on {ev.decoys} decoys, "
            f"{ev.strays} stray signals in {hours:.1f} session-hours",
            highlight=False,
        )


def _backtest(lake, settings, summary, console):
    """Both algorithms traded on paper over every simulated session, with Monte Carlo."""
    from ifd_core.cli import _metrics_view, print_frame
    from warehouse.backtest import metrics_of, run_backtest
    from warehouse.reports import write_backtest_report

    days = summary.days
    res = run_backtest(lake, settings, days[0], days[-1], ("v3", "v1"))
    metrics = metrics_of(res)
    print_frame(_metrics_view(metrics), title=f"Backtest {days[0]} to {days[-1]} (SYNTHETIC)")
    for algo, mc in res.monte_carlo.items():
        console.print(
            f"{algo} Monte Carlo ({mc['paths']:,} paths, by trading day): 5th pct terminal "
            f"return {mc['terminal_return_p5']:+.2%}, worst-5% drawdown "
            f"{mc['worst5_drawdown']:.2%}, P(loss) {mc['prob_loss']:.1%}",
            highlight=False,
        )
    console.print(
        f"backtest of {len(res.days)} sessions ({res.records:,} records) in {res.seconds:.1f}s",
        highlight=False,
    )
    return write_backtest_report(settings.data_dir, res, metrics)
