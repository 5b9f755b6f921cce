"""Ingest throughput: IFD's end-to-end path against databento's own decoding paths, same run.

Builds one SYNTHETIC simulated trading day of at least 5 million MBO records (`--scale`), then
times on the same file:
  ifd ingest      decode → frames → Great Expectations validation → Parquet lake (end to end)
  ifd re-ingest   the same day again under another name: compared with the lake, adds nothing
  ifd decode      decode → frames only (no validation, no write)
  stages          decode, frames, the polars checks, GX on the distinct values (one at a time)
  (a) to_df       databento DBNStore.to_df() with defaults
  (b) objects     iterating the records as Python objects (for r in store), keeping 6 fields
and prints records per second and ratios, with end to end against decode-only (goal ≥ 0.8×).
Then a multi-file ingest (goal ≥ 3 M records/s on the 2-core machine): `--days` SYNTHETIC days
(definitions, statistics and MBO of each), every file of them ingested into a fresh lake once in
this process and once on a local pool of 2 processes (start-up counted, as a command pays it),
with the two lakes' row counts checked equal.
Usage: uv run python bench/ingest.py [--scale 20] [--days 8]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path


def timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--days", type=int, default=8, help="days of the multi-file ingest (0: skip)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    import databento as db

    from ifd_core.marketdata.dbn_files import read_dbn
    from ifd_core.marketdata.frames import tables_of
    from ifd_core.simulator.market import simulate_market
    from warehouse.ingest import ingest_files
    from warehouse.lake import Lake

    work = Path(tempfile.mkdtemp(prefix="ifd-bench-"))
    t_sim, summary = timed(lambda: simulate_market(work / "sim", 1, args.seed, scale=args.scale))
    mbo = next(p for p in summary.files if p.name.endswith(".mbo.dbn.zst"))
    others = [p for p in summary.files if p != mbo]
    n = summary.records_by_schema["mbo"]
    size_mb = mbo.stat().st_size / 1e6
    print(f"simulated 1 SYNTHETIC day: {n:,} MBO records ({size_mb:.0f} MB) in {t_sim:.1f}s")
    if n < 5_000_000:
        print("warning: fewer than 5 M records; raise --scale")

    lake = Lake(work / "data")
    assert ingest_files(others, lake).ok  # definitions and statistics first, not timed
    t_ingest, report = timed(lambda: ingest_files([mbo], lake))
    assert report.ok, report.files[0].reason
    # The same day again under another name (a re-download): every record is compared with
    # the lake's and nothing is added (the multiset union, docs/lake.md).
    again = mbo.with_name("again-" + mbo.name)
    shutil.copyfile(mbo, again)
    t_again, report = timed(lambda: ingest_files([again], lake))
    assert report.ok and report.files[0].rows.get("mbo", 0) == 0, report.files[0].rows
    t_decode, _ = timed(lambda: tables_of("mbo", read_dbn(mbo).arrays["mbo"]))
    stages = _stages(mbo, lake, Lake(work / "empty"))
    store = db.DBNStore.from_file(mbo)
    t_df, df = timed(lambda: store.to_df())
    assert len(df) == n

    def objects():
        rows = []
        for r in db.DBNStore.from_file(mbo):
            rows.append((r.ts_recv, r.instrument_id, r.action, r.side, r.price, r.size))
        return rows

    t_obj, rows = timed(objects)
    assert len(rows) == n

    results = {
        "records": n,
        "ifd_ingest_end_to_end_s": t_ingest,
        "ifd_reingest_same_day_s": t_again,
        "ifd_decode_to_frames_s": t_decode,
        "databento_to_df_defaults_s": t_df,
        "python_objects_s": t_obj,
    }
    rate = {k: n / v for k, v in results.items() if k.endswith("_s")}
    print(f"\n{'path':42} {'seconds':>8} {'records/s':>12} {'vs objects':>10}")
    for k, v in results.items():
        if k.endswith("_s"):
            print(f"{k:42} {v:8.2f} {rate[k]:12,.0f} {rate[k] / rate['python_objects_s']:9.1f}x")
    print(f"\nend to end / decode-only: {t_decode / t_ingest:.2f}x (goal >= 0.8x)")
    print("stages of one file, one at a time (end to end overlaps staging with validation):")
    for k, v in stages.items():
        print(f"  {k:40} {v:6.2f}s")
    results["stages_s"] = stages
    if args.days:
        results["multi_file"] = _multi_file(work, args.days, args.seed, args.scale)
    out = Path("bench/out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "ingest.json").write_text(json.dumps({**results, "rates": rate}, indent=1))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def _multi_file(work: Path, days: int, seed: int, scale: float) -> dict:
    """Every file of ``days`` simulated days ingested inline and on 2 local processes."""
    import polars as pl

    from ifd_core.simulator.market import simulate_market
    from jobs.fanout import process_pool_mapper
    from warehouse.ingest import ingest_files
    from warehouse.lake import Lake

    summary = simulate_market(work / "multi", days, seed + 1, scale=scale)
    n = sum(summary.records_by_schema.values())
    print(f"\nmulti-file: {len(summary.files)} files of {days} SYNTHETIC days, {n:,} records")
    out: dict = {"files": len(summary.files), "records": n}
    counts = {}
    for name, workers in (("inline", 1), ("processes_2", 2)):
        lake = Lake(work / f"multi-{name}")
        t0 = time.perf_counter()
        if workers == 1:
            report = ingest_files(summary.files, lake)
        else:
            with process_pool_mapper(workers) as mapper:
                report = ingest_files(summary.files, lake, mapper=mapper)
        seconds = time.perf_counter() - t0
        assert report.ok, [f.reason for f in report.files if not f.ok]
        counts[name] = {t: lake.scan(t).select(pl.len()).collect().item() for t in _COUNTED}
        out[f"{name}_s"] = seconds
        out[f"{name}_records_per_s"] = n / seconds
        print(f"  {name:12} {seconds:7.2f}s {n / seconds:12,.0f} records/s")
    if counts["inline"] != counts["processes_2"]:
        raise SystemExit(f"the lakes differ: {counts}")
    out["processes_2_vs_inline"] = out["inline_s"] / out["processes_2_s"]
    print(f"  2 processes / inline: {out['processes_2_vs_inline']:.2f}x; goal >= 3 M records/s")
    return out


_COUNTED = ("mbo", "trades", "instruments", "statistics", "open_interest", "ingest_log")


def _stages(mbo: Path, lake, empty) -> dict[str, float]:
    """Where one file's ingest spends its time, each stage alone (no overlap)."""
    from expectations.derive import with_checks
    from expectations.runner import validate_checked
    from ifd_core.marketdata.dbn_files import read_dbn
    from warehouse.ingest import KnownInstruments, _frames, _stage_delta

    out: dict[str, float] = {}
    out["decode (read_dbn)"], batch = timed(lambda: read_dbn(mbo))
    out["frames (tables_of + provenance)"], frames = timed(
        lambda: _frames("mbo", batch.arrays["mbo"], batch, "synthetic")
    )
    ticks = KnownInstruments(lake).ticks()
    out["polars checks (derive.with_checks)"], checked = timed(
        lambda: with_checks("mbo", frames["mbo"], ticks)
    )
    out["GX on distinct values + exact counts"], _ = timed(
        lambda: validate_checked("mbo", checked, "bench", mbo.name)
    )

    class _Rollback(Exception):
        pass

    try:  # a lake without the date: every record is new, as on a first load
        with empty.transaction("bench stage") as tx:
            out["stage + Parquet write (first load)"], _ = timed(
                lambda: _stage_delta(empty, tx, batch, "synthetic", {"mbo": frames}, "bench")
            )
            raise _Rollback
    except _Rollback:
        pass
    return out


if __name__ == "__main__":
    main()
