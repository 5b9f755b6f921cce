"""The calibration study: IFD's verdicts measured on simulated markets whose answer is known.

Every number here comes from SYNTHETIC markets: it validates the *statistics* (labels, detection
counts, intervals, the A/B test, the extended test, Monte Carlo) against the simulator's truth and
says nothing about real markets. One market is cut into blocks, each judged by the production code
(``run_backtest``, ``extended.verdict``); the A/B test over the whole market. Design and why the
blocks are independent replicates: docs/simulator.md §Calibration.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import polars as pl

from ifd_core.analysis.episodes import first_per_episode
from ifd_core.analysis.evaluation import evaluate
from ifd_core.settings import Settings
from ifd_core.simulator.market import simulate_market
from ifd_core.simulator.params import SimParams
from ifd_core.trading.extended import verdict as extended_verdict
from ifd_core.trading.labels import BarrierParams
from ifd_core.trading.metrics import accuracy_stats
from jobs.ab import ab_of
from jobs.backtest import BacktestResult, run_backtest
from jobs.detect import outcomes_of
from jobs.extended import criteria_from, daily_rows
from warehouse.ingest import ingest_files
from warehouse.lake import Lake

ALGOS = ("v3", "v1")


@dataclass(frozen=True)
class Grid:
    """What the study simulates. Defaults are the `make calibrate` study's."""

    shares: tuple[float, ...] = (0.0, 0.6, 0.8)
    seeds: tuple[int, ...] = (11, 12, 13)
    warmup: int = 20
    blocks: int = 4
    block_days: int = 10
    scale: float = 0.25
    # v1's low-OI blocks are informed with this share; None: the market's informed share.
    v1_informed_share: float | None = None

    @property
    def days(self) -> int:
        return self.warmup + self.blocks * self.block_days


@dataclass
class BlockResult:
    """One replicate: a ``block_days`` window of one simulated market (SYNTHETIC)."""

    share: float
    seed: int
    block: int
    days: list[str]
    algos: dict[str, dict] = field(default_factory=dict)
    extended: dict = field(default_factory=dict)
    labeller: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class MarketResult:
    share: float
    seed: int
    blocks: list[BlockResult]
    ab: dict

    def to_dict(self) -> dict:
        return {
            "share": self.share,
            "seed": self.seed,
            "ab": self.ab,
            "blocks": [b.to_dict() for b in self.blocks],
        }


def sim_params(settings: Settings, share: float, grid: Grid) -> SimParams:
    """The configured simulator, with the study's informed share(s)."""
    base = SimParams.from_settings(settings.simulator)
    v1 = share if grid.v1_informed_share is None else grid.v1_informed_share
    return SimParams(**{**asdict(base), "informed_share": share, "v1_informed_share": v1})


def run_market(
    share: float,
    seed: int,
    grid: Grid,
    root: Path,
    settings_for: Callable[[Path], Settings],
    say: Callable[[str], None] = lambda m: None,
) -> MarketResult:
    """Simulate, ingest and judge one market; ``settings_for(data_dir)`` gives its settings."""
    where = root / f"share{share:g}-seed{seed}"
    data = where / "data"
    settings = settings_for(data)
    summary = simulate_market(
        where / "sim", grid.days, seed, scale=grid.scale, params=sim_params(settings, share, grid)
    )
    lake = Lake(data)
    report = ingest_files(summary.files, lake)
    if not report.ok:
        raise RuntimeError(f"ingest of the simulated market {where} failed: {report}")
    truth = json.loads(summary.truth_path.read_text())["events"]
    flow_days = summary.days[grid.warmup :]
    blocks: list[BlockResult] = []
    backtests: list[BacktestResult] = []
    for b in range(grid.blocks):
        days = flow_days[b * grid.block_days : (b + 1) * grid.block_days]
        if not days:
            break
        bt = run_backtest(lake, settings, days[0], days[-1], ALGOS, write=False, mode="calibration")
        backtests.append(bt)
        blocks.append(_block(lake, settings, share, seed, b, days, bt, truth))
        say(f"share {share:g} seed {seed}: block {b + 1}/{grid.blocks} done")
    whole = replace(
        backtests[0],
        days=[d for bt in backtests for d in bt.days],
        outcomes=pl.concat([bt.outcomes for bt in backtests], how="diagonal_relaxed"),
        daily=pl.concat([bt.daily for bt in backtests], how="diagonal_relaxed"),
        signals=pl.concat([bt.signals for bt in backtests], how="diagonal_relaxed"),
    )
    ab = ab_of(whole, settings).to_dict()
    return MarketResult(share, seed, blocks, ab)


def _block(lake, settings, share, seed, b, days, bt: BacktestResult, truth) -> BlockResult:
    names = {d.isoformat() for d in days}
    events = [e for e in truth if e["date"] in names]
    out = BlockResult(share, seed, b, sorted(names))
    for algo in ALGOS:
        out.algos[algo] = _algo_block(bt, algo, events, days)
    ext = extended_verdict(daily_rows(lake, bt), criteria_from(settings), operational=False)
    out.extended = {"status": ext.status, "reasons": list(ext.reasons)}
    out.labeller = _label_flows(lake, settings, events)
    return out


def _algo_block(bt: BacktestResult, algo: str, events: list[dict], days: list[dt.date]) -> dict:
    outcomes = bt.outcomes.filter(pl.col("algo") == algo) if bt.outcomes.height else bt.outcomes
    signals = bt.signals.filter(pl.col("algo") == algo) if bt.signals.height else bt.signals
    per_signal = accuracy_stats(outcomes["label"].to_list() if outcomes.height else [])
    firsts = first_per_episode(outcomes) if outcomes.height else outcomes
    per_episode = accuracy_stats(firsts["label"].to_list() if firsts.height else [])
    by_signal = _classify(signals, events, days, algo)
    by_episode = _classify(
        first_per_episode(signals) if signals.height else signals, events, days, algo
    )
    daily = bt.daily.filter(pl.col("algo") == algo)
    mc = bt.monte_carlo.get(algo, {})
    return {
        "signals": signals.height,
        "episodes": by_episode["n"],
        "per_signal": per_signal.to_dict(),
        "per_episode": per_episode.to_dict(),
        "planted": by_signal["planted"],
        "found": by_signal["found"],
        "informed_found": by_signal["informed_found"],
        "signals_on_flows": by_signal["on_flows"],
        "episodes_on_flows": by_episode["on_flows"],
        "decoy_signals": by_signal["decoy"],
        "stray_signals": by_signal["stray"],
        "net_pnl": float(daily["net_pnl"].sum()) if daily.height else 0.0,
        "mc_prob_loss": mc.get("prob_loss"),
    }


def _classify(signals: pl.DataFrame, events: list[dict], days: list[dt.date], algo: str) -> dict:
    """``evaluation.evaluate`` day by day, summed over the block."""
    n = planted = found = informed_found = decoy = stray = on_flows = 0
    for day in days:
        sig = signals.filter(pl.col("date") == day) if signals.height else signals
        ev = evaluate(sig, [e for e in events if e["date"] == day.isoformat()], algo, 6.5)
        n += ev.signals
        planted += ev.planted
        found += ev.found
        informed_found += sum(1 for f in ev.per_flow if f["signals"] and f["informed"])
        decoy += ev.decoy_signals
        stray += ev.strays
        on_flows += ev.signals - ev.decoy_signals - ev.strays - ev.wrong_direction
    return {
        "n": n,
        "planted": planted,
        "found": found,
        "informed_found": informed_found,
        "decoy": decoy,
        "stray": stray,
        "on_flows": on_flows,
    }


def _label_flows(lake: Lake, settings: Settings, events: list[dict]) -> list[dict]:
    """Each planted flow labelled as if a signal had named its view at its last trade: what the
    labeller makes of an informed (or uninformed) flow, detector aside."""
    flows = [e for e in events if e["kind"] == "institutional"]
    if not flows:
        return []
    ids = sorted({i for e in flows for i in e["instrument_ids"]})
    under = dict(
        lake.scan("instruments")
        .filter(pl.col("instrument_id").is_in(ids))
        .select("instrument_id", "underlying_id")
        .unique("instrument_id")
        .collect()
        .iter_rows()
    )
    rows = []
    for day in sorted({e["date"] for e in flows}):
        todays = [e for e in flows if e["date"] == day]
        sig = pl.DataFrame(
            {
                "signal_id": [f"flow-{n}" for n in range(len(todays))],
                "algo": ["truth"] * len(todays),
                "view": [e["view"] for e in todays],
                "decision_ts": [e["end_ns"] for e in todays],
                "underlying_id": [under.get(e["instrument_ids"][0]) for e in todays],
            },
            schema={
                "signal_id": pl.String,
                "algo": pl.String,
                "view": pl.String,
                "decision_ts": pl.UInt64,
                "underlying_id": pl.UInt32,
            },
        )
        lab = outcomes_of(
            lake, dt.date.fromisoformat(day), sig, BarrierParams.from_settings(settings)
        )
        for e, label in zip(todays, lab["label"].to_list(), strict=True):
            rows.append(
                {"informed": bool(e.get("informed")), "shape": e.get("shape"), "label": label}
            )
    return rows
