"""The calibration study (`make calibrate`): IFD's verdicts on SYNTHETIC markets with known truth.

For each informed share (0 = no edge) and seed, a market of ``warmup + blocks × block_days``
sessions is simulated, ingested and judged by the production code (``jobs/calibration.py``);
the rates and their 95 % intervals (``reports/calibration.py``) go to
``bench/out/calibration/table.md`` and ``summary.json``. Each finished market is kept as
``markets/<share>-<seed>.json``, so an interrupted study resumes where it stopped.

It validates the statistics on simulated markets, not the signals on real ones.

Usage: uv run python bench/calibration.py [--shares 0,0.6,0.8] [--seeds 11,12,13] [--blocks 4]
       [--block-days 10] [--scale 0.25] [--jobs 2] [--v1-informed-share X] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

OUT = Path("bench/out/calibration")


def _market_path(root: Path, share: float, seed: int) -> Path:
    return root / "markets" / f"{share:g}-{seed}.json"


def _market(item: tuple[float, int, dict, str]) -> dict:
    """One market, run where the mapper puts it; kept on disk as soon as it is done, so an
    interrupted study resumes from it."""
    from ifd_core.settings import get_settings
    from jobs.calibration import Grid, run_market

    share, seed, grid_d, root = item
    grid = Grid(**{**grid_d, "shares": tuple(grid_d["shares"]), "seeds": tuple(grid_d["seeds"])})
    work = Path(root) / "work"
    result = run_market(share, seed, grid, work, lambda d: get_settings(data_dir=str(d)))
    shutil.rmtree(work / f"share{share:g}-seed{seed}", ignore_errors=True)  # keep the disk small
    market = result.to_dict()
    _market_path(Path(root), share, seed).write_text(
        json.dumps({"grid": grid_d, "market": market}, default=str)
    )
    return market


def _same_market(a: dict, b: dict) -> bool:
    """A kept market is reused when what shapes one market is equal (not the list of shares or
    seeds around it)."""
    keys = ("warmup", "blocks", "block_days", "scale", "v1_informed_share")
    return all(a.get(k) == b.get(k) for k in keys)


def main(argv: list[str] | None = None) -> int:
    from rich.progress import Progress

    from ifd_core.settings import get_settings
    from jobs.calibration import Grid
    from jobs.extended import criteria_from
    from jobs.fanout import mapper_for
    from reports.calibration import markdown, summarize

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shares", default="0,0.6,0.8")
    ap.add_argument("--seeds", default="11,12,13")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--block-days", type=int, default=10)
    ap.add_argument("--scale", type=float, default=0.25)
    ap.add_argument("--v1-informed-share", type=float, default=None)
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    grid = Grid(
        shares=tuple(float(x) for x in a.shares.split(",")),
        seeds=tuple(int(x) for x in a.seeds.split(",")),
        warmup=a.warmup,
        blocks=a.blocks,
        block_days=a.block_days,
        scale=a.scale,
        v1_informed_share=a.v1_informed_share,
    )
    (a.out / "markets").mkdir(parents=True, exist_ok=True)
    grid_d = asdict(grid)
    (a.out / "grid.json").write_text(json.dumps(grid_d, indent=2))
    todo, results = [], []
    for share in grid.shares:
        for seed in grid.seeds:
            path = _market_path(a.out, share, seed)
            kept = json.loads(path.read_text()) if path.exists() else None
            if kept is not None and _same_market(kept.get("grid", {}), grid_d):
                results.append(kept["market"])
            else:
                todo.append((share, seed, grid_d, str(a.out)))
    t0 = time.perf_counter()
    print(
        f"calibration (SYNTHETIC): {len(todo)} market(s) to run, {len(results)} kept, "
        f"{grid.days} sessions each, {a.jobs} worker(s)"
    )

    # The markets are independent: mapped by jobs/fanout.py like the flows' days (--jobs 2: a
    # local pool of 2 processes; the compute settings can name a Dask cluster instead).
    with Progress() as bar, mapper_for(get_settings().compute, workers=a.jobs) as mapper:
        task = bar.add_task("markets", total=len(todo))
        results += mapper(_market, todo, done=lambda _i, _r: bar.advance(task))

    criteria = criteria_from(get_settings())
    summary = summarize(results, criteria)
    table = markdown(summary, grid_d)
    (a.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (a.out / "table.md").write_text(table)
    print(table)
    print(
        f"{len(results)} markets in {time.perf_counter() - t0:.0f} s; table: {a.out / 'table.md'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
