"""The backtester: the production FlowEngine and paper executor over stored days, with labels,
metrics, Monte Carlo and walk-forward.

Per trade date, in order: the records are read once, the engine and detectors produce the
signals, each algorithm's executor (its own account, carried day to day) trades them, the triple
barrier labels them. Nothing depends on batch boundaries or wall time, so two runs give identical
orders, fills and P&L. Walk-forward and outputs: docs/operations.md §Backtest, A/B and extended
test.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl

from ifd_core.analysis.cross_asset import weighted_confidence
from ifd_core.analysis.episodes import first_per_episode
from ifd_core.analysis.wiring import engine_params
from ifd_core.calendar import sessions_before, streaming_period
from ifd_core.marketdata.record_source import FileReplaySource, RecordBatch
from ifd_core.settings import Settings
from ifd_core.trading.halt import EmergencyStop
from ifd_core.trading.labels import BarrierParams
from ifd_core.trading.paper import PaperExecutor, executor_from_settings
from jobs.detect import (
    engine_pass,
    ensure_windows,
    lake_origin,
    outcomes_of,
    raw_files_for,
    refresh_baselines,
    warm_engine,
)
from jobs.fanout import Mapper, inline_map
from jobs.oi_fallback import fallback_for_day
from warehouse.lake import Lake
from warehouse.migrations import ensure_migrated
from warehouse.tables import TABLES

LEDGER = ("orders", "fills", "positions")
WEIGHTED_ALGO = "v3"  # the algorithm whose episodes have cross-asset confirmations
CONFIRMATIONS = "cross_asset_confirmations"


@dataclass
class CrossAssetWeighting:
    """What ``massive.confidence_weight`` changed in a run: v3's daily rows as it would have
    traded on its own confidence (a second executor over the same signals and records, its
    ledger not written), and per day v3's episodes, those with a stored row (``stored``), those
    whose row has a confirmation (``confirmed``: something signed traded), and those with a
    signal that passes the min-confidence filter only with the weight (``gained``) or only
    without it (``lost``)."""

    weight: float
    algo: str
    unweighted_daily: pl.DataFrame
    coverage: pl.DataFrame  # date, episodes, stored, confirmed, gained, lost


def day_confirmations(lake: Lake, day: dt.date) -> pl.DataFrame:
    """The stored cross-asset confirmations of ``day`` (none stored: no rows)."""
    return lake.scan(CONFIRMATIONS).filter(pl.col("date") == day).collect()


def _crossings(before: pl.DataFrame, after: pl.DataFrame, floor: float) -> tuple[int, int]:
    """Episodes with a signal passing ``floor`` only after the weight / only before it."""
    if before.height == 0:
        return 0, 0
    b = before.select("episode_id", (pl.col("confidence") >= floor).alias("b"))
    a = after.select((pl.col("confidence") >= floor).alias("a"))
    both = pl.concat([b, a], how="horizontal")
    gained = both.filter(pl.col("a") & ~pl.col("b"))["episode_id"].n_unique()
    lost = both.filter(~pl.col("a") & pl.col("b"))["episode_id"].n_unique()
    return gained, lost


@dataclass
class BacktestResult:
    run_id: str
    mode: str
    algos: tuple[str, ...]
    days: list[dt.date]
    capital: float
    synthetic: bool
    daily: pl.DataFrame  # pnl_daily rows plus signal/label counts per (date, algo)
    outcomes: pl.DataFrame  # date, algo, signal_id, label, ...
    signals: pl.DataFrame  # the engine's signals of every day (the SIGNAL_SCHEMA columns)
    positions: pl.DataFrame
    orders: pl.DataFrame
    fills: pl.DataFrame
    seconds: float
    records: int
    walk_forward: dict | None = None
    cross_asset: CrossAssetWeighting | None = None  # set when massive.confidence_weight > 0
    monte_carlo: dict[str, dict] = field(default_factory=dict)
    mc_paths: dict[str, object] = field(default_factory=dict)  # MonteCarloResult per algo


def trading_days(lake: Lake, start: dt.date, end: dt.date) -> list[dt.date]:
    """Trade dates in [start, end] with ingested MBO, in order."""
    dates = (
        lake.scan("ingest_log")
        .filter(pl.col("status") == "loaded")
        .select(pl.col("dates").str.json_decode(pl.List(pl.String)).explode().alias("d"))
        .collect()["d"]
        .drop_nulls()
        .unique()
        .to_list()
    )
    days = sorted(dt.date.fromisoformat(d) for d in dates)
    return [d for d in days if start <= d <= end and raw_files_for(lake, d)]


@dataclass
class DayJob:
    """One trade date's detection pass, as a worker gets it: plain values that pickle (the data
    root, not an open lake)."""

    data_dir: str
    settings: Settings
    day: dt.date
    algos: tuple[str, ...]

    def __str__(self) -> str:  # the Prefect task run's name
        return self.day.isoformat()


@dataclass
class DayDetection:
    """What the account pass needs of a day: its signals and labels, and of its records only
    those of the instruments a signal names (all the executors replay, batch by batch)."""

    day: dt.date
    origin: str
    records: int
    signals: pl.DataFrame
    labels: pl.DataFrame | None
    batches: list[RecordBatch]
    session_close_ns: int | None  # None: not a session (nothing was read)


def detect_for_backtest(job: DayJob) -> DayDetection:
    """The independent part of a backtest day, runnable in any process: read the records,
    baselines from the sessions before, the engine with the detectors, the triple-barrier
    labels. Depends on nothing of the other days of the run, so days run side by side."""
    day, settings = job.day, job.settings
    period = streaming_period(day, "always_on")
    if period is None:
        return DayDetection(day, "", 0, pl.DataFrame(), None, [], None)
    lake = Lake(Path(job.data_dir))
    paths = raw_files_for(lake, day)
    origin = lake_origin(lake, day)
    batches = list(FileReplaySource(paths, batch_records=500_000).batches())
    records = sum(len(b) for b in batches)
    base, _ = refresh_baselines(lake, day, settings)
    fallback = fallback_for_day(lake, day, settings) if "v1" in job.algos else None
    _, signals, _, _ = engine_pass(
        iter(batches), settings, day, base, job.algos, fallback_oi=fallback
    )
    signals = signals.with_columns(pl.lit(settings.config_version()).alias("config_version"))
    barrier = BarrierParams.from_settings(settings)
    labels = outcomes_of(lake, day, signals, barrier) if signals.height else None
    return DayDetection(
        day,
        origin,
        records,
        signals,
        labels,
        _traded_records(batches, signals),
        period.close_ns,
    )


def _traded_records(batches: list[RecordBatch], signals: pl.DataFrame) -> list[RecordBatch]:
    """The MBO batches cut to the instruments any signal names (option and underlying): a
    superset of what each executor keeps (``PaperExecutor.run_day`` filters the same way), in
    the same batches, so the account pass gets the same records without reading the day."""
    if signals.height == 0:
        return []
    ids = np.array(
        sorted(set(signals["instrument_id"].to_list()) | set(signals["underlying_id"].to_list())),
        dtype=np.uint32,
    )
    out = []
    for b in batches:
        if b.schema == "mbo" and len(b):
            out.append(replace(b, records=b.records[np.isin(b.records["instrument_id"], ids)]))
    return out


def warm_backtest() -> None:
    """:func:`jobs.detect.warm_engine` for a backtest's workers: passed from here, it imports
    this module (and the paper executor) too, before the first day's job needs it."""
    warm_engine()


def backtest_sessions(days: Sequence[dt.date], settings: Settings) -> list[dt.date]:
    """Every session whose windows some day of the run builds its baselines from."""
    _, _, bp = engine_params(settings)
    return sorted({s for d in days for s in sessions_before(d, bp.lookback_sessions)})


def run_backtest(
    lake: Lake,
    settings: Settings,
    start: dt.date,
    end: dt.date,
    algos: Sequence[str],
    *,
    walk_forward: bool = False,
    write: bool = True,
    mode: str = "backtest",
    progress: Callable[[str], None] | None = None,
    days_done: Callable[[int, int], None] | None = None,
    mapper: Mapper = inline_map,
) -> BacktestResult:
    """The backtest entry point: the production FlowEngine and paper executor over the stored
    trade dates ``start``..``end`` for each of ``algos``, with labels, metrics, Monte Carlo and
    (``walk_forward``) out-of-sample folds; ``write`` puts the ledger into the lake.

    Two passes: the detection pass (``detect_for_backtest``, one day per item of ``mapper``,
    side by side when the mapper runs them so), then the account pass over the days in order
    (each algorithm's executor carried day to day, its daily stops, the walk-forward variants).
    The missing windows of the baseline sessions are computed first, also through ``mapper``,
    so no two days compute the same session. Results do not depend on the mapper.

    ``progress`` gets a line per day (and the emergency stop's warning); ``days_done`` gets
    (steps done, steps), two steps a day (its detection, then its account pass), from (0, 2n)
    before the first, for a progress bar."""
    ensure_migrated(lake)
    say = progress or (lambda msg: None)
    count = days_done or (lambda done, total: None)
    days = trading_days(lake, start, end)
    if not days:
        raise ValueError(f"no ingested trading days between {start} and {end}")
    steps = 2 * len(days)
    count(0, steps)
    algos = tuple(algos)
    run_id = f"bt-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    halt = EmergencyStop(settings.data_dir)
    if (why := halt.reason()) is not None:
        say(f"EMERGENCY STOP ACTIVE: every entry of this backtest is refused ({why})")
    capital = settings.paper.capital

    def make(algo: str, min_conf: float | None = None) -> PaperExecutor:
        ex = executor_from_settings(algo, settings, halted=halt.reason, run_id=run_id, mode=mode)
        if min_conf is not None:
            ex.cfg = replace(ex.cfg, min_confidence=min_conf)
        return ex

    executors = {a: make(a) for a in algos}
    weight = settings.massive.confidence_weight
    weighted = weight > 0 and WEIGHTED_ALGO in algos
    # Weighted: the second v3 account trades v3's own confidence, for the comparison.
    plain = make(WEIGHTED_ALGO) if weighted else None
    plain_rows: list[dict] = []
    coverage_rows: list[dict] = []
    if weighted:
        say(
            f"massive.confidence_weight={weight}: {WEIGHTED_ALGO} signals with a stored "
            "cross-asset confirmation trade (1 - w) x confidence + w x confirmation"
        )
    grid = list(settings.backtest.confidence_grid) if walk_forward else []
    variants = {(a, c): make(a, c) for a in algos for c in grid}
    t0 = time.perf_counter()
    ensure_windows(lake, backtest_sessions(days, settings), settings, mapper=mapper)
    detected = 0

    def one_detected(i: int, det: DayDetection) -> None:
        nonlocal detected
        detected += 1
        count(detected, steps)

    jobs = [DayJob(str(lake.root), settings, d, algos) for d in days]
    detections = mapper(detect_for_backtest, jobs, done=one_detected)
    records = 0
    synthetic = False
    origins: dict[dt.date, str] = {}
    daily_rows: list[dict] = []
    variant_rows: list[dict] = []
    outcomes, ledgers, all_signals = [], {t: [] for t in LEDGER}, []
    for n, det in enumerate(detections, 1):
        day = det.day
        if det.session_close_ns is None:
            count(len(days) + n, steps)
            continue
        origins[day] = det.origin
        synthetic |= det.origin == "synthetic"
        records += det.records
        signals, labels, batches = det.signals, det.labels, det.batches
        all_signals.append(signals)
        confirmations = day_confirmations(lake, day) if weighted else None
        for algo in algos:
            sig = signals.filter(pl.col("algo") == algo)
            if confirmations is not None and algo == WEIGHTED_ALGO:
                own = sig
                sig = weighted_confidence(own, confirmations, weight, WEIGHTED_ALGO)
                assert plain is not None
                plain_equity0 = plain.equity
                plain_led = plain.run_day(batches, own, det.session_close_ns)
                plain_lab = _labels_of(labels, algo)
                plain_rows.append(
                    daily_row(day, algo, plain, plain_equity0, own, plain_led, plain_lab)
                )
                gained, lost = _crossings(own, sig, plain.cfg.min_confidence)
                stored = confirmations.filter(
                    pl.col("episode_id").is_in(own["episode_id"].implode())
                )
                confirmed = stored.filter(pl.col("confirmation").is_not_null())
                coverage_rows.append(
                    {
                        "date": day,
                        "episodes": own["episode_id"].n_unique() if own.height else 0,
                        "stored": stored["episode_id"].n_unique(),
                        "confirmed": confirmed["episode_id"].n_unique(),
                        "gained": gained,
                        "lost": lost,
                    }
                )
            ex = executors[algo]
            equity0 = ex.equity
            led = ex.run_day(batches, sig, det.session_close_ns)
            for t in LEDGER:
                ledgers[t] += [{"date": day, **r} for r in getattr(led, t)]
            lab = _labels_of(labels, algo)
            outcomes += [{"date": day, "algo": algo, **r} for r in lab.to_dicts()]
            daily_rows.append(daily_row(day, algo, ex, equity0, sig, led, lab))
            for c in grid:
                v = variants[(algo, c)]
                before = v.equity
                v.run_day(batches, sig, det.session_close_ns)
                variant_rows.append(
                    {"date": day, "algo": algo, "min_confidence": c, "net_pnl": v.equity - before}
                )
        say(f"{day}: {n}/{len(days)} days, {signals.height} signals")
        count(len(days) + n, steps)
    seconds = time.perf_counter() - t0

    def with_origin(df: pl.DataFrame) -> pl.DataFrame:
        if df.height == 0:
            return df.with_columns(pl.lit(None, pl.String).alias("origin"))
        return df.with_columns(
            pl.col("date").replace_strict(origins, return_dtype=pl.String).alias("origin")
        )

    daily = with_origin(
        pl.DataFrame(daily_rows).with_columns(
            pl.lit(run_id).alias("run_id"), pl.lit(mode).alias("mode")
        )
    )
    frames = {t: with_origin(_frame(t, ledgers[t])) for t in LEDGER}
    result = BacktestResult(
        run_id=run_id,
        mode=mode,
        algos=algos,
        days=days,
        capital=capital,
        synthetic=synthetic,
        daily=daily,
        outcomes=pl.DataFrame(outcomes) if outcomes else _empty_outcomes(),
        signals=pl.concat(all_signals, how="diagonal_relaxed") if all_signals else pl.DataFrame(),
        positions=frames["positions"],
        orders=frames["orders"],
        fills=frames["fills"],
        seconds=seconds,
        records=records,
    )
    result.monte_carlo, result.mc_paths = _monte_carlo(result, settings)
    if walk_forward:
        result.walk_forward = _walk_forward(pl.DataFrame(variant_rows), days, settings)
    if weighted:
        result.cross_asset = CrossAssetWeighting(
            weight=weight,
            algo=WEIGHTED_ALGO,
            unweighted_daily=with_origin(
                pl.DataFrame(plain_rows).with_columns(
                    pl.lit(run_id).alias("run_id"), pl.lit(mode).alias("mode")
                )
            )
            if plain_rows
            else daily.filter(pl.col("algo") == WEIGHTED_ALGO),
            coverage=pl.DataFrame(
                coverage_rows,
                schema={
                    "date": pl.Date,
                    "episodes": pl.Int64,
                    "stored": pl.Int64,
                    "confirmed": pl.Int64,
                    "gained": pl.Int64,
                    "lost": pl.Int64,
                },
            ),
        )
    if write:
        _write(lake, result)
    return result


def _labels_of(labels: pl.DataFrame | None, algo: str) -> pl.DataFrame:
    """The day's labels of ``algo`` (a day without signals: none)."""
    if labels is not None:
        return labels.filter(pl.col("algo") == algo)
    return pl.DataFrame(
        schema={c: OUTCOME_COLUMNS[c] for c in ("signal_id", "episode_id", "decision_ts", "label")}
    )


def daily_row(day, algo, ex: PaperExecutor, equity0, sig, led, labels) -> dict:
    """One (date, algo) row: ``signals`` counts signals, ``episodes`` their episodes, and the
    label counts (resolved, correct, ...) count episodes by their first signal's label — the
    unit the extended test pools. ``orders`` are entries decided (skipped ones excluded)."""
    net = [p["net_pnl"] for p in led.positions]
    firsts = first_per_episode(labels) if labels.height else None
    counts = firsts["label"].value_counts() if firsts is not None else None
    n = dict(counts.iter_rows()) if counts is not None else {}
    episodes = sig["episode_id"].n_unique() if sig.height and "episode_id" in sig.columns else 0
    return {
        "date": day,
        "algo": algo,
        "config_version": sig["config_version"][0] if sig.height else "",
        "signals": sig.height,
        "episodes": episodes,
        "resolved": n.get("correct", 0) + n.get("incorrect", 0),
        "correct": n.get("correct", 0),
        "incorrect": n.get("incorrect", 0),
        "neutral": n.get("neutral", 0),
        "orders": sum(o["purpose"] == "entry" and o["status"] != "skipped" for o in led.orders),
        "skipped_same_episode": sum(o["status"] == "skipped" for o in led.orders),
        "rejected": sum(o["status"] == "rejected" for o in led.orders),
        "trades": len(net),
        "wins": sum(x > 0 for x in net),
        "losses": sum(x < 0 for x in net),
        "gross_win": float(sum(x for x in net if x > 0)),
        "gross_loss": float(sum(x for x in net if x < 0)),
        "gross_pnl": float(sum(p["gross_pnl"] for p in led.positions)),
        "fees": float(sum(p["fees"] for p in led.positions)),
        "net_pnl": ex.equity - equity0,
        "equity_end": ex.equity,
        "drawdown": ex.peak_equity - ex.equity,
    }


def _frame(table: str, rows: list[dict]) -> pl.DataFrame:
    schema = {c: t for c, t in TABLES[table].pl_schema.items()}
    if not rows:
        return pl.DataFrame(schema=schema)
    return pl.DataFrame(rows, schema_overrides={c: schema[c] for c in rows[0] if c in schema})


def _empty_outcomes() -> pl.DataFrame:
    return pl.DataFrame(schema=OUTCOME_COLUMNS)


OUTCOME_COLUMNS = {
    "date": pl.Date,
    "algo": pl.String,
    "signal_id": pl.String,
    "episode_id": pl.String,
    "decision_ts": pl.UInt64,
    "label": pl.String,
}


def _monte_carlo(result: BacktestResult, settings: Settings) -> tuple[dict, dict]:
    from ifd_core.trading.monte_carlo import block_bootstrap

    bt = settings.backtest
    summary, raw = {}, {}
    for algo in result.algos:
        pnl = result.daily.filter(pl.col("algo") == algo).sort("date")["net_pnl"].to_numpy()
        if len(pnl) == 0:
            continue
        mc = block_bootstrap(
            pnl,
            capital=result.capital,
            paths=bt.mc_paths,
            block_days=min(bt.mc_block_days, len(pnl)),
            equity_floor_fraction=bt.equity_floor_fraction,
            seed=bt.mc_seed,
        )
        summary[algo], raw[algo] = mc.to_dict(), mc
    return summary, raw


def _walk_forward(rows: pl.DataFrame, days: list[dt.date], settings: Settings) -> dict:
    """Choose the min confidence on each train window, report it on the next test window; the
    holdout is reported with the choice made on all sessions before it."""
    bt = settings.backtest
    n_hold = min(bt.holdout_sessions, max(0, len(days) - 2))
    tunable, holdout = days[: len(days) - n_hold], days[len(days) - n_hold :]
    train_n, test_n = bt.wf_train_sessions, bt.wf_test_sessions
    # P&L is summed per session: days are the unit; each executor acts once per episode.
    out: dict = {"train_sessions": train_n, "test_sessions": test_n, "unit": "days", "algos": {}}
    if len(tunable) < train_n + test_n:
        out["note"] = (
            f"{len(tunable)} sessions before the holdout: fewer than train {train_n} + test "
            f"{test_n}, so no walk-forward window; only the holdout choice is reported"
        )
    for algo in rows["algo"].unique().sort().to_list():
        r = rows.filter(pl.col("algo") == algo)
        windows = []
        for s in range(0, len(tunable) - train_n - test_n + 1, test_n):
            train, test = tunable[s : s + train_n], tunable[s + train_n : s + train_n + test_n]
            best = _best_conf(r, train)
            pnl = r.filter(pl.col("date").is_in(test) & (pl.col("min_confidence") == best))
            windows.append(
                {
                    "train_start": train[0],
                    "train_end": train[-1],
                    "test_start": test[0],
                    "test_end": test[-1],
                    "min_confidence": best,
                    "test_net_pnl": float(pnl["net_pnl"].sum()),
                }
            )
        chosen = _best_conf(r, tunable) if tunable else None
        hold = r.filter(pl.col("date").is_in(holdout) & (pl.col("min_confidence") == chosen))
        out["algos"][algo] = {
            "windows": windows,
            "test_net_pnl": float(sum(w["test_net_pnl"] for w in windows)),
            "holdout_sessions": len(holdout),
            "holdout_min_confidence": chosen,
            "holdout_net_pnl": float(hold["net_pnl"].sum()) if holdout else None,
        }
    return out


def _best_conf(rows: pl.DataFrame, days: list[dt.date]) -> float:
    """The grid value with the highest net P&L over ``days`` (ties: the lower threshold)."""
    agg = (
        rows.filter(pl.col("date").is_in(days))
        .group_by("min_confidence")
        .agg(pl.col("net_pnl").sum())
        .sort(["net_pnl", "min_confidence"], descending=[True, False])
    )
    return float(agg["min_confidence"][0])


def _write(lake: Lake, r: BacktestResult) -> None:
    """The run's ledger and daily P&L into the lake, one file per date and table, in one
    commit: a run's orders never show without its fills and P&L."""
    with lake.transaction(f"backtest {r.run_id}"):
        for t, df in (("orders", r.orders), ("fills", r.fills), ("positions", r.positions)):
            if df.height:
                lake.write(t, df.select(list(TABLES[t].schema)), r.run_id)
        cols = list(TABLES["pnl_daily"].schema)
        lake.write("pnl_daily", r.daily.select(cols), r.run_id)


def metrics_of(result: BacktestResult) -> pl.DataFrame:
    """Per-algorithm metrics of a run; every algorithm gets a row, and Sharpe counts the
    sessions without a trade as P&L 0. Accuracy counts episodes (``metrics.UNIT``)."""
    from ifd_core.trading.metrics import COUNT_COLUMNS, daily_sharpe, metrics_table

    trades = result.positions.select("algo", "date", "exit_ts", "net_pnl")
    outcomes = (
        result.outcomes.select(list(OUTCOME_COLUMNS))
        if result.outcomes.height
        else _empty_outcomes()
    )
    table = metrics_table(outcomes, trades, by=("algo",))
    # Sharpe over every session of the run, the ones without a trade included (P&L 0 that day).
    sharpe = {
        a: daily_sharpe(result.daily.filter(pl.col("algo") == a)["net_pnl"].to_list())
        for a in result.algos
    }
    table = table.with_columns(
        pl.col("algo")
        .replace_strict(sharpe, default=None, return_dtype=pl.Float64)
        .alias("daily_sharpe")
    )
    # Every algorithm run gets a row, also one that raised nothing (zeros, not a missing line).
    algos = pl.DataFrame({"algo": list(result.algos)})
    table = algos.join(table, on="algo", how="left")
    return table.with_columns(
        *[pl.col(c).fill_null(0) for c in COUNT_COLUMNS if c in table.columns],
        pl.col("net_pnl").fill_null(0.0),
        pl.col("max_drawdown").fill_null(0.0),
    )
