"""Barchart's chain as v1's fallback open interest (barchart.oi_fallback; issue 21 §1).

Unit tests on hand-built SYNTHETIC frames (placing a chain on instrument ids, labelling the
source, point in time, the setting and config_version), then the whole path on a SYNTHETIC
simulated market (3 sessions from Friday 2026-03-06 with two low-OI blocks planted on the last
one, as tests/test_sim_v1_events.py): one lake with every file, one without the last date's
statistics file. The SYNTHETIC Barchart chain written to the lake is Databento's own open
interest of that date (jobs/barchart_check.databento_chain), with one option changed, so which
source a signal used shows in its numbers as well as in its label.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from ifd_core.analysis.oi_fallback import place_chain_oi, with_oi_source
from ifd_core.marketdata.record_source import FileReplaySource
from ifd_core.settings import get_settings
from ifd_core.simulator.market import simulate_market
from ifd_core.simulator.params import SimParams
from jobs.barchart_check import chain_frame, databento_chain
from jobs.detect import detect_day, engine_pass, raw_files_for
from jobs.oi_fallback import choose_fallback, fallback_for_day, known_from_ns
from warehouse.ingest import ingest_files
from warehouse.lake import Lake

OFF = get_settings()
ON = get_settings(barchart={"oi_fallback": True})
NS = 10**9
EXP = dt.datetime(2026, 3, 20, 20, 0, tzinfo=dt.UTC)  # 16:00 New York, 2026-03-20
EXP_NS = int(EXP.timestamp()) * NS


# --------------------------------------------------------------------- unit (hand-built)
def _defs(rows: list[tuple[int, float, str]], exp_ns: int = EXP_NS) -> pl.DataFrame:
    """SYNTHETIC option definitions: (instrument_id, strike, right)."""
    return pl.DataFrame(
        {
            "instrument_id": [r[0] for r in rows],
            "expiration": [exp_ns] * len(rows),
            "strike": [r[1] for r in rows],
            "instrument_class": [r[2] for r in rows],
        },
        schema={
            "instrument_id": pl.UInt32,
            "expiration": pl.UInt64,
            "strike": pl.Float64,
            "instrument_class": pl.String,
        },
    )


def _chain(rows: list[tuple[float, str, int | None]], day: dt.date, root: str = "NQ"):
    """SYNTHETIC barchart_chain rows of ``day``: (strike, right, open_interest)."""
    return pl.DataFrame(
        {
            "date": [day] * len(rows),
            "root": [root] * len(rows),
            "expiration": [EXP.date()] * len(rows),
            "strike": [r[0] for r in rows],
            "right": [r[1] for r in rows],
            "open_interest": [r[2] for r in rows],
        },
        schema={
            "date": pl.Date,
            "root": pl.String,
            "expiration": pl.Date,
            "strike": pl.Float64,
            "right": pl.String,
            "open_interest": pl.Int64,
        },
    )


DAY = dt.date(2026, 3, 10)


def test_a_chain_is_placed_by_expiration_strike_and_right_and_ambiguity_is_left_out():
    defs = _defs(
        [(1, 21000.0, "C"), (2, 21000.0, "P"), (3, 21250.0, "C"), (4, 21250.0, "C")]
        + [(5, 21750.0, "C")]
    )
    # 21000 C/P place (float noise in a strike does not split a key); 21250 C names two
    # instruments (left out); 21500 C names none; 21750 C has no open interest at Barchart.
    chain = _chain(
        [(21000.0, "C", 40), (21000.00000001, "P", 7), (21250.0, "C", 9), (21500.0, "C", 5)]
        + [(21750.0, "C", None)],
        DAY,
    )
    placed = place_chain_oi(chain, defs, 123)
    assert placed.to_dicts() == [
        {"instrument_id": 1, "ts_recv": 123, "quantity": 40},
        {"instrument_id": 2, "ts_recv": 123, "quantity": 7},
    ]
    # Two chain rows for one key: which is meant is unknown, so neither is used.
    twice = _chain([(21000.0, "C", 40), (21000.0, "C", 41), (21000.0, "P", None)], DAY)
    assert place_chain_oi(twice, defs, 123).height == 0
    # The expiration is compared as a New York date: one day later places nothing.
    assert place_chain_oi(chain, _defs([(1, 21000.0, "C")], EXP_NS + 86_400 * NS), 1).height == 0


def _flow(oi: list[int | None], decision: list[int]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "instrument_id": list(range(1, len(oi) + 1)),
            "decision_ts": decision,
            "open_interest": oi,
        },
        schema={"instrument_id": pl.UInt32, "decision_ts": pl.UInt64, "open_interest": pl.Int64},
    )


def test_the_source_is_labelled_and_the_fallback_fills_only_what_databento_left_unknown():
    fallback = pl.DataFrame(
        {"instrument_id": [1, 2, 3], "ts_recv": [100, 100, 100], "quantity": [11, 22, 33]},
        schema={"instrument_id": pl.UInt32, "ts_recv": pl.UInt64, "quantity": pl.Int64},
    )
    flow = _flow([500, None, None, None], [150, 150, 99, 150])
    out = with_oi_source(flow, fallback).sort("instrument_id")
    # 1: Databento's value wins; 2: filled from the fallback; 3: decided before the fallback was
    # known (point in time), nothing; 4: neither source knows it.
    assert out["open_interest"].to_list() == [500, 22, None, None]
    assert out["oi_source"].to_list() == ["databento", "barchart", None, None]
    bare = with_oi_source(flow, None).sort("instrument_id")
    assert bare["open_interest"].to_list() == [500, None, None, None]
    assert bare["oi_source"].to_list() == ["databento", None, None, None]


def test_the_fallback_is_chosen_only_when_on_and_databento_has_none_and_only_for_its_date():
    defs = _defs([(1, 21000.0, "C")])
    chain = pl.concat(
        [
            _chain([(21000.0, "C", 40)], DAY),
            _chain([(21000.0, "C", 99)], DAY - dt.timedelta(days=1)),
            _chain([(21000.0, "C", 77)], DAY, root="QN"),
        ]
    )
    assert choose_fallback(OFF, DAY, False, chain, defs) is None
    assert choose_fallback(ON, DAY, True, chain, defs) is None
    got = choose_fallback(ON, DAY, False, chain, defs)
    assert got.to_dicts() == [{"instrument_id": 1, "ts_recv": known_from_ns(DAY), "quantity": 40}]
    # Only another date's (or another root's) chain: nothing, never that chain.
    other = chain.filter(pl.col("date") != DAY)
    assert choose_fallback(ON, DAY, False, other, defs).height == 0
    # Visible from 09:30 New York of the date (EDT on 2026-03-10: 13:30 UTC).
    ten_thirty_utc = dt.datetime(2026, 3, 10, 13, 30, tzinfo=dt.UTC)
    assert known_from_ns(DAY) == int(ten_thirty_utc.timestamp()) * NS


def test_oi_fallback_is_part_of_config_version_and_the_rest_of_barchart_is_not():
    assert OFF.barchart.oi_fallback is False
    assert ON.config_version() != OFF.config_version()
    # Operational Barchart keys stay out, fallback on or off.
    for base in ({}, {"oi_fallback": True}):
        a = get_settings(barchart=base)
        b = get_settings(barchart={**base, "root": "QN", "requests_per_day": 7, "cache": False})
        assert a.config_version() == b.config_version()


# --------------------------------------------------------------------- SYNTHETIC market
START = dt.date(2026, 3, 6)


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """Two lakes of one SYNTHETIC market: ``full`` and ``nostats`` (the last date's statistics
    file never ingested), and the SYNTHETIC Barchart chain of the last date."""
    root = tmp_path_factory.mktemp("oifallback")
    summary = simulate_market(
        root / "sim", 3, 4, start=START, scale=0.1, params=SimParams(v1_events_per_day=(2, 2))
    )
    day = summary.days[-1]
    full = Lake(root / "full")
    assert ingest_files(summary.files, full).ok
    stats_name = f"glbx-mdp3-{day:%Y%m%d}.statistics.dbn.zst"
    kept = [p for p in summary.files if Path(p).name != stats_name]
    assert len(kept) == len(summary.files) - 1
    nostats = Lake(root / "nostats")
    assert ingest_files(kept, nostats).ok
    assert nostats.scan("open_interest").filter(pl.col("date") == day).collect().height == 0
    databento = databento_chain(full, day)
    assert databento.height > 0
    return {"root": root, "day": day, "full": full, "nostats": nostats, "databento": databento}


def _v1(lake: Lake, day: dt.date, settings, algos=("v1",)) -> pl.DataFrame:
    """One engine pass over ``day`` as detection runs it (the fallback decided from the lake)."""
    fallback = fallback_for_day(lake, day, settings)
    batches = FileReplaySource(raw_files_for(lake, day)).batches()
    _, signals, _, _ = engine_pass(batches, settings, day, None, algos, fallback_oi=fallback)
    return signals


def _features(signals: pl.DataFrame) -> list[dict]:
    return [json.loads(f) for f in signals["features"]]


def _lake_copy(market, name: str) -> Lake:
    dst = market["root"] / name
    shutil.copytree(market["nostats"].root, dst)
    return Lake(dst)


def _write_chain(lake: Lake, chain_day: dt.date, databento: pl.DataFrame, changed: dict) -> None:
    """SYNTHETIC Barchart chain dated ``chain_day``: Databento's OI, ``changed`` by instrument."""
    oi = pl.col("open_interest")
    for iid, value in changed.items():
        oi = pl.when(pl.col("instrument_id") == iid).then(pl.lit(value)).otherwise(oi)
    rows = databento.select(
        pl.lit(chain_day).alias("date"),
        pl.lit("NQ").alias("root"),
        pl.concat_str(pl.lit("SYN"), pl.col("instrument_id").cast(pl.String)).alias("symbol"),
        "expiration",
        "strike",
        "right",
        oi.cast(pl.Int64).alias("open_interest"),
        pl.lit(None, pl.Int64).alias("volume"),
        "settlement",
        pl.lit("barchart").alias("origin"),
    )
    lake.replace_day("barchart_chain", chain_day, chain_frame(rows), key="NQ")


@pytest.mark.slow
def test_with_statistics_the_source_is_databento_and_the_fallback_changes_nothing(market):
    day, full = market["day"], market["full"]
    assert fallback_for_day(full, day, ON) is None  # Databento's OI is there: never Barchart's
    off = _v1(full, day, OFF)
    on = _v1(full, day, ON)
    assert off.height > 0
    assert off.equals(on)
    assert {f["oi_source"] for f in _features(off)} == {"databento"}
    # The open interest in each signal is the one Databento published that morning.
    d = market["databento"]
    by_id = dict(zip(d["instrument_id"], d["open_interest"], strict=True))
    for iid, f in zip(off["instrument_id"], _features(off), strict=True):
        assert f["open_interest"] == by_id[iid]


@pytest.mark.slow
def test_without_statistics_and_fallback_off_v1_is_silent_as_before(market):
    day, lake = market["day"], _lake_copy(market, "off")
    _write_chain(lake, day, market["databento"], {})  # a chain is there, but the setting is off
    assert fallback_for_day(lake, day, OFF) is None
    both_off = _v1(lake, day, OFF, ("v3", "v1"))
    assert both_off.filter(pl.col("algo") == "v1").height == 0  # unknown OI: no v1 decision
    # v3 never reads open interest: the setting leaves its signals alone.
    both_on = _v1(lake, day, ON, ("v3", "v1"))
    assert both_off.filter(pl.col("algo") == "v3").equals(both_on.filter(pl.col("algo") == "v3"))


@pytest.mark.slow
def test_a_barchart_chain_of_another_date_is_never_used(market):
    day, lake = market["day"], _lake_copy(market, "other")
    before = dt.date(2026, 3, 9)
    _write_chain(lake, before, market["databento"], {})
    fallback = fallback_for_day(lake, day, ON)
    assert fallback is not None and fallback.height == 0
    assert _v1(lake, day, ON).height == 0


@pytest.mark.slow
def test_with_fallback_on_v1_uses_the_barchart_chain_of_the_date_and_says_so(market):
    from ifd_cli.detect import signal_json
    from reports.detection import day_signals, write_detection_report

    day, lake, databento = market["day"], _lake_copy(market, "on"), market["databento"]
    reference = _v1(market["full"], day, OFF)  # the Databento run: the planted blocks fire
    target = int(reference["instrument_id"][0])
    published = int(databento.filter(pl.col("instrument_id") == target)["open_interest"][0])
    assert published > 20
    barchart_oi = published - 20  # SYNTHETIC: Barchart says otherwise for this one option
    _write_chain(lake, day, databento, {target: barchart_oi})
    # A chain of the day before with other numbers is in the lake too, and must not be read.
    _write_chain(lake, dt.date(2026, 3, 9), databento, {target: 10 * published})

    run = detect_day(lake, day, ON, ("v1",))
    stored = lake.scan("signals").filter(pl.col("date") == day).collect()
    assert stored.height == run.signals.height > 0
    assert {f["oi_source"] for f in _features(stored)} == {"barchart"}
    assert set(stored["config_version"]) == {ON.config_version()}
    assert (stored["decision_ts"] >= known_from_ns(day)).all()

    # Hand check of one signal: its open interest is Barchart's number, and the ratio follows.
    sig = stored.filter(pl.col("instrument_id") == target)
    assert sig.height == 1
    f = json.loads(sig["features"][0])
    assert f["open_interest"] == barchart_oi != published
    volume = int(sig["volume"][0])
    ratio = volume / barchart_oi
    assert f["vol_oi_ratio"] == pytest.approx(ratio, rel=1e-6)
    p = ON.analysis.v1
    assert ratio >= p.min_vol_oi_ratio and volume >= p.min_volume
    tiers = [("EXTREME", p.tier_extreme), ("VERY_HIGH", p.tier_very_high), ("HIGH", p.tier_high)]
    assert sig["tier"][0] == next((t for t, x in tiers if ratio >= x), "MODERATE")

    # The JSON output and the detection report say it too.
    assert {signal_json(r)["oi_source"] for r in stored.to_dicts()} == {"barchart"}
    shown = day_signals(lake, day, ("v1",))
    assert shown["oi_source"].to_list() == ["barchart"] * stored.height
    page = write_detection_report(lake, lake.root, day, ("v1",)).read_text()
    assert "OI source" in page and "Open interest fallback" in page
