"""The extended (two-week) test runner.

Historical mode replays the last ``extended.sessions`` stored sessions (or a date range) through
the backtester into one daily row per (date, algo); real-time mode adds the newest unseen stored
session each run to ``<data>/extended/<test_id>/daily.parquet``. Weekly and final reports pool the
counts and ``ifd_core.trading.extended.verdict`` judges them. What each row measures and from
where: docs/operations.md §Backtest, A/B and extended test; the verdict: docs/algorithms.md §15.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ifd_core.settings import Settings
from ifd_core.trading.extended import (
    DAILY_SCHEMA,
    Criteria,
    Verdict,
    final,
    verdict,
    weekly,
    weight_effect,
)
from jobs.backtest import BacktestResult, run_backtest, trading_days
from jobs.fanout import Mapper, inline_map
from warehouse.lake import Lake
from warehouse.slis import day_slis, latency_p95_by_day

REALTIME_NOT_MEASURED = (
    "not measured in real-time mode: its stored rows are those traded with the weight; the "
    "historical extended test over the same days measures it"
)


@dataclass
class ExtendedResult:
    test_id: str
    mode: str
    days: list[dt.date]
    daily: pl.DataFrame
    weekly: pl.DataFrame
    final: pl.DataFrame
    verdict: Verdict
    synthetic: bool
    complete: bool
    backtest: BacktestResult | None
    # massive.confidence_weight > 0: its measured effect (ifd_core.trading.extended.weight_effect)
    cross_asset_weight: dict | None = None

    def to_dict(self) -> dict:
        extra = (
            {}
            if self.cross_asset_weight is None
            else {"cross_asset_weight": self.cross_asset_weight}
        )
        return {
            "test_id": self.test_id,
            "mode": self.mode,
            "data": "SYNTHETIC" if self.synthetic else "real",
            "days": [d.isoformat() for d in self.days],
            "complete": self.complete,
            "verdict": str(self.verdict),
            "status": self.verdict.status,
            "reasons": list(self.verdict.reasons),
            "final": self.final.to_dicts(),
            "weekly": self.weekly.to_dicts(),
            "daily": self.daily.to_dicts(),
            **extra,
        }


def criteria_from(settings: Settings) -> Criteria:
    """The pass criteria in ``settings.extended`` (the window length is not a criterion)."""
    return Criteria.from_settings(settings.extended)


def run_extended(
    lake: Lake,
    settings: Settings,
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
    realtime_test_id: str | None = None,
    progress: Callable[[str], None] | None = None,
    mapper: Mapper = inline_map,
) -> ExtendedResult:
    """The extended test; ``mapper`` runs the days' detection pass side by side
    (jobs/fanout.py), the daily rows do not depend on it."""
    n = settings.extended.sessions
    stored = trading_days(lake, dt.date(1900, 1, 1), dt.date(2999, 12, 31))
    if realtime_test_id:
        return _realtime(lake, settings, realtime_test_id, stored, progress, mapper)
    if start or end:
        days = [d for d in stored if (not start or d >= start) and (not end or d <= end)]
    else:
        days = stored[-n:]
    if not days:
        raise ValueError("no stored sessions to run the extended test on")
    bt = run_backtest(
        lake,
        settings,
        days[0],
        days[-1],
        ("v3", "v1"),
        mode="extended",
        progress=progress,
        mapper=mapper,
    )
    daily = daily_rows(lake, bt)
    test_id = f"ext-{bt.run_id.removeprefix('bt-')}"
    res = _result(test_id, "historical", daily, settings, bt, complete=len(bt.days) >= n)
    res.cross_asset_weight = _weight_effect(lake, settings, bt, daily)
    return res


def _weight_effect(
    lake: Lake, settings: Settings, bt: BacktestResult, daily: pl.DataFrame
) -> dict | None:
    """The weight's effect over the run's days: the daily rows as traded against the same rows
    with v3's traded as on its own confidence; None when the weight is off (0)."""
    ca = bt.cross_asset
    if ca is None:
        return None
    plain = _with_slis(lake, bt.days, ca.unweighted_daily)
    without = pl.concat([daily.filter(pl.col("algo") != ca.algo), plain]).sort("date", "algo")
    return weight_effect(
        daily.sort("date", "algo"),
        without,
        ca.coverage,
        ca.weight,
        criteria_from(settings),
        ca.algo,
    )


def _realtime(lake, settings, test_id, stored, progress, mapper) -> ExtendedResult:
    path = Path(settings.data_dir) / "extended" / test_id / "daily.parquet"
    have = pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=DAILY_SCHEMA)
    if "episodes" not in have.columns:
        raise ValueError(
            f"the rows of real-time extended test {test_id} ({path}) count signals, not signal "
            "episodes (they predate episodes) and cannot be pooled with new rows; start a new "
            "test id"
        )
    seen = set(have["date"].to_list())
    n = settings.extended.sessions
    new = [d for d in stored if d not in seen and (not seen or d > max(seen))]
    bt = None
    if new and have["date"].n_unique() < n:
        day = new[0]
        bt = run_backtest(
            lake,
            settings,
            day,
            day,
            ("v3", "v1"),
            mode="extended",
            progress=progress,
            mapper=mapper,
        )
        have = pl.concat([have, daily_rows(lake, bt)], how="diagonal_relaxed")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        have.write_parquet(tmp)
        os.replace(tmp, path)
    if have.height == 0:
        raise ValueError("no stored session yet for the real-time extended test")
    complete = have["date"].n_unique() >= n
    res = _result(test_id, "realtime", have, settings, bt, complete=complete)
    if settings.massive.confidence_weight > 0:
        # The stored rows are those traded; the days before this run were not traded both ways.
        res.cross_asset_weight = {
            "weight": settings.massive.confidence_weight,
            "algo": "v3",
            "unit": "episodes",
            "status": REALTIME_NOT_MEASURED,
        }
    return res


def _result(test_id, mode, daily, settings, bt, complete: bool) -> ExtendedResult:
    v = verdict(daily, criteria_from(settings))
    if not complete and v.status == "PASS":  # a pass needs the whole window
        v = Verdict(
            "INCONCLUSIVE",
            [f"{daily['date'].n_unique()} of {settings.extended.sessions} sessions so far"],
        )
    synthetic = bool(bt.synthetic) if bt is not None else False
    return ExtendedResult(
        test_id=test_id,
        mode=mode,
        days=sorted(set(daily["date"].to_list())),
        daily=daily,
        weekly=weekly(daily),
        final=final(daily),
        verdict=v,
        synthetic=synthetic,
        complete=complete,
        backtest=bt,
    )


def daily_rows(lake: Lake, bt: BacktestResult) -> pl.DataFrame:
    """The backtest's per-day results plus what the lake measured about each day."""
    return _with_slis(lake, bt.days, bt.daily)


def _with_slis(lake: Lake, days: list[dt.date], rows: pl.DataFrame) -> pl.DataFrame:
    extra = pl.DataFrame(
        [day_slis(lake, d) for d in days],
        schema={
            "date": pl.Date,
            "data_cost": pl.Float64,
            "tick_coverage": pl.Float64,
            "uptime_rth": pl.Float64,
            "critical_incidents_open": pl.Int64,
        },
        orient="row",
    )
    lat = latency_p95_by_day(lake, days)
    daily = rows.join(extra, on="date", how="left").join(lat, on=["date", "algo"], how="left")
    return daily.select(
        [
            pl.col(c).cast(t) if c in daily.columns else pl.lit(None, t).alias(c)
            for c, t in DAILY_SCHEMA.items()
        ]
    )
