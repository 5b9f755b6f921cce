"""Running the FlowEngine over the lake: windows, baselines, signals and outcomes per trade date.

The market logic is the FlowEngine's (ifd_core); this reads the lake and its raw zone and writes
lake tables, one trade date at a time: ``ensure_windows`` (recomputed from the date's raw files
when their hashes or the engine version changed), ``refresh_baselines`` (from the N sessions
before, never the date itself), ``detect_day`` (v3 and v1, windows, rollup, signals, run record,
labels). Re-running a date replaces its files, so every step is idempotent (docs/operations.md
§Detection runs).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl

from ifd_core.analysis.baselines import add_bucket_keys, build_baselines
from ifd_core.analysis.detectors import V1Detector, V3Detector
from ifd_core.analysis.episodes import EpisodeTracker
from ifd_core.analysis.flow_engine import FlowEngine
from ifd_core.analysis.pressure_windows import WindowParams, pressure_measures
from ifd_core.analysis.wiring import engine_params, episode_params
from ifd_core.calendar import is_trading_day, sessions_before
from ifd_core.failpoints import failpoint
from ifd_core.marketdata.frames import PRICE_UNIT, fixed_price
from ifd_core.marketdata.record_source import FileReplaySource, RecordBatch
from ifd_core.settings import Settings
from ifd_core.trading.labels import BarrierParams, extend_tape, label_signals, price_sources
from ifd_core.units import NS, ns_to_utc
from jobs.fanout import Mapper
from jobs.oi_fallback import fallback_for_day
from warehouse.lake import Lake
from warehouse.migrations import ensure_migrated
from warehouse.tables import TABLES

# Bump when the engine's windows, or a detector's signals, would change for the same records:
# stored signals count as current only under the same key (`stored_signals`, `ifd evaluate`).
ENGINE_VERSION = "engine-3"
ALGOS = ("v3", "v1")
_NY = ZoneInfo("America/New_York")


class NoDataForDate(LookupError):
    """The warehouse has no market data for the requested trade date."""


@dataclass
class DayRun:
    day: dt.date
    windows: pl.DataFrame
    signals: pl.DataFrame
    outcomes: pl.DataFrame
    records: int
    seconds: float
    baseline_sessions: list[dt.date]


# ---------------------------------------------------------------------- inputs
def raw_files_for(lake: Lake, day: dt.date) -> list[Path]:
    """Raw files whose records fall on ``day``: its data and statistics, and the definitions
    in force (those covering the day or carried in a live capture, else the latest earlier)."""
    log = (
        lake.scan("ingest_log")
        .filter(pl.col("status") == "loaded")
        .select("raw_path", "schema", "dates", "sha256", "ingested_at")
        .collect()
    )
    if log.height == 0:
        return []
    log = log.with_columns(
        pl.col("dates").str.json_decode(pl.List(pl.String)).alias("dates")
    ).unique("sha256", keep="last")
    iso = day.isoformat()
    covers = log.filter(pl.col("dates").list.contains(iso))
    # A live capture is one "mixed" file: market data, statistics and definitions together.
    data = covers.filter(pl.col("schema") != "definition")
    if data.filter(pl.col("schema").is_in(["mbo", "mixed"])).height == 0:
        return []
    defs = covers.filter(pl.col("schema") == "definition")
    if defs.height == 0 and data.filter(pl.col("schema") == "mixed").height == 0:
        earlier = log.filter(
            (pl.col("schema") == "definition") & (pl.col("dates").list.min() <= iso)
        )
        defs = earlier.sort(pl.col("dates").list.max()).tail(1)
    return sorted({Path(p) for p in [*defs["raw_path"], *data["raw_path"]]})


def source_key(paths: Iterable[Path]) -> str:
    """What a date's derived rows were computed from: raw file names (hash-prefixed) + engine."""
    h = hashlib.sha256(ENGINE_VERSION.encode())
    for p in sorted(Path(x).name for x in paths):
        h.update(p.encode())
    return h.hexdigest()[:24]


def _stored_key(lake: Lake, table: str, day: dt.date) -> str | None:
    files = lake.files(table, day)
    if not files:
        return None
    keys = pl.scan_parquet([str(f) for f in files]).select("source_sha").unique().collect()
    return keys["source_sha"][0] if keys.height == 1 else None


def lake_origin(lake: Lake, day: dt.date) -> str:
    o = lake.scan("mbo").filter(pl.col("date") == day).select("origin").head(1).collect()
    return o["origin"][0] if o.height else "unknown"


# ---------------------------------------------------------------------- engine runs
def make_detectors(
    settings: Settings,
    day: dt.date,
    baselines: dict[str, pl.DataFrame] | None,
    algos: Iterable[str],
    fallback_oi: pl.DataFrame | None = None,
) -> list:
    """The detectors of ``algos`` for judging ``day``: v3 with that day's baselines, v1 with
    ``fallback_oi`` (Barchart's open interest on a date without Databento's,
    jobs/oi_fallback.py)."""
    wp, v3p, _ = engine_params(settings)
    ep = episode_params(settings)
    detectors = []
    for algo in algos:
        if algo == "v3":
            detectors.append(
                V3Detector(
                    lambda d: baselines if d == day else None,
                    v3p,
                    wp.grace_s,
                    episodes=EpisodeTracker(ep),
                )
            )
        elif algo == "v1":
            detectors.append(
                V1Detector(
                    settings.analysis.v1,
                    wp.grace_s,
                    episodes=EpisodeTracker(ep),
                    fallback_oi=fallback_oi,
                )
            )
        else:
            raise ValueError(f"unknown algorithm {algo!r}: v1 or v3")
    return detectors


def warm_engine() -> None:
    """A fan-out worker's start for detection days (``ifd detect``, a backtest): load the
    engine's compiled kernels from numba's cache and the exchange calendar (with pandas, 1.2 s)
    in a fresh process before the first day arrives, while the caller is still preparing, so no
    day is charged for them. Passed as ``warm`` to jobs/fanout.py's mappers; this module is
    imported with it."""
    from ifd_core.analysis.order_book_fast import warm_up

    is_trading_day(dt.date(2026, 1, 2))
    warm_up()


def engine_pass(
    batches: Iterable[RecordBatch],
    settings: Settings,
    day: dt.date,
    baselines: dict[str, pl.DataFrame] | None,
    algos: Iterable[str],
    records_done: Callable[[int], None] | None = None,
    fallback_oi: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, FlowEngine, float]:
    """The FlowEngine with the detectors of ``algos`` over one day's batches: (the day's windows,
    its signals, the engine, seconds). Writes nothing: detection and backtests share it.
    ``records_done`` gets the records processed so far after each batch (a progress bar);
    ``fallback_oi``: v1's open interest on a date without Databento's (jobs/oi_fallback.py)."""
    wp, _, _ = engine_params(settings)
    detectors = make_detectors(settings, day, baselines, algos, fallback_oi)
    engine = FlowEngine(wp, detectors=detectors)
    t0 = time.perf_counter()
    wins, sigs = [], []
    done = 0
    for batch in batches:
        out = engine.process(batch)
        wins.append(out.windows)
        sigs.append(out.signals)
        done += len(batch)
        if records_done:
            records_done(done)
    out = engine.finish()
    wins.append(out.windows)
    sigs.append(out.signals)
    seconds = time.perf_counter() - t0
    windows = pl.concat(wins, how="diagonal_relaxed").filter(pl.col("date") == day)
    signals = pl.concat(sigs).filter(pl.col("date") == day)
    return windows, signals, engine, seconds


def run_engine(
    lake: Lake,
    day: dt.date,
    settings: Settings,
    baselines: dict[str, pl.DataFrame] | None = None,
    algos: Iterable[str] = (),
    batch_records: int = 500_000,
    records_done: Callable[[int], None] | None = None,
) -> DayRun:
    """One engine pass over the raw files of ``day``; writes windows, rollup and the run log
    in one commit (or in the caller's open transaction)."""
    algos = tuple(algos)
    paths = raw_files_for(lake, day)
    if not paths:
        raise NoDataForDate(f"no ingested MBO data for trade date {day}")
    batches = FileReplaySource(paths, batch_records=batch_records).batches()
    fallback = fallback_for_day(lake, day, settings) if "v1" in algos else None
    windows, signals, engine, seconds = engine_pass(
        batches, settings, day, baselines, algos, records_done, fallback
    )
    key = source_key(paths)
    origin = lake_origin(lake, day)
    stats = engine.books.stats()
    run = pl.DataFrame(
        {
            "date": [day],
            "run_at": [dt.datetime.now(dt.UTC)],
            "engine_version": [ENGINE_VERSION],
            "source_files": [json.dumps([p.name for p in paths])],
            "records": [engine.stats.records],
            "option_trades": [engine.stats.option_trades],
            "underlying_trades": [engine.stats.underlying_trades],
            "late_trades": [engine.windows.late_trades.height],
            "windows": [windows.height],
            "hidden_fills": [int(stats.get("hidden_fills", 0))],
            "book_anomalies": [json.dumps(stats.get("anomalies", {}), sort_keys=True)],
            "seconds": [seconds],
            "detectors": [",".join(algos)],
            "origin": [origin],
            "source_sha": [key],
        }
    )
    # Windows, rollup and run row commit together: "up to date" is judged from all three.
    with lake.transaction(f"engine {day}"):
        _write_windows(lake, day, windows, key, origin)
        lake.replace_day("engine_runs", day, run, "-".join(["engine", *algos]))
        failpoint("detect.engine")
    return DayRun(day, windows, signals, pl.DataFrame(), engine.stats.records, seconds, [])


def window_rows(windows: pl.DataFrame, key: str, origin: str) -> pl.DataFrame:
    """Engine windows as ``pressure_windows`` rows. ``complete`` is true unless the live path
    marks a window that overlaps an unrecovered feed gap."""
    cols = TABLES["pressure_windows"].schema
    extra = [] if "complete" in windows.columns else [pl.lit(True).alias("complete")]
    return windows.with_columns(
        pl.lit(ENGINE_VERSION).alias("engine_version"),
        pl.lit(origin).alias("origin"),
        pl.lit(key).alias("source_sha"),
        *extra,
    ).select(list(cols))


def _write_windows(lake: Lake, day: dt.date, windows: pl.DataFrame, key: str, origin: str) -> None:
    w = window_rows(windows, key, origin)
    lake.replace_day("pressure_windows", day, w, "windows")
    lake.replace_day("option_flow_daily", day, rollup(w), "flow")


def rollup(windows: pl.DataFrame, params: WindowParams | None = None) -> pl.DataFrame:
    """The day per option (root, expiration, strike, right): sums of the windows."""
    keys = ["date", "instrument_id", "raw_symbol", "root", "right", "strike", "expiration"]
    sums = [
        "buy_volume",
        "sell_volume",
        "unsigned_volume",
        "volume",
        "buy_trades",
        "sell_trades",
        "unsigned_trades",
        "trades",
        "buy_premium",
        "sell_premium",
        "large_prints",
        "large_buy_prints",
        "large_sell_prints",
        "delta_volume",
        "delta_unknown_volume",
    ]
    out = (
        windows.sort("window_start")
        .group_by(keys, maintain_order=True)
        .agg(
            pl.col("underlying_id").first(),
            pl.len().cast(pl.Int64).alias("windows"),
            *[pl.col(c).sum() for c in sums],
            pl.col("max_print").max(),
            ((pl.col("vwap") * pl.col("volume")).sum() / pl.col("volume").sum()).alias("vwap"),
            pl.col("first_trade_ts").min(),
            pl.col("last_trade_ts").max(),
            pl.col("underlying_price").last().alias("last_underlying_price"),
            pl.col("origin").first(),
            pl.col("source_sha").first(),
        )
        .with_columns(*pressure_measures(params or WindowParams()))
    )
    return out.select(list(TABLES["option_flow_daily"].schema))


def ensure_windows(
    lake: Lake,
    days: Iterable[dt.date],
    settings: Settings,
    progress: Callable[[dt.date], None] | None = None,
    mapper: Mapper | None = None,
) -> list[dt.date]:
    """Compute the windows of each day whose stored windows are missing or stale; returns the
    days that have windows (days without ingested data are skipped, not invented).

    ``mapper`` None: one day after another here, ``progress`` told of each as it is ready.
    With a mapper the stale days run side by side (jobs/fanout.py), each writing its own
    date's files in its own commit, and ``progress`` hears of each as it finishes."""
    days = list(days)
    if mapper is None:
        have = []
        for day in days:
            paths = raw_files_for(lake, day)
            if paths:
                if not _up_to_date(lake, day, source_key(paths)):
                    run_engine(lake, day, settings)
                have.append(day)
            if progress:
                progress(day)
        return have
    have, stale = [], []
    for day in days:
        paths = raw_files_for(lake, day)
        if paths:
            have.append(day)
            if not _up_to_date(lake, day, source_key(paths)):
                stale.append(day)
    if progress:  # nothing to compute for these: ready now
        for day in days:
            if day not in stale:
                progress(day)
    jobs = [WindowsJob(str(lake.root), settings, d) for d in stale]
    mapper(windows_of_day, jobs, done=(lambda i, _: progress(stale[i])) if progress else None)
    return have


@dataclass(frozen=True)
class WindowsJob:
    """One date's engine pass for its windows, as a worker gets it: plain values that pickle."""

    data_dir: str
    settings: Settings
    day: dt.date

    def __str__(self) -> str:  # the Prefect task run's name
        return self.day.isoformat()


def windows_of_day(job: WindowsJob) -> dt.date:
    """A worker's part of :func:`ensure_windows`: the windows, rollup and run row of one date,
    committed from the worker's own handle on the lake."""
    run_engine(Lake(Path(job.data_dir)), job.day, job.settings)
    return job.day


def _up_to_date(lake: Lake, day: dt.date, key: str) -> bool:
    """The day's windows, rollup and engine run were all computed from ``key``'s raw files."""
    runs = (
        lake.scan("engine_runs")
        .filter((pl.col("date") == day) & (pl.col("source_sha") == key))
        .select("windows")
        .collect()
    )
    if runs.height == 0:
        return False
    if runs["windows"].max() == 0:
        return True  # nothing to store: no windows, no rollup
    return all(_stored_key(lake, t, day) == key for t in ("pressure_windows", "option_flow_daily"))


# ---------------------------------------------------------------------- baselines
def refresh_baselines(
    lake: Lake,
    day: dt.date,
    settings: Settings,
    progress: Callable[[dt.date], None] | None = None,
    store: bool = True,
    mapper: Mapper | None = None,
) -> tuple[dict[str, pl.DataFrame], list[dt.date]]:
    """Baselines for judging ``day`` from the N sessions before it; stored in ``baselines``
    (unless ``store`` is false: detection stores them in its own commit). ``mapper``: the
    sessions' missing windows are computed side by side (``ensure_windows``)."""
    _, _, bp = engine_params(settings)
    sessions = sessions_before(day, bp.lookback_sessions)
    present = ensure_windows(lake, sessions, settings, progress, mapper)
    history = (
        lake.scan("pressure_windows")
        .filter(pl.col("date").is_in(present))
        .collect()
        .filter(pl.col("underlying_price").is_not_null())
    )
    keyed = add_bucket_keys(history) if history.height else history
    base = build_baselines(keyed, day, sessions, bp) if history.height else None
    if base is not None and store:
        _store_baselines(lake, day, base)
    return (base, present)


def _store_baselines(lake: Lake, day: dt.date, base: dict[str, pl.DataFrame]) -> None:
    schema = TABLES["baselines"].schema
    now = dt.datetime.now(dt.UTC)
    parts = []
    for kind, df in base.items():
        d = df.with_columns(
            pl.lit(kind).alias("kind"),
            pl.col("session").alias("date"),
            pl.col("sessions_used").list.eval(pl.element().cast(pl.String)).list.join(","),
            pl.lit(now).alias("built_at"),
        )
        parts.append(
            d.select(
                [
                    pl.col(c).cast(t) if c in d.columns else pl.lit(None, t).alias(c)
                    for c, t in schema.items()
                ]
            )
        )
    lake.publish(lake.stage_partitions("baselines", pl.concat(parts), "baselines"), key="baselines")


# ---------------------------------------------------------------------- detection
def detect_day(
    lake: Lake,
    day: dt.date,
    settings: Settings,
    algos: Iterable[str] = ALGOS,
    progress: Callable[[dt.date], None] | None = None,
    records_done: Callable[[int], None] | None = None,
    mapper: Mapper | None = None,
) -> DayRun:
    """Baselines from earlier sessions, then the engine with the detectors over ``day``;
    writes signals (one file per algorithm) and their outcomes. ``progress`` gets each
    baseline session as it is ready, ``records_done`` the records of ``day`` the engine has
    processed so far. ``mapper``: the earlier sessions' missing windows are computed side by
    side (``ensure_windows``; the day itself runs here)."""
    ensure_migrated(lake)
    algos = tuple(algos)
    if not raw_files_for(lake, day):
        raise NoDataForDate(f"no ingested MBO data for trade date {day}")
    # Earlier sessions' windows commit day by day (each a unit of its own, kept if we die);
    # the day's baselines, windows, rollup, run row, signals and outcomes commit as one.
    base, present = refresh_baselines(lake, day, settings, progress, store=False, mapper=mapper)
    with lake.transaction(f"detect {day}"):
        if base is not None:
            _store_baselines(lake, day, base)
        run = run_engine(lake, day, settings, base, algos, records_done=records_done)
        run.baseline_sessions = present
        now = dt.datetime.now(dt.UTC)
        origin = lake_origin(lake, day)
        key = source_key(raw_files_for(lake, day))
        for algo in algos:
            sig = run.signals.filter(pl.col("algo") == algo).with_columns(
                pl.lit(settings.config_version()).alias("config_version"),
                pl.lit(now).alias("detected_at"),
                pl.lit(origin).alias("origin"),
                pl.lit(key).alias("source_sha"),
            )
            lake.replace_day("signals", day, sig.select(list(TABLES["signals"].schema)), algo)
        run.outcomes = label_day(
            lake, day, run.signals, BarrierParams.from_settings(settings), algos=algos
        )
        failpoint("detect.signals")
    return run


def outcomes_of(
    lake: Lake, day: dt.date, signals: pl.DataFrame, p: BarrierParams | None = None
) -> pl.DataFrame:
    """Triple-barrier outcomes of ``signals`` from the underlying's trades in the lake, not
    stored (label_day stores them; backtests keep theirs with the run)."""
    under = signals["underlying_id"].unique().to_list()
    tape = (
        lake.scan("trades")
        .filter(pl.col("instrument_id").is_in(under) & (pl.col("date") >= day))
        .select("instrument_id", "ts_event", fixed_price("price"))
        .collect()
    )
    ib = (
        lake.scan("underlying_ticks")
        .filter(pl.col("instrument_id").is_in(under) & (pl.col("date") >= day))
        .select("instrument_id", "ts_event", "price")
        .collect()
    )
    tape, ib_from = extend_tape(tape, ib)
    out = label_signals(signals, tape, p)
    out = out.with_columns(price_sources(out, ib_from))
    # The outcome carries its signal's episode: statistics count one outcome per episode.
    if "episode_id" in signals.columns:
        eps = signals.select("signal_id", "episode_id").unique("signal_id")
        return out.join(eps, on="signal_id", how="left")
    return out.with_columns(pl.lit(None, pl.String).alias("episode_id"))


def label_day(
    lake: Lake,
    day: dt.date,
    signals: pl.DataFrame,
    p: BarrierParams | None = None,
    algos: Iterable[str] | None = None,
) -> pl.DataFrame:
    """Triple-barrier outcomes of ``signals`` from the underlying's trades in the lake.

    The outcomes of ``algos`` (default: those of ``signals``) on ``day`` are replaced; other
    algorithms' outcomes are kept (``ifd detect --algo v3`` must not drop v1's labels)."""
    algos = set(signals["algo"].unique().to_list() if algos is None else algos)
    cols = list(TABLES["signal_outcomes"].schema)
    kept = (
        lake.scan("signal_outcomes")
        .filter((pl.col("date") == day) & ~pl.col("algo").is_in(sorted(algos)))
        .collect()
        .select(cols)
    )
    if signals.height == 0:
        lake.replace_day("signal_outcomes", day, kept, "outcomes")
        return pl.DataFrame(schema=TABLES["signal_outcomes"].pl_schema)
    out = outcomes_of(lake, day, signals, p).with_columns(
        pl.lit(day).alias("date"),
        pl.lit(dt.datetime.now(dt.UTC)).alias("labelled_at"),
        pl.lit(lake_origin(lake, day)).alias("origin"),
        pl.lit(source_key(raw_files_for(lake, day))).alias("source_sha"),
    )
    out = out.select(cols)
    lake.replace_day(
        "signal_outcomes", day, pl.concat([kept, out], how="vertical_relaxed"), "outcomes"
    )
    return out


def stored_signals(lake: Lake, day: dt.date, algo: str) -> pl.DataFrame | None:
    """The signals of ``day`` and ``algo`` if detection ran on the current raw data (possibly
    none were raised), else None: never ran, the raw data changed since, or the signals were
    detected before episodes existed (no ``episode_id``: detecting again assigns them)."""
    paths = raw_files_for(lake, day)
    runs = (
        lake.scan("engine_runs")
        .filter((pl.col("date") == day) & pl.col("detectors").str.split(",").list.contains(algo))
        .collect()
    )
    if not paths or runs.height == 0 or runs["source_sha"][-1] != source_key(paths):
        return None
    found = (
        lake.scan("signals").filter((pl.col("date") == day) & (pl.col("algo") == algo)).collect()
    )
    # Detected before signals had episodes (same raw files, same engine): not current either.
    if "episode_id" not in found.columns or found["episode_id"].null_count():
        return None
    return found


# ---------------------------------------------------------------------- chain analyzers
def chain_snapshot(lake: Lake, day: dt.date, as_of_ns: int, settings: Settings):
    """The option chain of ``day`` as known at ``as_of_ns`` (windows closed by then, open
    interest and settlements received by then, the underlying's last trade by then), with the
    same-time-of-day volume baseline of the sessions before, for the chain analyzers."""
    from ifd_core.analysis.chain.pipeline import ChainState
    from ifd_core.analysis.chain.snapshot import build_snapshot
    from ifd_core.analysis.chain.volume_shock import time_of_day_baseline
    from ifd_core.calendar import et_to_ns

    ensure_migrated(lake)
    if not ensure_windows(lake, [day], settings):
        raise NoDataForDate(f"no ingested MBO data for trade date {day}")
    windows = lake.scan("pressure_windows").filter(pl.col("date") == day).collect()
    windows = windows.filter(pl.col("window_end") <= as_of_ns)
    if windows.height == 0:
        raise NoDataForDate(f"no option window of {day} closed by the requested time")
    # The most active future of the chain so far is the snapshot's underlying.
    uid = (
        windows.group_by("underlying_id")
        .agg(pl.col("volume").sum())
        .sort("volume", descending=True)["underlying_id"][0]
    )
    fut = (
        lake.scan("trades")
        .filter((pl.col("instrument_id") == uid) & (pl.col("ts_event") <= as_of_ns))
        .filter(pl.col("date") <= day)
        .select("ts_event", "price", "size")
        .collect()
        .sort("ts_event")
    )
    if fut.height == 0:
        raise NoDataForDate(f"no trade of the underlying future {uid} by the requested time")
    price = fut["price"][-1] * PRICE_UNIT
    recent = fut.filter(pl.col("ts_event") > as_of_ns - 300 * NS)["size"].sum()
    oi = (
        lake.scan("open_interest")
        .filter(pl.col("ts_recv") <= as_of_ns)
        .select("instrument_id", "ts_recv", pl.col("quantity").alias("open_interest"))
        .collect()
    )
    settle = (
        lake.scan("settlements")
        .filter(pl.col("ts_recv") <= as_of_ns)
        .select(
            "instrument_id",
            "ts_recv",
            fixed_price("price").alias("settlement"),
        )
        .collect()
    )
    instruments = (
        lake.scan("instruments")
        .filter((pl.col("date") <= day) & pl.col("instrument_class").is_in(["C", "P"]))
        .filter(pl.col("underlying_id") == uid)
        .sort("date", "ts_recv")
        .collect()
        .unique("instrument_id", keep="last")
        .filter(pl.col("expiration").cast(pl.Int64) > as_of_ns)
        .select(
            "instrument_id",
            pl.col("asset").alias("root"),
            pl.col("instrument_class").alias("right"),
            "strike",
            "expiration",
            "underlying_id",
        )
    )
    snap = build_snapshot(
        windows,
        oi,
        settle,
        as_of_ns,
        underlying_price=float(price),
        futures_volume=int(recent),
        underlying_id=int(uid),
        instruments=instruments,
    )
    # Same time of day on earlier sessions that have windows.
    et = ns_to_utc(as_of_ns).astimezone(_NY)
    sessions = sessions_before(day, 20)
    present = ensure_windows(lake, sessions, settings)
    history = lake.scan("pressure_windows").filter(pl.col("date").is_in(present)).collect()
    instants = [et_to_ns(d, et.hour, et.minute, et.second) for d in present]
    baseline = time_of_day_baseline(history, instants, as_of_ns)
    return snap, ChainState(volume_baseline=baseline)
