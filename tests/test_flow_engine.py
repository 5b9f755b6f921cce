"""The FlowEngine over a simulated day: every option contract counted once, the planted flow
stands out on its side, and the result does not depend on how the stream is chunked."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest

from ifd_core.analysis.flow_engine import FlowEngine
from ifd_core.marketdata.dbn_files import read_dbn
from ifd_core.marketdata.record_source import FileReplaySource
from ifd_core.simulator.market import simulate_market


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    summary = simulate_market(out, 1, 21, scale=0.3)  # one day: flows are planted on the last day
    return summary


def run(files, batch_records: int) -> tuple[pl.DataFrame, FlowEngine]:
    engine = FlowEngine()
    parts = [
        engine.process(b).windows
        for b in FileReplaySource(files, batch_records=batch_records).batches()
    ]
    parts.append(engine.finish().windows)
    return pl.concat(parts, how="diagonal_relaxed"), engine


def test_option_volume_is_every_t_record_once(day):
    windows, engine = run(day.files, 50_000)
    mbo = next(read_dbn(p) for p in day.files if p.name.endswith(".mbo.dbn.zst")).arrays["mbo"]
    defs = next(read_dbn(p) for p in day.files if ".definition." in p.name).arrays["definition"]
    options = defs["instrument_id"][np.isin(defs["instrument_class"], [b"C", b"P"])]
    t = mbo[(mbo["action"] == b"T") & np.isin(mbo["instrument_id"], options)]
    assert windows["volume"].sum() == int(t["size"].sum())
    assert engine.stats.option_trades == len(t)
    assert windows["right"].drop_nulls().is_in(["C", "P"]).all()
    assert windows["underlying_price"].null_count() == 0
    # underlying price is a plausible NQ level
    assert windows["underlying_price"].min() > 10_000


def test_planted_flow_dominates_its_windows(day):
    windows, _ = run(day.files, 50_000)
    truth = json.loads(day.truth_path.read_text())
    flows = [e for e in truth["events"] if e["kind"] == "institutional"]
    assert flows
    for e, leg in ((f, leg) for f in flows for leg in f["legs"]):  # a sweep has several legs
        iid = leg["instrument_id"]
        start = int(dt.datetime.fromisoformat(e["start"].replace("Z", "+00:00")).timestamp() * 1e9)
        end = int(dt.datetime.fromisoformat(e["end"].replace("Z", "+00:00")).timestamp() * 1e9)
        w = windows.filter(
            (pl.col("instrument_id") == iid)
            & (pl.col("window_end") > start)
            & (pl.col("window_start") <= end)
        )
        side_col = "buy_volume" if e["direction"] == "BUY" else "sell_volume"
        assert w[side_col].sum() >= leg[f"{e['direction'].lower()}_contracts"]
        expected = "BUY" if e["direction"] == "BUY" else "SELL"
        biggest = w.sort(side_col, descending=True).row(0, named=True)
        assert biggest["dominant_side"] == expected
        assert biggest["strike"] == leg["strike"] and biggest["right"] == e["option_type"]


def test_one_batch_and_small_chunks_give_identical_windows(day):
    whole, _ = run(day.files, 10_000_000)
    chunked, _ = run(day.files, 7_777)
    assert whole.equals(chunked)


def test_trades_carry_black76_deltas_and_delta_signed_volume(day):
    windows, _ = run(day.files, 50_000)
    # every signed contract got a delta (the underlying trades from the first minutes on)
    assert windows["delta_unknown_volume"].sum() == 0
    calls = windows.filter(pl.col("right") == "C")
    puts = windows.filter(pl.col("right") == "P")
    # |delta| <= 1, so |delta-signed volume| <= signed volume; and its sign follows right × side
    signed = (pl.col("buy_volume") - pl.col("sell_volume")).cast(pl.Float64)
    assert windows.select(
        (
            pl.col("delta_volume").abs() <= (pl.col("buy_volume") + pl.col("sell_volume")) + 1e-9
        ).all()
    ).item()
    assert calls.filter(signed != 0).select(((pl.col("delta_volume") * signed) >= 0).all()).item()
    assert puts.filter(signed != 0).select(((pl.col("delta_volume") * signed) <= 0).all()).item()
    # the planted flows: a BUY of calls or a SELL of puts is bullish delta
    truth = json.loads(day.truth_path.read_text())
    for e in (e for e in truth["events"] if e["kind"] == "institutional"):
        w = windows.filter(pl.col("instrument_id") == e["instrument_ids"][0])
        assert (w["delta_volume"].sum() > 0) == (e["view"] == "BULLISH")
