"""The README's main job on embedded default data, as Prefect flow runs: the whole story.

simulate 30 sessions (flows on the last 10, 70 % of them informed: the simulator moves the
underlying after them) → `historical_ingest` → `baseline_refresh` → `detection` (v3 and v1) of
each flow session →
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
    from ifd_core.simulator.market import simulate_market
    from ifd_core.simulator.params import SimParams

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
def evaluate_days(data_dir: str, days: list[dt.date], truth_path: str) -> list[dict]:
    """Each algorithm's stored signals on the flow days against what the simulator planted, and
    how many of the flows it found were informed (the truth a verdict should reflect)."""
    import polars as pl

    from ifd_core.analysis.evaluation import evaluate
    from warehouse.lake import Lake

    lake = Lake(Path(data_dir))
    truth = json.loads(Path(truth_path).read_text())
    rows = []
    for algo in ("v3", "v1"):
        tot = dict.fromkeys(("planted", "found", "signals", "decoys", "signals_on_decoys",
                             "stray_signals", "informed_found"), 0)  # fmt: skip
        hours = 0.0
        for day in days:
            signals = (
                lake.scan("signals")
                .filter((pl.col("date") == day) & (pl.col("algo") == algo))
                .collect()
            )
            w = lake.scan("pressure_windows").filter(pl.col("date") == day).collect()
            h = (w["window_end"].max() - w["window_start"].min()) / 3.6e12 if w.height else 0.0
            events = [e for e in truth["events"] if e["date"] == day.isoformat()]
            ev = evaluate(signals, events, algo, h)
            hours += h
            for k, v in (("planted", ev.planted), ("found", ev.found), ("signals", ev.signals),
                         ("decoys", ev.decoys), ("signals_on_decoys", ev.decoy_signals),
                         ("stray_signals", ev.strays)):  # fmt: skip
                tot[k] += v
            tot["informed_found"] += sum(1 for f in ev.per_flow if f["signals"] and f["informed"])
        rows.append({"algo": algo, **tot, "session_hours": round(hours, 1), "days": len(days)})
    create_table_artifact(
        key="demo-evaluation", table=rows,
        description=f"{days[0]} to {days[-1]}: signals against the simulator's ground truth "
        "(SYNTHETIC)",
    )  # fmt: skip
    return rows


@flow(name="demo", log_prints=True)
def demo(days: int = 30, seed: int = 7, scale: float = 0.3) -> dict:
    """The whole story on SYNTHETIC data, each step the flow its deployment runs: flows are
    planted on every session after the 20-session warm-up, each of those sessions is detected,
    and the backtest, the A/B test and the extended test judge them."""
    from flows.baseline_refresh import baseline_refresh
    from flows.cost_report import cost_report
    from flows.detection import detection
    from flows.extended import extended_test
    from flows.historical_ingest import historical_ingest
    from flows.nightly_backtest import nightly_backtest
    from ifd_core.simulator.market import BASELINE_SESSIONS

    settings = get_settings()
    root = Path(settings.data_dir).resolve()
    sim = simulate(str(root / "simulated" / f"seed{seed}-days{days}-scale{scale:g}"), days, seed,
                   scale)  # fmt: skip
    sessions = [dt.date.fromisoformat(d) for d in sim["days"]]
    flow_days = sessions[BASELINE_SESSIONS:] or sessions[-1:]
    first, last = flow_days[0], flow_days[-1]
    ingest = historical_ingest(paths=sim["files"])
    baseline_refresh(trade_date=last)
    for day in flow_days:
        det = detection(day=day, algo="both")
    evaluation = evaluate_days(str(root), flow_days, sim["truth"])
    bt = nightly_backtest(start=first, end=last)
    ext = extended_test(start=first, end=last)
    cost = cost_report()
    out = {
        "days": sim["days"], "truth": sim["truth"], "planted": sim["planted"],
        "decoys": sim["decoys"], "files": len(ingest), "detection": det,
        "evaluation": evaluation, "backtest": bt, "extended": ext, "cost_report": cost["report"],
    }  # fmt: skip
    md = [
        "# IFD demo (SYNTHETIC data)",
        "",
        f"{len(sim['days'])} simulated sessions to {last}, flows planted on {len(flow_days)} of "
        f"them from {first}: {sim['planted']} planted flows, {sim['decoys']} decoys. Not evidence "
        "about real markets.",
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
    from ifd_cli.app import print_frame
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
    bt, ext = out["backtest"], out["extended"]
    acc = bt.get("accuracy") or {}
    console.rule("[bold]Verdicts beside the truth the simulator knows (SYNTHETIC)[/]")
    for r in out["evaluation"]:
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
        console.print(
            f"[bold]{r['algo']}[/]: found {r['found']}/{r['planted']} planted flows in "
            f"{r['days']} sessions, {r['signals_on_decoys']} signals on {r['decoys']} decoys, "
            f"{r['stray_signals']} stray signals; true informed share of the flows it found: "
            f"{informed}; backtest accuracy {accuracy}",
            highlight=False,
        )
    console.print(f"A/B verdict: {bt.get('verdict')}", highlight=False)
    console.print(f"Extended test: {ext.get('verdict')}", highlight=False)
    console.print(f"Extended test, statistical criteria only (a replay measures no latency or "
                  f"uptime): {ext.get('statistical_verdict')}", highlight=False)  # fmt: skip
    console.print(
        "An informed flow is followed by a move of the underlying; the label needs it to reach "
        "the barrier first, so even a perfect detector's accuracy sits below its informed share. "
        "README 'Calibration' measures these statistics on many such markets.",
        highlight=False,
    )
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
