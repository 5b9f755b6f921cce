"""Book and engine throughput: the plain-Python BookSet against the compiled FastBookSet, alone
and inside the FlowEngine, on one SYNTHETIC simulated day of at least 5 million MBO records.

Variants, each in its own subprocess (so memory peaks are separate and nothing is shared):
  bookset       BookSet.apply(pre_trade=True) over the day's mbo in engine-sized batches (baseline)
  fast          FastBookSet, the same way
  engine        FlowEngine with BookSet, fed FileReplaySource batches (definitions, then mbo)
  engine-fast   FlowEngine with FastBookSet
Reading (decoding; for the engine also the FileReplaySource merge into batches) is timed apart
("read s") and not counted in records/s. Every variant's output is digested, and the two books
(and the two engines) must agree. Peak memory is the process's peak RSS during the timed phase
(VmHWM, reset through /proc/self/clear_refs before it) above the RSS when the phase began
("phase +MB"; "peak RSS MB" includes the day's records in memory). FastBookSet's compile time
is measured once with an empty numba cache (cold) and is never counted in throughput.

The simulated files are kept under bench/out/engine-sim/, so reruns skip the simulation.
Usage: uv run python bench/engine.py [--scale 20] [--seed 11] [--reps 3]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import inspect
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

OUT = Path("bench/out")
VARIANTS = ("bookset", "fast", "engine", "engine-fast")


# ----- memory ------------------------------------------------------------------------------------
def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> bool:
    """Reset the process's peak RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Phase:
    """Wall time, CPU time and peak RSS above the starting RSS of a ``with`` block."""

    def __enter__(self):
        gc.collect()
        self.exact_peak = _reset_peak()
        self.rss0 = _status_mb("VmRSS")
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        self.cpu_seconds = time.process_time() - self.c0
        self.peak_mb = _status_mb("VmHWM")
        self.extra_mb = self.peak_mb - self.rss0


# ----- one variant, in a child process -----------------------------------------------------------
def _book_pass(kind: str, mbo, batch: int):
    """Feed the day's mbo to a book in engine-sized batches; return (records, outputs)."""
    from ifd_core.analysis.order_book import BookSet
    from ifd_core.analysis.order_book_fast import FastBookSet

    books = FastBookSet() if kind == "fast" else BookSet()
    pre = [books.apply(mbo[s : s + batch], pre_trade=True) for s in range(0, len(mbo), batch)]
    books.flush()
    return len(mbo), (books, pre)


def _book_digest(books, pre) -> str:
    """Pre-trade rows, counters and every instrument's BBO and top 10 levels."""
    import numpy as np

    h = hashlib.sha256()
    for arr in pre:
        h.update(np.ascontiguousarray(arr).tobytes())
    stats = books.stats()
    h.update(json.dumps({k: v for k, v in stats.items() if k != "instruments"}).encode())
    for iid in sorted(stats["instruments"]):
        h.update(repr((iid, stats["instruments"][iid], books.bbo(iid))).encode())
        h.update(repr(books.depth(iid, 10)).encode())
    return h.hexdigest()


def make_engine(kind: str):
    """FlowEngine with the book asked for: its ``book=`` option when it has one, else the
    attribute swapped after construction."""
    from ifd_core.analysis.flow_engine import FlowEngine

    if "book" in inspect.signature(FlowEngine.__init__).parameters:
        return FlowEngine(book=kind)
    engine = FlowEngine()
    if kind == "fast":
        from ifd_core.analysis.order_book_fast import FastBookSet

        engine.books = FastBookSet()
    return engine


def _engine_pass(kind: str, batches):
    """Feed every batch to a new engine, then finish it; return (records, outputs)."""
    engine = make_engine(kind)
    outs = [engine.process(b) for b in batches]
    outs.append(engine.finish())
    return sum(len(b) for b in batches), (engine, outs)


def _engine_digest(engine, outs) -> str:
    """Closed windows and signals (EngineOutput, or a bare frame from older engines), stats."""
    import polars as pl

    h = hashlib.sha256()
    for name in ("windows", "signals"):
        frames = [o if isinstance(o, pl.DataFrame) else getattr(o, name, None) for o in outs]
        if name == "signals" and all(isinstance(o, pl.DataFrame) for o in outs):
            frames = []
        frames = [f for f in frames if isinstance(f, pl.DataFrame) and f.height]
        if frames:
            df = pl.concat(frames, how="diagonal_relaxed")
            h.update(f"{name}:{df.height}:{df.hash_rows().sum()}".encode())
    stats = engine.stats
    h.update(repr(getattr(stats, "__dict__", stats)).encode())
    return h.hexdigest()


def child(variant: str, files: list[Path], reps: int, batch: int) -> dict:
    warnings.filterwarnings("ignore")
    # Imports first: without bytecode caches they cost a second that is no part of a pass.
    import ifd_core.analysis.flow_engine  # noqa: F401
    from ifd_core.analysis.order_book_fast import warm_up
    from ifd_core.marketdata.dbn_files import read_dbn
    from ifd_core.marketdata.record_source import FileReplaySource

    result: dict = {"variant": variant}
    if variant.endswith("fast"):
        result["compile_or_load_s"] = warm_up()  # never counted below
    mbo_file = next(f for f in files if f.name.endswith(".mbo.dbn.zst"))
    defs = next(f for f in files if f.name.endswith(".definition.dbn.zst"))
    with Phase() as read:
        if variant.startswith("engine"):
            data = list(FileReplaySource([defs, mbo_file], batch_records=batch).batches())
        else:
            data = read_dbn(mbo_file).arrays["mbo"]
    result["read_s"] = read.seconds
    runs, digests = [], set()
    for _ in range(reps):
        with Phase() as ph:
            if variant.startswith("engine"):
                kind = "fast" if variant == "engine-fast" else "python"
                n, out = _engine_pass(kind, data)
            else:
                n, out = _book_pass(variant, data, batch)
        runs.append(ph)
        digests.add(_engine_digest(*out) if variant.startswith("engine") else _book_digest(*out))
        del out
        gc.collect()
    if len(digests) != 1:
        raise SystemExit(f"{variant}: passes over the same data gave different outputs")
    result.update(
        records=n,
        digest=digests.pop(),
        seconds=[r.seconds for r in runs],
        cpu_seconds=[r.cpu_seconds for r in runs],
        rate=n / statistics.median(r.seconds for r in runs),
        best_rate=n / min(r.seconds for r in runs),
        peak_rss_mb=runs[0].peak_mb,
        phase_extra_mb=runs[0].extra_mb,
        peak_exact=runs[0].exact_peak,
        input_rss_mb=runs[0].rss0,
    )
    return result


def run_child(variant: str, files: list[Path], args, env=None) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, "--reps", str(args.reps)]
    cmd += ["--batch", str(args.batch), "--files", *map(str, files)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"{variant} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cold_compile_seconds() -> float:
    """FastBookSet's compile time with an empty numba cache (what a new machine pays once)."""
    cache = tempfile.mkdtemp(prefix="ifd-numba-")
    try:
        code = "from ifd_core.analysis.order_book_fast import warm_up; print(warm_up())"
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        return float(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(cache, ignore_errors=True)


# ----- the simulated day -------------------------------------------------------------------------
def simulated_day(scale: float, seed: int) -> tuple[list[Path], float | None]:
    """The day's files, simulated once per (seed, scale) and kept; (files, seconds or None)."""
    from ifd_core.simulator.market import simulate_market

    folder = OUT / "engine-sim" / f"seed{seed}-scale{scale:g}"
    done = folder / "done.json"
    if done.exists():
        return [folder / name for name in json.loads(done.read_text())["files"]], None
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.perf_counter()
    summary = simulate_market(tmp, 1, seed, scale=scale)
    seconds = time.perf_counter() - t0
    names = [p.name for p in summary.files]
    (tmp / "done.json").write_text(json.dumps({"files": names, **summary.records_by_schema}))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return [folder / n for n in names], seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--reps", type=int, default=3, help="timed passes per variant (median)")
    ap.add_argument("--batch", type=int, default=500_000, help="records per batch")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    ap.add_argument("--files", nargs="+", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.files, args.reps, args.batch)))
        return

    files, t_sim = simulated_day(args.scale, args.seed)
    mbo_file = next(f for f in files if f.name.endswith(".mbo.dbn.zst"))
    n_mbo = json.loads((mbo_file.parent / "done.json").read_text())["mbo"]
    how = f"simulated in {t_sim:.0f}s" if t_sim is not None else f"cached in {mbo_file.parent}"
    print(f"1 SYNTHETIC day: {n_mbo:,} MBO records ({how})")
    if n_mbo < 5_000_000:
        print("warning: fewer than 5 M records; raise --scale")

    cold = cold_compile_seconds()
    print(f"FastBookSet cold compile (empty numba cache): {cold:.1f}s, not counted below")
    results = {}
    for v in args.variants:
        results[v] = r = run_child(v, files, args)
        print(f"  {v:12} {r['rate']:>12,.0f} records/s  (median of {args.reps})", flush=True)

    compared = []
    for a, b in (("bookset", "fast"), ("engine", "engine-fast")):
        if a in results and b in results:
            if results[a]["digest"] != results[b]["digest"]:
                raise SystemExit(f"{a} and {b} disagree: their outputs differ")
            compared.append(f"{a} == {b}")

    base = {"fast": "bookset", "engine-fast": "engine"}
    print(
        f"\n{'variant':12} {'records':>10} {'median s':>9} {'records/s':>12} {'best rec/s':>12} "
        f"{'vs python':>9} {'peak RSS MB':>11} {'phase +MB':>9} {'read s':>6}"
    )
    for v, r in results.items():
        ref = results.get(base.get(v, v))
        ratio = f"{r['rate'] / ref['rate']:8.1f}x" if ref else f"{'':9}"
        print(
            f"{v:12} {r['records']:>10,} {statistics.median(r['seconds']):9.2f} "
            f"{r['rate']:12,.0f} {r['best_rate']:12,.0f} {ratio} {r['peak_rss_mb']:11.0f} "
            f"{r['phase_extra_mb']:9.0f} {r['read_s']:6.1f}"
        )
    load = [r["compile_or_load_s"] for r in results.values() if "compile_or_load_s" in r]
    if load:
        print(f"FastBookSet first use with a warm numba cache: {max(load):.2f}s (not counted)")
    if compared:
        print("outputs identical: " + ", ".join(compared))

    OUT.mkdir(parents=True, exist_ok=True)
    report = {
        "mbo_records": n_mbo,
        "scale": args.scale,
        "seed": args.seed,
        "batch_records": args.batch,
        "reps": args.reps,
        "cpu_count": os.cpu_count(),
        "fast_cold_compile_s": cold,
        "variants": results,
        "ratios": {
            v: results[v]["rate"] / results[b]["rate"]
            for v, b in base.items()
            if v in results and b in results
        },
    }
    (OUT / "engine.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {OUT / 'engine.json'}")


if __name__ == "__main__":
    main()
