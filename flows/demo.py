"""The README's main job on embedded default data, as Prefect flow runs: the whole story.

simulate 21 sessions → `historical_ingest` → `baseline_refresh` → `detection` (v3 and v1) →
evaluation against the simulator's ground truth → `nightly_backtest` (backtest, Monte Carlo, A/B)
→ `extended_test` → `cost_report`. The parent flow `demo` runs each step as the same flow the
deployments run (child flow runs in the UI, each with its artifacts and reports).

Everything it produces is SYNTHETIC and says so: results on it are no evidence about real markets.
Without ``PREFECT_API_URL`` Prefect starts a temporary local server for the run; its database is
``$PREFECT_HOME/prefect.db`` (default ``~/.prefect``), so `ifd serve` (or `prefect server start`)
afterwards shows these runs in the UI.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from rich.console import Console

from ifd_core.settings import get_settings


@task(name="simulate-market", cache_policy=NO_CACHE)
def simulate(sim_dir: str, days: int, seed: int, scale: float) -> dict:
    """SYNTHETIC sessions as Databento-format DBN files, with their ground truth."""
    from ifd_core.marketdata.sim_params import SimParams
    from ifd_core.marketdata.simulator import simulate_market

    log = get_run_logger()
    summary = simulate_market(
        Path(sim_dir), days, seed, scale=scale,
        progress=lambda d, t: log.info("simulated %d/%d sessions (SYNTHETIC)", d, t),
        params=SimParams.from_settings(get_settings().simulator),
    )  # fmt: skip
    return {
        "files": [str(p) for p in summary.files],
        "days": [d.isoformat() for d in summary.days],
        "truth": str(summary.truth_path),
        "planted": summary.planted,
        "decoys": summary.decoys,
    }


@task(name="evaluate-against-ground-truth", cache_policy=NO_CACHE)
def evaluate_day(data_dir: str, day: dt.date, truth_path: str) -> list[dict]:
    """The day's signals of each algorithm against the flows the simulator planted."""
    import polars as pl

    from ifd_core.analysis.evaluation import evaluate
    from warehouse.lake import Lake

    lake = Lake(Path(data_dir))
    signals = lake.scan("signals").filter(pl.col("date") == day).collect()
    w = lake.scan("pressure_windows").filter(pl.col("date") == day).collect()
    hours = (w["window_end"].max() - w["window_start"].min()) / 3.6e12 if w.height else 0.0
    truth = json.loads(Path(truth_path).read_text())
    events = [e for e in truth["events"] if e["date"] == day.isoformat()]
    rows = []
    for algo in ("v3", "v1"):
        ev = evaluate(signals.filter(pl.col("algo") == algo), events, algo, hours)
        rows.append({
            "algo": algo, "planted": ev.planted, "found": ev.found, "signals": ev.signals,
            "decoys": ev.decoys, "signals_on_decoys": ev.decoy_signals, "stray_signals": ev.strays,
            "session_hours": round(hours, 1),
        })  # fmt: skip
    create_table_artifact(
        key="demo-evaluation", table=rows,
        description=f"{day}: signals against the simulator's ground truth (SYNTHETIC)",
    )  # fmt: skip
    return rows


@flow(name="demo", log_prints=True)
def demo(days: int = 21, seed: int = 7, scale: float = 1.0) -> dict:
    """The whole story on SYNTHETIC data, each step the flow its deployment runs."""
    from flows.baseline_refresh import baseline_refresh
    from flows.cost_report import cost_report
    from flows.detection import detection
    from flows.extended_test import extended_test
    from flows.historical_ingest import historical_ingest
    from flows.nightly_backtest import nightly_backtest

    settings = get_settings()
    root = Path(settings.data_dir).resolve()
    sim = simulate(str(root / "simulated" / f"seed{seed}-days{days}-scale{scale:g}"), days, seed,
                   scale)  # fmt: skip
    first, last = dt.date.fromisoformat(sim["days"][0]), dt.date.fromisoformat(sim["days"][-1])
    ingest = historical_ingest(paths=sim["files"])
    baseline_refresh(trade_date=last)
    det = detection(day=last, algo="both")
    evaluation = evaluate_day(str(root), last, sim["truth"])
    bt = nightly_backtest(start=first, end=last)
    ext = extended_test()
    cost = cost_report()
    out = {
        "days": sim["days"], "truth": sim["truth"], "planted": sim["planted"],
        "decoys": sim["decoys"], "files": len(ingest), "detection": det,
        "evaluation": evaluation, "backtest": bt, "extended": ext, "cost_report": cost["report"],
    }  # fmt: skip
    md = [
        "# IFD demo (SYNTHETIC data)",
        "",
        f"{len(sim['days'])} simulated sessions {first} to {last}, {sim['planted']} planted "
        f"flows, {sim['decoys']} decoys. Not evidence about real markets.",
        "",
        *[f"- {k}: `{v}`" for k, v in _reports(out).items()],
    ]
    create_markdown_artifact(key="demo-summary", markdown="\n".join(md))
    return out


def _reports(out: dict) -> dict[str, str]:
    found = {
        "detection report": out["detection"].get("report"),
        "backtest report": out["backtest"].get("report"),
        "A/B report": out["backtest"].get("ab_report"),
        "extended test report": out["extended"].get("report"),
        "cost report": out["cost_report"],
    }
    return {k: v for k, v in found.items() if v}


def run_demo(settings, *, days: int, seed: int, scale: float, console: Console, progress) -> int:
    """`ifd demo`: the `demo` flow, then what landed, the signals and where to look."""
    from ifd_core.cli import print_frame
    from warehouse.lake import Lake
    from warehouse.sql import query

    console.rule("[bold]IFD demo — SYNTHETIC data, as Prefect flow runs[/]")
    console.print(
        "Each step is a Prefect flow run; without PREFECT_API_URL the first one starts a local "
        "temporary Prefect server (about 15 s).",
        highlight=False,
    )
    # The temporary server inherits this: no telemetry (offline machines; it also raced the
    # first run for the SQLite database).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    logging.getLogger("prefect.task_runs").setLevel(logging.WARNING)  # one line per file is enough
    t0 = time.perf_counter()
    state = demo(days=days, seed=seed, scale=scale, return_state=True)
    if not state.is_completed():
        console.print(f"[red]the demo flow ended {state.name}[/]: {state.message}")
        return 1
    out = state.result()
    seconds = time.perf_counter() - t0
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
    day = out["days"][-1]
    sig = query(
        lake,
        "SELECT algo, raw_symbol, direction, view, round(confidence, 3) AS confidence, tier, label "
        "FROM "
        "signals_with_outcomes WHERE date = ? ORDER BY decision_ts, algo",
        [dt.date.fromisoformat(day)],
    )
    print_frame(sig, title=f"Signals on {day} (SYNTHETIC)")
    for r in out["evaluation"]:
        console.print(
            f"[bold]{r['algo']}[/] against the ground truth (SYNTHETIC): found "
            f"{r['found']}/{r['planted']} planted flows, {r['signals_on_decoys']} signals on "
            f"{r['decoys']} decoys, {r['stray_signals']} stray signals in {r['session_hours']} "
            "session-hours",
            highlight=False,
        )
    bt, ext = out["backtest"], out["extended"]
    console.print(f"A/B verdict: {bt.get('verdict')}; extended test: {ext.get('verdict')}",
                  highlight=False)  # fmt: skip
    console.print(f"\nThe story ran as Prefect flow runs in {seconds:.0f}s. All of it is SYNTHETIC."
                  f" Ground truth: {out['truth']}", highlight=False)  # fmt: skip
    for k, v in _reports(out).items():
        console.print(f"{k + ':':<22} {v}", highlight=False)
    console.print(
        f'\nSQL: uv run ifd sql "SELECT algo, raw_symbol, direction, view, confidence, label '
        f"FROM signals_with_outcomes WHERE date = DATE '{day}'\"\n"
        "UI:  uv run ifd serve   then open http://127.0.0.1:4200 (the demo's runs, artifacts and "
        "reports are there)",
        highlight=False,
    )
    return 0
