"""Backtest throughput and Monte Carlo time, on SYNTHETIC simulated sessions.

Measured in one run, on the same ingested days:
  detect     the baseline: each day's records read and run through the FlowEngine with both
             detectors (what `ifd detect` computes), nothing else
  backtest   `run_backtest` for v3 and v1: reading, baselines, the engine, the paper executor
             for each algorithm, labels, metrics and Monte Carlo (10,000 paths) — the full job
  mc         Monte Carlo alone: 10,000 block-bootstrap paths over 250 trading days drawn from the
             backtest's own daily P&L (median of 5)
  fan-out    the same backtest with its detection pass on 1 and 2 local processes and on a local
             Dask cluster of 2 (issue 20): days per minute and the ratios to 1 process, in one run;
             every run's fills and daily rows are checked equal to the inline run's. The pool or
             cluster is started inside the timing and its workers warmed as the commands do it
             (``jobs.backtest.warm_backtest``); run it under ``flock /tmp/ifd-bench.lock``

The simulated days and their lake are kept under bench/out/backtest-sim/ so reruns skip the
simulation and the ingest. The issue's goal: 20 days of 5-million-record days (--days 20
--scale 20) in under 2 minutes for both algorithms; Monte Carlo under 2 s.

Usage: uv run python bench/backtest.py [--days 20] [--scale 5] [--seed 11]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import time
from pathlib import Path

OUT = Path("bench/out")


def prepared_lake(days: int, scale: float, seed: int) -> Path:
    """Simulated and ingested once per (days, scale, seed); returns the data root."""
    from ifd_core.simulator.market import simulate_market
    from warehouse.ingest import ingest_files
    from warehouse.lake import Lake

    root = OUT / "backtest-sim" / f"seed{seed}-days{days}-scale{scale:g}"
    done = root / "done.json"
    if done.exists():
        return root / "data"
    # Built in place (the lake records absolute raw paths); done.json, written last, marks it whole.
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    summary = simulate_market(root / "sim", days, seed, scale=scale)
    t1 = time.perf_counter()
    report = ingest_files(summary.files, Lake(root / "data"))
    if not report.ok:
        raise SystemExit(f"ingest failed: {[f.reason for f in report.files if not f.ok]}")
    t2 = time.perf_counter()
    done.write_text(json.dumps({"simulate_s": t1 - t0, "ingest_s": t2 - t1}))
    return root / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=20)
    ap.add_argument("--scale", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()

    import polars as pl

    from ifd_core.analysis.order_book_fast import warm_up
    from ifd_core.marketdata.record_source import FileReplaySource
    from ifd_core.settings import get_settings
    from ifd_core.trading.monte_carlo import block_bootstrap
    from jobs.backtest import run_backtest, trading_days
    from jobs.detect import engine_pass, raw_files_for, refresh_baselines
    from warehouse.lake import Lake

    warm_up()
    data = prepared_lake(args.days + 1, args.scale, args.seed)  # +1: the first has no baselines
    settings = get_settings(warehouse={"data_dir": data})
    lake = Lake(data)
    days = trading_days(lake, dt.date(1900, 1, 1), dt.date(2999, 12, 31))[1:]
    for d in days:  # baselines computed before timing, as a nightly run finds them
        refresh_baselines(lake, d, settings)

    t0 = time.perf_counter()
    records = 0
    for d in days:
        batches = list(FileReplaySource(raw_files_for(lake, d), batch_records=500_000).batches())
        records += sum(len(b) for b in batches)
        base, _ = refresh_baselines(lake, d, settings)
        engine_pass(iter(batches), settings, d, base, ("v3", "v1"))
    detect_s = time.perf_counter() - t0

    res = run_backtest(lake, settings, days[0], days[-1], ("v3", "v1"), write=False)
    bt_s = res.seconds

    pnl = res.daily.filter(pl.col("algo") == "v3").sort("date")["net_pnl"].to_numpy()
    mc_times = []
    for _ in range(5):
        mc = block_bootstrap(pnl, capital=settings.paper.capital, paths=10_000, horizon_days=250)
        mc_times.append(mc.seconds)
    mc_s = statistics.median(mc_times)

    from jobs.backtest import warm_backtest
    from jobs.fanout import dask_mapper, process_pool_mapper

    fan: dict[str, float] = {}
    for name, ctx in (
        ("processes_1", process_pool_mapper(1, warm_backtest)),
        ("processes_2", process_pool_mapper(2, warm_backtest)),
        ("dask_local_2", dask_mapper(None, 2, warm_backtest)),
    ):
        with ctx as mapper:  # pool start-up counted: a CLI run pays it too
            t = time.perf_counter()
            r = run_backtest(
                lake, settings, days[0], days[-1], ("v3", "v1"), write=False, mapper=mapper
            )
            fan[name] = time.perf_counter() - t
        for f in ("fills", "daily"):
            a, b = (getattr(x, f).drop("run_id", strict=False) for x in (res, r))
            if not a.sort(a.columns).equals(b.sort(b.columns)):
                raise SystemExit(f"{name}: {f} differ from the inline run")
    per_min = len(days) / bt_s * 60
    doc = {
        "data": "SYNTHETIC simulated sessions",
        "days": len(days),
        "scale": args.scale,
        "records": records,
        "records_per_day": records // len(days),
        "detect_s": round(detect_s, 2),
        "backtest_s": round(bt_s, 2),
        "backtest_vs_detect": round(bt_s / detect_s, 3),
        "backtest_records_per_s": round(records / bt_s),
        "days_per_minute": round(per_min, 2),
        "positions": res.positions.height,
        **{f"{k}_days_per_minute": round(len(days) / v * 60, 2) for k, v in fan.items()},
        "processes_2_vs_1": round(fan["processes_1"] / fan["processes_2"], 2),
        "dask_local_2_vs_processes_1": round(fan["processes_1"] / fan["dask_local_2"], 2),
        "mc_10k_paths_250_days_s": round(mc_s, 4),
        "goal": "20 days x 5 M records, both algorithms, < 120 s; Monte Carlo < 2 s; "
        "2 workers >= 1.8x 1 worker",
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "backtest.json").write_text(json.dumps(doc, indent=1))
    for k, v in doc.items():
        print(f"{k:28} {v}")
    print(f"written {OUT / 'backtest.json'}")


if __name__ == "__main__":
    main()
