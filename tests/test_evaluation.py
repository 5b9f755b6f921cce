"""Scoring signals against a simulator ground truth: found, wrong direction, decoy, stray."""

from __future__ import annotations

import datetime as dt

import polars as pl

from ifd_core.analysis.detectors import SIGNAL_SCHEMA
from ifd_core.analysis.evaluation import evaluate

MIN = 60 * 1_000_000_000
T0 = 1_774_882_800_000_000_000

FLOW = {
    "kind": "institutional",
    "date": "2026-03-30",
    "raw_symbols": ["QN1J6 C21000"],
    "instrument_ids": [1],
    "expiration": "2026-04-02",
    "strike": 21000.0,
    "option_type": "C",
    "direction": "BUY",
    "start_ns": T0 + 2 * MIN,
    "end_ns": T0 + 12 * MIN,
    "contracts": 900,
    "legs": [{"instrument_id": 1}],
}
DECOY = {
    "kind": "decoy_straddle",
    "date": "2026-03-30",
    "instrument_ids": [5, 6],
    "start_ns": T0 + 60 * MIN,
    "end_ns": T0 + 66 * MIN,
    "legs": [{"instrument_id": 5}, {"instrument_id": 6}],
}


def sig(iid, strike, right, direction, minute, exp="2026-04-02") -> dict:
    row = dict.fromkeys(SIGNAL_SCHEMA)
    row.update(
        instrument_id=iid,
        strike=strike,
        option_type=right,
        direction=direction,
        expiration=dt.date.fromisoformat(exp),
        window_start=T0 + minute * MIN,
        window_end=T0 + (minute + 5) * MIN,
        confidence=0.8,
    )
    return row


def run(*rows):
    df = pl.DataFrame(list(rows), schema=SIGNAL_SCHEMA)
    return evaluate(df, [FLOW, DECOY], "v3", session_hours=6.5)


def test_every_signal_has_one_class():
    ev = run(
        sig(1, 21000.0, "C", "BUY", 0),  # found (window 0-5 overlaps 2-12)
        sig(1, 21000.0, "C", "BUY", 5),  # found again: same flow
        sig(1, 21000.0, "C", "SELL", 5),  # wrong direction
        sig(5, 21450.0, "C", "BUY", 65),  # decoy leg, inside the widened span
        sig(9, 20000.0, "P", "SELL", 100),  # stray
        sig(1, 21000.0, "C", "BUY", 30),  # right option, wrong time: stray
    )
    assert (ev.found, ev.planted, ev.wrong_direction, ev.decoy_signals, ev.strays) == (
        1,
        1,
        1,
        1,
        2,
    )
    assert ev.per_flow[0]["signals"] == 2
    assert ev.strays_per_session_hour == 2 / 6.5
    assert ev.to_dict()["data"] == "SYNTHETIC"


def test_wrong_expiration_or_strike_does_not_find_the_flow():
    ev = run(sig(9, 21000.0, "C", "BUY", 0, exp="2026-04-03"), sig(2, 21025.0, "C", "BUY", 0))
    assert ev.found == 0 and ev.missed and ev.strays == 2


def test_a_signal_on_any_strike_of_a_sweep_finds_it():
    sweep = {**FLOW, "instrument_ids": [1, 2, 3], "legs": [{"instrument_id": i} for i in (1, 2, 3)]}
    df = pl.DataFrame([sig(3, 21050.0, "C", "BUY", 5)], schema=SIGNAL_SCHEMA)
    ev = evaluate(df, [sweep, DECOY], "v3", session_hours=6.5)
    assert ev.found == 1 and ev.strays == 0
    other_right = pl.DataFrame([sig(3, 21050.0, "P", "BUY", 5)], schema=SIGNAL_SCHEMA)
    assert evaluate(other_right, [sweep, DECOY], "v3", session_hours=6.5).found == 0
