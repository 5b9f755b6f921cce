"""Informed flows move the future (SYNTHETIC data): measured from the future's trades in the files.

Each one-day run plants on its only session; twelve seeds with six flows each give enough flows to
average out the random walk (about 50 index points of noise over a move's horizon). The paired
test removes the walk altogether: the same seed with informed_share 1 and 0 plants the same flows
on the same random walk, so the difference of the two files' future prices is the planted move.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import databento as db
import numpy as np
import pytest

from ifd_core.simulator.market import simulate_market
from ifd_core.simulator.params import SimParams

SEEDS = range(12)
PARAMS = SimParams(informed_share=0.5, flows_per_day=(6, 6), large_prints_per_day=(0, 0))
UNINFORMED_HORIZON_NS = 780 * 10**9  # mean delay + mean ramp of the defaults


def _future_trades(out: Path, day: dt.date) -> tuple[np.ndarray, np.ndarray]:
    """Times and prices of the most traded future's trades, in time order."""
    stem = f"glbx-mdp3-{day:%Y%m%d}"
    defs = db.DBNStore.from_file(out / f"{stem}.definition.dbn.zst").to_ndarray()
    mbo = db.DBNStore.from_file(out / f"{stem}.mbo.dbn.zst").to_ndarray()
    futures = defs["instrument_id"][defs["instrument_class"] == b"F"]
    trades = mbo[(mbo["action"] == b"T") & np.isin(mbo["instrument_id"], futures)]
    ids, counts = np.unique(trades["instrument_id"], return_counts=True)
    front = trades[trades["instrument_id"] == ids[np.argmax(counts)]]
    return front["ts_event"].astype(np.int64), front["price"].astype(np.float64) / 1e9


def _price_at(times: np.ndarray, prices: np.ndarray, t: int) -> float:
    return float(prices[max(np.searchsorted(times, t, side="right") - 1, 0)])


def _planted_change(moves: list[dict], a: int, b: int) -> float:
    """Index points every planted move adds between ``a`` and ``b``."""
    total = 0.0
    for m in moves:
        s, e = m["move_start_ns"], m["move_end_ns"]
        done_b, done_a = np.clip((b - s) / (e - s), 0, 1), np.clip((a - s) / (e - s), 0, 1)
        total += m["move_points"] * (done_b - done_a)
    return total


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    rows = []
    for seed in SEEDS:
        out = tmp_path_factory.mktemp(f"informed{seed}")
        summary = simulate_market(out, 1, seed, scale=0.1, params=PARAMS)
        events = json.loads(summary.truth_path.read_text())["events"]
        times, prices = _future_trades(out, summary.days[0])
        moves = [e for e in events if e.get("informed")]
        for e in events:
            if e["kind"] != "institutional":
                continue
            a = e["end_ns"]
            b = e["move_end_ns"] if e["informed"] else a + UNINFORMED_HORIZON_NS
            change = _price_at(times, prices, b) - _price_at(times, prices, a)
            rows.append(
                {
                    "informed": e["informed"],
                    "planted": e.get("move_points", 0.0),
                    "change": change,
                    "others": _planted_change([m for m in moves if m is not e], a, b),
                    "view_sign": 1.0 if e["view"] == "BULLISH" else -1.0,
                }
            )
    return rows


def _mean_and_se(x: np.ndarray) -> tuple[float, float]:
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x)))


def test_informed_flows_move_the_future_by_the_planted_amount(measured: list[dict]) -> None:
    informed = [r for r in measured if r["informed"]]
    assert len(informed) >= 15
    change = np.array([r["change"] - r["others"] for r in informed])
    planted = np.array([r["planted"] for r in informed])
    assert np.all(np.sign(planted) == [r["view_sign"] for r in informed])
    # signed in the view's direction, the move is there and about the size planted
    mean, _ = _mean_and_se(change * np.sign(planted))
    residual_mean, residual_se = _mean_and_se(change - planted)
    assert abs(residual_mean) < 3 * residual_se, (residual_mean, residual_se)
    assert abs(mean - np.abs(planted).mean()) < 3 * residual_se


def test_uninformed_flows_move_nothing(measured: list[dict]) -> None:
    uninformed = [r for r in measured if not r["informed"]]
    assert len(uninformed) >= 15
    signed = np.array([(r["change"] - r["others"]) * r["view_sign"] for r in uninformed])
    mean, se = _mean_and_se(signed)
    assert abs(mean) < 3 * se, (mean, se)
    assert all(r["planted"] == 0.0 for r in uninformed)


PAIRED_SEEDS = range(3)


def e_span(e: dict) -> tuple[int, int]:
    return e["end_ns"], e["move_end_ns"]


@pytest.fixture(scope="module")
def paired(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    rows = []
    for seed in PAIRED_SEEDS:
        runs = {}
        for share in (1.0, 0.0):
            out = tmp_path_factory.mktemp(f"paired{seed}_{share}")
            params = SimParams(informed_share=share, flows_per_day=(4, 4))
            summary = simulate_market(out, 1, 100 + seed, scale=0.3, params=params)
            events = json.loads(summary.truth_path.read_text())["events"]
            runs[share] = (events, *_future_trades(out, summary.days[0]))
        (moved, t1, p1), (still, t0, p0) = runs[1.0], runs[0.0]
        flows = [e for e in moved if e["kind"] == "institutional"]
        assert [e["start_ns"] for e in flows] == [
            e["start_ns"] for e in still if e["kind"] == "institutional"
        ]
        assert all(e["informed"] for e in flows) and not any(e["informed"] for e in still)
        # compare the two files at trades that happen at the same instant in both
        common = np.intersect1d(t1, t0)
        for e in flows:
            a, b = (common[np.searchsorted(common, t, side="right") - 1] for t in e_span(e))
            rows.append(
                {
                    "diff": (_price_at(t1, p1, b) - _price_at(t1, p1, a))
                    - (_price_at(t0, p0, b) - _price_at(t0, p0, a)),
                    "planted": _planted_change(flows, int(a), int(b)),
                    "own": e["move_points"],
                }
            )
    return rows


def test_same_flows_with_and_without_information_differ_by_the_move(paired: list[dict]) -> None:
    """Within a tick or two (bid/ask bounce, tick rounding, the future's carry over the index)."""
    assert len(paired) >= 10
    for r in paired:
        assert abs(r["diff"] - r["planted"]) <= 1.5 + 0.01 * abs(r["planted"]), r
        assert 25.0 <= abs(r["own"]) <= 50.0
