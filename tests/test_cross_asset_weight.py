"""massive.confidence_weight end to end on a SYNTHETIC simulated session: a hand-built SYNTHETIC
confirmation lets exactly one v3 episode through the min-confidence filter, the backtest trades
it only with the weight, the extended test reports the change with and without the weight, and
weight 0 changes nothing (the confirmations are not even read)."""

from __future__ import annotations

import json

import polars as pl
import pytest

from ifd_core.settings import get_settings
from ifd_core.simulator.market import simulate_market
from ifd_core.trading.extended import NOT_MEASURED
from jobs.extended import REALTIME_NOT_MEASURED, run_extended
from reports.trading import write_extended_report
from warehouse.ingest import ingest_files
from warehouse.lake import Lake
from warehouse.tables import TABLES, conform

pytestmark = pytest.mark.slow
TABLE = "cross_asset_confirmations"
WEIGHT = 0.5


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("xw")
    summary = simulate_market(root / "sim", 21, 23, scale=0.2)
    lake = Lake(root / "data")
    assert ingest_files(summary.files, lake).ok
    day = summary.days[-1]
    plain = run_extended(lake, _settings(lake, 0.0, 0.0), start=day, end=day)
    v3 = plain.backtest.signals.filter(pl.col("algo") == "v3")
    # The planted episode: the v3 episode whose best signal is the least confident.
    best = (
        v3.group_by("episode_id").agg(pl.col("confidence").max().alias("c")).sort("c", "episode_id")
    )
    episode, c = best["episode_id"][0], float(best["c"][0])
    # A floor above every signal of the episode that its best signal clears with the weight and
    # a confirmation of 1.0: (1 - 0.5) x c + 0.5 x 1.0 = 0.5 c + 0.5 > c + (1 - c) / 4 = floor.
    floor = c + (1.0 - c) * WEIGHT / 2
    assert c < floor <= (1 - WEIGHT) * c + WEIGHT * 1.0
    return {"lake": lake, "day": day, "episode": episode, "c": c, "floor": floor, "v3": v3}


def _settings(lake: Lake, weight: float, floor: float):
    return get_settings(
        warehouse={"data_dir": lake.root},
        backtest={"mc_paths": 200},
        extended={"sessions": 1},
        risk={"min_signal_confidence": floor},
        massive={"confidence_weight": weight},
    )


def _plant(lake: Lake, day, episode: str | None, confirmation: float | None = 1.0) -> None:
    """Store one hand-built SYNTHETIC confirmation row for ``episode`` (None: no rows)."""
    if episode is None:
        lake.replace_day(TABLE, day, TABLES[TABLE].empty(), "massive")
        return
    same = 1000.0 if confirmation is not None else 0.0
    rows = conform(
        TABLE,
        pl.DataFrame(
            {
                "date": [day],
                "episode_id": [episode],
                "algo": ["v3"],
                "view": ["BULLISH"],
                "start_ns": [0],
                "end_ns": [60 * 10**9],
                "trades": [2],
                "bullish_premium": [same],
                "bearish_premium": [0.0],
                "unsigned_premium": [0.0],
                "same_premium": [same],
                "opposite_premium": [0.0],
                "net_premium": [same],
                "confirmation": [confirmation],
                "underlyings": ["QQQ,NDX"],
                "origin": ["synthetic"],
                "source_sha": ["synthetic"],
            }
        ),
    )
    lake.replace_day(TABLE, day, rows, "massive")


def _entries(res, algo: str = "v3") -> pl.DataFrame:
    o = res.backtest.orders
    return o.filter((pl.col("algo") == algo) & (pl.col("purpose") == "entry"))


def _timeless(doc: dict) -> str:
    return json.dumps({k: v for k, v in doc.items() if k != "test_id"}, default=str, sort_keys=True)


def test_the_weight_lets_the_confirmed_episode_trade_and_the_report_says_so(world, tmp_path):
    lake, day, episode = world["lake"], world["day"], world["episode"]
    ids = set(world["v3"].filter(pl.col("episode_id") == episode)["signal_id"])
    _plant(lake, day, episode, 1.0)
    try:
        without = run_extended(lake, _settings(lake, 0.0, world["floor"]), start=day, end=day)
        res = run_extended(lake, _settings(lake, WEIGHT, world["floor"]), start=day, end=day)
    finally:
        _plant(lake, day, None)
    # Without the weight no signal of the episode clears the floor; with it, one entry.
    assert not set(_entries(without)["signal_id"]) & ids
    assert len(set(_entries(res)["signal_id"]) & ids) == 1
    # The comparison's "without" side is the weight-0 run itself (v3's daily row, ledger aside).
    ca = res.backtest.cross_asset
    keep = [c for c in ca.unweighted_daily.columns if c not in ("run_id", "config_version")]
    assert ca.unweighted_daily.select(keep).equals(
        without.backtest.daily.filter(pl.col("algo") == "v3").select(keep)
    )
    eff = res.to_dict()["cross_asset_weight"]
    assert eff["status"] == "measured" and eff["weight"] == WEIGHT
    assert (eff["episodes_stored"], eff["episodes_confirmed"], eff["days_with_confirmations"]) == (
        1,
        1,
        1,
    )
    assert (eff["episodes_gained"], eff["episodes_lost"]) == (1, 0)
    w, wo = eff["with_weight"], eff["without_weight"]
    v3_without = without.final.filter(pl.col("algo") == "v3").row(0, named=True)
    assert (wo["trades"], wo["net_pnl"]) == (v3_without["trades"], v3_without["net_pnl"])
    assert wo["status"] == without.verdict.status
    # One more episode traded; accuracy (labels) the same both ways.
    gained_trades = res.backtest.positions.filter(pl.col("signal_id").is_in(list(ids)))
    assert w["trades"] == wo["trades"] + 1 == wo["trades"] + gained_trades.height
    assert w["net_pnl"] == pytest.approx(wo["net_pnl"] + gained_trades["net_pnl"].sum())
    assert w["accuracy"] == wo["accuracy"]
    # The run as traded is the weighted one; the report shows both.
    assert res.final.filter(pl.col("algo") == "v3")["trades"][0] == w["trades"]
    page = write_extended_report(tmp_path, res).read_text()
    assert "Cross-asset confidence weight 0.5" in page and "without" in page


def test_no_confirmed_episode_is_not_measured(world):
    lake, day = world["lake"], world["day"]
    for planted in (None, "null"):  # no rows; a row whose confirmation is null
        if planted == "null":
            _plant(lake, day, world["episode"], None)
        try:
            res = run_extended(lake, _settings(lake, WEIGHT, world["floor"]), start=day, end=day)
        finally:
            _plant(lake, day, None)
        eff = res.to_dict()["cross_asset_weight"]
        assert eff["status"] == NOT_MEASURED and eff["episodes_confirmed"] == 0
        assert eff["episodes_stored"] == (1 if planted else 0)


def test_weight_zero_reads_no_confirmation_and_reports_nothing_new(world):
    lake, day = world["lake"], world["day"]
    s = _settings(lake, 0.0, world["floor"])
    _plant(lake, day, world["episode"], 1.0)
    try:
        planted = run_extended(lake, s, start=day, end=day)
    finally:
        _plant(lake, day, None)
    bare = run_extended(lake, s, start=day, end=day)
    assert "cross_asset_weight" not in planted.to_dict() and planted.backtest.cross_asset is None
    assert _timeless(planted.to_dict()) == _timeless(bare.to_dict())
    for name in ("orders", "fills", "positions"):
        a, b = getattr(planted.backtest, name), getattr(bare.backtest, name)
        assert a.drop("run_id").equals(b.drop("run_id")), name


def test_real_time_mode_says_it_does_not_measure_the_weight(world, tmp_path):
    lake = world["lake"]
    s = _settings(lake, WEIGHT, 0.0)
    res = run_extended(lake, s, realtime_test_id="rt-weight")
    eff = res.to_dict()["cross_asset_weight"]
    assert eff == {
        "weight": WEIGHT,
        "algo": "v3",
        "unit": "episodes",
        "status": REALTIME_NOT_MEASURED,
    }
    assert "not measured in real-time mode" in write_extended_report(tmp_path, res).read_text()
