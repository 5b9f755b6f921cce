"""The README's main job on embedded default data, as Prefect flow runs: the whole story.

Simulate 30 sessions (flows on the last 10, 70 % informed) → ``historical_ingest`` →
``baseline_refresh`` → ``detection`` (v3 and v1) of each flow session → evaluation against the
ground truth → ``nightly_backtest`` (backtest, Monte Carlo, A/B) → ``extended_test`` →
``cost_report``, each as the same flow the deployments run (child runs with their artifacts).
Everything is SYNTHETIC and says so. Without ``PREFECT_API_URL`` Prefect starts a temporary local
server whose database (``$PREFECT_HOME/prefect.db``) ``ifd serve`` shows afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.prefect_api import PrefectApi, ensure_prefect_api
from flows.retries import SAFE_RETRY
from flows.run_names import run_name
from flows.settings import flow_settings

# Who hears of the demo's steps: (what begins, steps done, steps in all). Set by run_demo_flow
# for the run it starts in this process (`ifd demo` draws a bar); a flow parameter could not
# carry a callable, and a run started elsewhere (a deployment) has no listener.
_step_listener: Callable[[str, int, int], None] | None = None


def _step(what: str, done: int, total: int) -> None:
    if _step_listener is not None:
        _step_listener(what, done, total)


@task(name="simulate-market", cache_policy=NO_CACHE)
def simulate(sim_dir: str, days: int, seed: int, scale: float) -> dict:
    """SYNTHETIC sessions as Databento-format DBN files, with their ground truth."""
    from ifd_core.simulator.market import simulate_market
    from ifd_core.simulator.params import SimParams

    log = get_run_logger()
    summary = simulate_market(
        Path(sim_dir),
        days,
        seed,
        scale=scale,
        progress=lambda d, t: log.info("simulated %d/%d sessions (SYNTHETIC)", d, t),
        params=SimParams.from_settings(flow_settings().simulator),
    )
    return {
        "files": [str(p) for p in summary.files],
        "days": [d.isoformat() for d in summary.days],
        "truth": str(summary.truth_path),
        "planted": summary.planted,
        "decoys": summary.decoys,
    }


@task(name="evaluate-against-ground-truth", cache_policy=NO_CACHE, **SAFE_RETRY)  # reads only
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
        tot = dict.fromkeys(
            (
                "planted",
                "found",
                "signals",
                "decoys",
                "signals_on_decoys",
                "stray_signals",
                "informed_found",
            ),
            0,
        )
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
            for k, v in (
                ("planted", ev.planted),
                ("found", ev.found),
                ("signals", ev.signals),
                ("decoys", ev.decoys),
                ("signals_on_decoys", ev.decoy_signals),
                ("stray_signals", ev.strays),
            ):
                tot[k] += v
            tot["informed_found"] += sum(1 for f in ev.per_flow if f["signals"] and f["informed"])
        rows.append({"algo": algo, **tot, "session_hours": round(hours, 1), "days": len(days)})
    create_table_artifact(
        key="demo-evaluation",
        table=rows,
        description=f"{days[0]} to {days[-1]}: signals against the simulator's ground truth "
        "(SYNTHETIC)",
    )
    return rows


@flow(
    name="demo",
    log_prints=True,
    flow_run_name=run_name(lambda p: f"demo-seed{p['seed']}-{p['days']}-days-scale{p['scale']:g}"),
)
def demo(days: int = 30, seed: int = 7, scale: float = 0.3) -> dict:
    """The whole story on SYNTHETIC data, each step the flow its deployment runs: flows are
    planted on every session after the 20-session warm-up, each of those sessions is detected,
    and the backtest, the A/B test and the extended test judge them.

    Args:
        days: Trading days to simulate (SYNTHETIC): 20 warm-up sessions, flows on the rest.
        seed: Simulator seed (the same seed, the same market).
        scale: Simulator activity multiplier.
    """
    from flows.baseline_refresh import baseline_refresh
    from flows.cost_report import cost_report
    from flows.detection import detection
    from flows.extended import extended_test
    from flows.historical_ingest import historical_ingest
    from flows.nightly_backtest import nightly_backtest
    from ifd_core.simulator.market import BASELINE_SESSIONS

    settings = flow_settings()
    root = Path(settings.data_dir).resolve()
    # Steps: simulate, ingest, baselines, one detection per flow session, evaluate, backtest,
    # extended test, cost report (the flow sessions are known once the market is simulated).
    total = 7 + max(days - BASELINE_SESSIONS, 1)
    _step("simulating the market (SYNTHETIC)", 0, total)
    sim = simulate(
        str(root / "simulated" / f"seed{seed}-days{days}-scale{scale:g}"), days, seed, scale
    )
    sessions = [dt.date.fromisoformat(d) for d in sim["days"]]
    flow_days = sessions[BASELINE_SESSIONS:] or sessions[-1:]
    total = 7 + len(flow_days)
    first, last = flow_days[0], flow_days[-1]
    _step(f"ingesting {len(sim['files'])} files", 1, total)
    ingest = historical_ingest(paths=sim["files"])
    _step(f"baselines up to {last}", 2, total)
    baseline_refresh(trade_date=last)
    for n, day in enumerate(flow_days):
        _step(f"detection of {day}", 3 + n, total)
        det = detection(day=day, algo="both")
    done = 3 + len(flow_days)
    _step("evaluation against the ground truth", done, total)
    evaluation = evaluate_days(str(root), flow_days, sim["truth"])
    _step(f"backtest and A/B test {first} to {last}", done + 1, total)
    bt = nightly_backtest(start=first, end=last)
    _step(f"extended test {first} to {last}", done + 2, total)
    ext = extended_test(start=first, end=last)
    _step("cost report", done + 3, total)
    cost = cost_report()
    _step("done", total, total)
    out = {
        "days": sim["days"],
        "truth": sim["truth"],
        "planted": sim["planted"],
        "decoys": sim["decoys"],
        "files": len(ingest),
        "detection": det,
        "evaluation": evaluation,
        "backtest": bt,
        "extended": ext,
        "cost_report": cost["report"],
    }
    md = [
        "# IFD demo (SYNTHETIC data)",
        "",
        f"{len(sim['days'])} simulated sessions to {last}, flows planted on {len(flow_days)} of "
        f"them from {first}: {sim['planted']} planted flows, {sim['decoys']} decoys. Not evidence "
        "about real markets.",
        "",
        *[f"- {k}: `{v}`" for k, v in report_paths(out).items()],
    ]
    create_markdown_artifact(key="demo-summary", markdown="\n".join(md))
    return out


def report_paths(out: dict) -> dict[str, str]:
    """The HTML reports the demo wrote, by name (those it did not write are left out)."""
    found = {
        "detection report": out["detection"].get("report"),
        "backtest report": out["backtest"].get("report"),
        "A/B report": out["backtest"].get("ab_report"),
        "extended test report": out["extended"].get("report"),
        "cost report": out["cost_report"],
    }
    return {k: v for k, v in found.items() if v}


@dataclass(frozen=True)
class DemoRun:
    """One run of the `demo` flow: its result when it completed, else its final state."""

    state: str
    message: str | None
    result: dict | None
    seconds: float
    api: PrefectApi

    @property
    def completed(self) -> bool:
        return self.result is not None


def run_demo_flow(
    days: int, seed: int, scale: float, step: Callable[[str, int, int], None] | None = None
) -> DemoRun:
    """Run the `demo` flow in this process and time it (the temporary Prefect server included).
    Raises :class:`~flows.prefect_api.PrefectUnavailable` when there is no API to run it on.
    ``step`` hears of each step as it begins: (what, steps done, steps in all)."""
    global _step_listener
    _step_listener = step
    try:
        return _run_demo_flow(days, seed, scale)
    finally:
        _step_listener = None


def _run_demo_flow(days: int, seed: int, scale: float) -> DemoRun:
    # The temporary server inherits this: no telemetry (offline machines; it also raced the
    # first run for the SQLite database).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    logging.getLogger("prefect.task_runs").setLevel(logging.WARNING)  # one line per file is enough
    t0 = time.perf_counter()
    api = ensure_prefect_api()
    state = demo(days=days, seed=seed, scale=scale, return_state=True)
    result = state.result() if state.is_completed() else None
    return DemoRun(state.name, state.message, result, time.perf_counter() - t0, api)
