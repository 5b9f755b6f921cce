"""Shapes of planted flows and the large-print decoy, checked against the written files
(SYNTHETIC data): every leg's volume in the file is the planted volume (noise paused), except
around a large print, where noise keeps trading."""

from __future__ import annotations

import json
from pathlib import Path

import databento as db
import numpy as np
import pytest

from ifd_core.simulator.market import simulate_market
from ifd_core.simulator.params import SimParams

PARAMS = SimParams(flows_per_day=(6, 6), large_prints_per_day=(2, 2), v1_events_per_day=(0, 0))
SEEDS = (1, 2, 3)
GUARD_NS = 2 * 10**9


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[np.ndarray, list[dict]]]:
    out = []
    for seed in SEEDS:
        folder = tmp_path_factory.mktemp(f"shapes{seed}")
        summary = simulate_market(folder, 1, seed, scale=0.2, params=PARAMS)
        day = summary.days[0]
        mbo = db.DBNStore.from_file(folder / f"glbx-mdp3-{day:%Y%m%d}.mbo.dbn.zst").to_ndarray()
        trades = mbo[mbo["action"] == b"T"]
        out.append((trades, json.loads(Path(summary.truth_path).read_text())["events"]))
    return out


def _volume(trades: np.ndarray, iid: int, lo: int, hi: int, side: bytes) -> int:
    sel = (trades["instrument_id"] == iid) & (trades["ts_event"] >= lo) & (trades["ts_event"] <= hi)
    return int(trades["size"][sel & (trades["side"] == side)].sum())


def test_every_shape_and_series_is_planted(runs) -> None:
    flows = [e for _, events in runs for e in events if e["kind"] == "institutional"]
    assert {e["shape"] for e in flows} == {"burst", "multi_window", "sweep"}
    assert "weekly" in {e["series"] for e in flows}
    assert {"monthly", "quarterly"} & {e["series"] for e in flows}
    sizes = [leg["buy_contracts"] + leg["sell_contracts"] for e in flows for leg in e["legs"]]
    assert min(sizes) > 0
    # many independent prints per leg, never one block
    for e in flows:
        for leg in e["legs"]:
            assert leg["buy_trades"] + leg["sell_trades"] >= 5


def test_each_leg_in_the_file_is_exactly_the_planted_trades(runs) -> None:
    for trades, events in runs:
        for e in events:
            if e["kind"] == "decoy_large_print":
                continue
            for leg in e["legs"]:
                iid = leg["instrument_id"]
                lo, hi = e["start_ns"], e["end_ns"]
                assert _volume(trades, iid, lo, hi, b"B") == leg["buy_contracts"]
                assert _volume(trades, iid, lo, hi, b"A") == leg["sell_contracts"]


def test_sweeps_hit_adjacent_strikes_together(runs) -> None:
    sweeps = [e for _, events in runs for e in events if e["shape"] == "sweep"]
    assert sweeps
    for e in sweeps:
        strikes = sorted(leg["strike"] for leg in e["legs"])
        assert 2 <= len(strikes) <= 4 and np.all(np.diff(strikes) == 50)
        assert (e["end_ns"] - e["start_ns"]) <= 4.1 * 60e9
        side = e["direction"].lower()
        counts = {leg[f"{side}_trades"] for leg in e["legs"]}
        assert len(counts) == 1  # one print per leg and round


def test_large_prints_are_one_order_with_noise_around_it(runs) -> None:
    prints = [(t, e) for t, events in runs for e in events if e["kind"] == "decoy_large_print"]
    assert len(prints) == 2 * len(SEEDS)
    around = 0
    for trades, e in prints:
        iid, t = e["instrument_ids"][0], e["start_ns"]
        side = b"B" if e["direction"] == "BUY" else b"A"
        assert _volume(trades, iid, t, t, side) == e["contracts"] and 80 <= e["contracts"] <= 150
        assert e["trades"] == 1 and e["view"] == "NEUTRAL"
        near = (trades["instrument_id"] == iid) & (
            np.abs(trades["ts_event"].astype(np.int64) - t) < 30 * 60 * 10**9
        )
        away = np.abs(trades["ts_event"].astype(np.int64) - t) > GUARD_NS
        around += int((near & away).sum())
    assert around > 0  # noise did not pause on these options
