"""The live path's throughput and decision latency: replay gateway -> databento.Live -> FlowEngine,
on one SYNTHETIC simulated day (the same files bench/engine.py simulates and keeps).

The gateway runs as `ifd gateway` in its own process (its own core and GIL, as a real feed would
be), on 127.0.0.1 with a port it picks. Variants, measured in this process against it:

  file         FileReplaySource -> FlowEngine: the batch path, the baseline of this run
  sdk          databento.Live with a per-record callback that only counts: the SDK's ceiling when
               it builds one Python object per record
  source       LiveSource (Live.add_stream bytes cut into numpy batches), nothing downstream
  engine       LiveSource -> FlowEngine: what `ifd live` does per record, before the lake writes

Records/s count every record delivered (definitions, statistics, MBO). Decision latency is
measured per batch handed to the engine: the wall time when the engine returns minus the local
receive time of the oldest record in that batch, i.e. the latency any signal decided on that
batch would have (an upper bound for each of its records). At `--speed max` the feed outruns
the consumer, so the latency there includes queueing; `--speed 1` replays the busiest stretch of
the day in real time for `--seconds` and shows the latency of a consumer that keeps up.

Usage: uv run python bench/live.py [--scale 5] [--seed 11] [--reps 2] [--seconds 30]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

KEY = "db-IFDBENCHKEY00000000000000000000"
SUBS = ("definition", "statistics", "mbo")


def _engine_bench():
    """bench/engine.py, for its kept simulated day (one simulation serves both benchmarks)."""
    spec = importlib.util.spec_from_file_location(
        "bench_engine", Path(__file__).with_name("engine.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Gateway:
    """`ifd gateway` in a subprocess; the port it bound is read from its first line."""

    def __init__(self, data: Path, speed: str) -> None:
        env = {**os.environ, "IFD_DATABENTO__API_KEY": KEY}
        cmd = [
            sys.executable,
            "-m",
            "ifd_cli.app",
            "gateway",
            "--data",
            str(data),
            "--port",
            "0",
            "--speed",
            speed,
        ]
        self.proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        m = re.search(r"on 127\.0\.0\.1:(\d+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"gateway did not start: {line}{self.proc.stderr.read()}")
        self.port = int(m.group(1))
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _symbols(files: list[Path]) -> tuple[str, ...]:
    from ifd_core.marketdata.dbn_files import read_dbn

    roots = set()
    for p in files:
        if ".definition." in p.name:
            d = read_dbn(p).arrays["definition"]
            for asset, cls in zip(d["asset"].tolist(), d["instrument_class"].tolist(), strict=True):
                roots.add(f"{asset.decode()}.{'FUT' if cls == b'F' else 'OPT'}")
    return tuple(sorted(roots))


def _source(port: int, symbols, start_ns=None):
    from ifd_core.marketdata.live_source import LiveParams, LiveSource, Subscription

    subs = [Subscription(s, symbols) for s in SUBS]
    return LiveSource(LiveParams("127.0.0.1", port, KEY), subs, start_ns=start_ns)


def run_file(files: list[Path]) -> dict:
    from ifd_core.analysis.flow_engine import FlowEngine
    from ifd_core.marketdata.record_source import FileReplaySource

    batches = list(FileReplaySource(files).batches())  # decoding is not timed
    engine = FlowEngine()
    t0 = time.perf_counter()
    n = 0
    for b in batches:
        engine.process(b)
        n += len(b)
    engine.finish()
    return {"records": n, "seconds": time.perf_counter() - t0}


def run_sdk(port: int, symbols) -> dict:
    import databento as db

    count = [0]

    def on_record(rec) -> None:
        count[0] += 1

    client = db.Live(KEY, gateway="127.0.0.1", port=port)
    client.add_callback(on_record)
    for schema in SUBS:
        client.subscribe("GLBX.MDP3", schema, symbols=list(symbols), stype_in="parent")
    t0 = time.perf_counter()
    client.start()
    client.block_for_close(timeout=3600)
    seconds = time.perf_counter() - t0
    data = count[0]  # includes the gateway's few control records (mappings, system messages)
    return {"records": data, "seconds": seconds}


def run_source(port: int, symbols, engine: bool, stop_after_s: float | None = None, start=None):
    from ifd_core.analysis.flow_engine import FlowEngine

    source = _source(port, symbols, start)
    eng = FlowEngine() if engine else None
    lat: list[int] = []
    n = 0
    t0 = time.perf_counter()
    for batch in source.batches():
        if stop_after_s is not None and time.perf_counter() - t0 >= stop_after_s:
            source.stop()
        if len(batch) == 0:
            continue
        if eng is not None:
            eng.process(batch)
            lat.append(time.time_ns() - source.last_receive_ns)
        n += len(batch)
    if eng is not None:
        eng.finish()
    return {"records": n, "seconds": time.perf_counter() - t0, "latency_ns": lat}


def _pcts(lat: list[int]) -> dict:
    if not lat:
        return {"batches": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    a = np.array(lat) / 1e6
    return {
        "batches": len(a),
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "max_ms": round(float(a.max()), 3),
    }


def busiest_start(files: list[Path], seconds: float) -> int:
    """ts_event where the busiest ``seconds`` of MBO begin (the speed-1 run replays from it)."""
    from ifd_core.marketdata.dbn_files import read_dbn

    ts = np.sort(
        np.concatenate([read_dbn(p).arrays["mbo"]["ts_event"] for p in files if ".mbo." in p.name])
    ).astype(np.int64)
    span = int(seconds * 1e9)
    ends = np.searchsorted(ts, ts + span)
    i = int(np.argmax(ends - np.arange(len(ts))))
    return int(ts[i])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--reps", type=int, default=2, help="timed passes per variant (median)")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the speed-1 run")
    args = ap.parse_args()

    from ifd_core.analysis.order_book_fast import warm_up
    from ifd_core.marketdata.dbn_stream import parse_records

    warm_up()  # the compiled book: loaded or compiled once, never inside a timed pass
    parse_records(b"", "warm")  # and the stream walker
    files, sim_s = _engine_bench().simulated_day(args.scale, args.seed)
    data = files[0].parent
    symbols = _symbols(files)
    print(
        f"SYNTHETIC day: {data} (simulated in {sim_s:.0f} s)" if sim_s else f"SYNTHETIC day: {data}"
    )

    run_file(files)  # one untimed pass: first-use costs (polars plans, lazy imports) fall here
    results: dict[str, dict] = {}
    rates: dict[str, list[float]] = {}
    lat_max: list[int] = []
    for rep in range(args.reps):
        r = run_file(files)
        rates.setdefault("file", []).append(r["records"] / r["seconds"])
        results["file"] = r
        for variant in ("sdk", "source", "engine"):
            gw = Gateway(data, "max")
            try:
                if variant == "sdk":
                    r = run_sdk(gw.port, symbols)
                else:
                    r = run_source(gw.port, symbols, engine=variant == "engine")
            finally:
                gw.close()
            rates.setdefault(variant, []).append(r["records"] / r["seconds"])
            if variant == "engine":
                lat_max += r.pop("latency_ns")
            r.pop("latency_ns", None)
            results[variant] = r
        print(
            f"rep {rep + 1}: "
            + ", ".join(f"{k} {v[-1] / 1e6:.3f} M rec/s" for k, v in rates.items())
        )

    start = busiest_start(files, args.seconds)
    gw = Gateway(data, "1")
    try:
        rt = run_source(gw.port, symbols, engine=True, stop_after_s=args.seconds, start=start)
    finally:
        gw.close()

    base = statistics.median(rates["file"])
    table = {
        k: {
            "records": results[k]["records"],
            "M_records_per_s": round(statistics.median(v) / 1e6, 3),
            "ratio_vs_file": round(statistics.median(v) / base, 3),
        }
        for k, v in rates.items()
    }
    doc = {
        "data": "SYNTHETIC simulated day",
        "scale": args.scale,
        "throughput": table,
        "decision_latency_speed_max": _pcts(lat_max),
        "decision_latency_speed_1": {
            **_pcts(rt["latency_ns"]),
            "seconds": round(rt["seconds"], 1),
            "records": rt["records"],
        },
        "goal": "1 M records/s through gateway -> Live -> engine; decision latency p99 < 10 ms",
    }
    out = Path("bench/out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "live.json").write_text(json.dumps(doc, indent=1))
    print(f"{'variant':8} {'records':>10} {'M rec/s':>8} {'x file':>7}")
    for k, row in table.items():
        rate, ratio = row["M_records_per_s"], row["ratio_vs_file"]
        print(f"{k:8} {row['records']:>10,} {rate:>8.3f} {ratio:>7.3f}")
    for name in ("decision_latency_speed_max", "decision_latency_speed_1"):
        d = doc[name]
        print(
            f"{name}: p50 {d['p50_ms']} ms, p99 {d['p99_ms']} ms, max {d['max_ms']} ms "
            f"over {d['batches']} batches"
        )
    print(f"written {out / 'live.json'}")


if __name__ == "__main__":
    main()
