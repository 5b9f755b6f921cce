"""Low-OI blocks pass IFD v1's gates, computed from the written files (SYNTHETIC data).

The start (Friday 2026-03-06) makes the planted third session the first publication of open
interest for a weekly listed in the second one, which is where low-OI strikes come from.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import databento as db
import numpy as np
import polars as pl
import pytest

from ifd_core.analysis.ifd_v1 import detect_v1
from ifd_core.settings import V1Settings
from ifd_core.simulator.market import simulate_market
from ifd_core.simulator.params import SimParams

START = dt.date(2026, 3, 6)
PARAMS = SimParams(v1_events_per_day=(2, 2))
OPEN_INTEREST = 9  # DBN stat_type


def _load(out: Path, day: str, schema: str) -> np.ndarray:
    name = f"glbx-mdp3-{day.replace('-', '')}.{schema}.dbn.zst"
    return db.DBNStore.from_file(out / name).to_ndarray()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("v1")
    summary = simulate_market(out, 3, 4, start=START, scale=0.1, params=PARAMS)
    return out, json.loads(summary.truth_path.read_text())["events"]


def _v1_input(out: Path, e: dict) -> pl.DataFrame:
    """The row v1 would see at the block's last print: session volume, premium, OI, underlying."""
    defs = _load(out, e["date"], "definition")
    stats = _load(out, e["date"], "statistics")
    mbo = _load(out, e["date"], "mbo")
    iid = e["instrument_ids"][0]
    oi = stats[(stats["stat_type"] == OPEN_INTEREST) & (stats["instrument_id"] == iid)]
    assert len(oi) == 1 and oi["ts_recv"][0] < e["start_ns"]
    row = defs[defs["instrument_id"] == iid][0]
    fut_id = defs["instrument_id"][defs["raw_symbol"] == row["underlying"]][0]
    trades = mbo[(mbo["action"] == b"T") & (mbo["ts_event"] <= e["end_ns"])]
    mine = trades[trades["instrument_id"] == iid]
    fut = trades[trades["instrument_id"] == fut_id]
    size, price = mine["size"].astype(np.int64), mine["price"].astype(np.float64) / 1e9
    return pl.DataFrame(
        {
            "strike": [row["strike_price"] / 1e9],
            "right": [row["instrument_class"].decode()],
            "buy_volume": [int(size[mine["side"] == b"B"].sum())],
            "sell_volume": [int(size[mine["side"] == b"A"].sum())],
            "unsigned_volume": [int(size[mine["side"] == b"N"].sum())],
            "premium": [float((size * price).sum() * 20.0)],
            "open_interest": [int(oi["quantity"][0])],
            "underlying_price": [float(fut["price"][-1]) / 1e9],
        }
    )


def test_low_oi_blocks_are_planted_on_low_open_interest(run) -> None:
    _, events = run
    blocks = [e for e in events if e.get("shape") == "low_oi_block"]
    assert len(blocks) == 2
    for e in blocks:
        assert e["kind"] == "institutional" and "informed" in e
        assert e["contracts"] >= 600 and e["contracts"] >= 10 * e["open_interest"]
        sizes = [leg[f"{e['direction'].lower()}_contracts"] for leg in e["legs"]]
        assert sum(sizes) == e["contracts"]


def test_v1_fires_on_every_low_oi_block_from_the_files(run) -> None:
    out, events = run
    p = V1Settings()
    for e in (e for e in events if e.get("shape") == "low_oi_block"):
        flow = _v1_input(out, e)
        assert flow["open_interest"][0] == e["open_interest"]
        hits = detect_v1(flow, p)
        assert hits.height == 1, flow.to_dicts()
        hit = hits.row(0, named=True)
        assert hit["volume"] >= p.min_volume and hit["premium"] >= p.min_dollar_size
        assert hit["vol_oi_ratio"] >= p.min_vol_oi_ratio
        assert hit["distance_percent"] <= p.max_distance_percent and hit["actionable"]
        assert hit["view"] == e["view"] and hit["direction"] == e["direction"]


def test_v1_events_can_carry_no_edge_while_the_flows_do(tmp_path):
    """`v1_informed_share` sets the low-OI blocks apart: the A/B calibration needs one
    algorithm's events informed and the other's not."""
    params = SimParams(informed_share=1.0, v1_informed_share=0.0, v1_events_per_day=(2, 2))
    summary = simulate_market(tmp_path, 3, 4, start=START, scale=0.1, params=params)
    events = [
        e
        for e in json.loads(summary.truth_path.read_text())["events"]
        if e["kind"] == "institutional"
    ]
    blocks = [e for e in events if e["shape"] == "low_oi_block"]
    flows = [e for e in events if e["shape"] != "low_oi_block"]
    assert blocks and flows
    assert not any(e["informed"] for e in blocks) and all(e["informed"] for e in flows)
