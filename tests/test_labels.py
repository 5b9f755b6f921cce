"""Triple-barrier labels (docs/algorithms.md §10): the spec's hand-computed cases at 5 points and
30 minutes (passed explicitly; the configured default is 25 points), on the future's trades."""

from __future__ import annotations

import polars as pl

from ifd_core.trading.labels import BarrierParams, extend_tape, label_signals, price_sources

MIN = 60 * 1_000_000_000
T0 = 1_774_882_800_000_000_000
FUT = 42


def tape(*points: tuple[float, float]) -> pl.DataFrame:
    """(minutes after T0, price) trades of the future."""
    return pl.DataFrame(
        {
            "instrument_id": [FUT] * len(points),
            "ts_event": [T0 + int(m * MIN) for m, _ in points],
            "price": [p for _, p in points],
        },
        schema={"instrument_id": pl.UInt32, "ts_event": pl.UInt64, "price": pl.Float64},
    )


def signal(view: str, minute: float = 0.0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "signal_id": ["s1"],
            "algo": ["v3"],
            "view": [view],
            "decision_ts": [T0 + int(minute * MIN)],
            "underlying_id": [FUT],
        },
        schema_overrides={"decision_ts": pl.UInt64, "underlying_id": pl.UInt32},
    )


def one(view, t, **kw) -> dict:
    return label_signals(signal(view), t, BarrierParams(**{"barrier_points": 5.0, **kw})).row(
        0, named=True
    )


def test_rise_of_six_points_within_ten_minutes_is_correct_at_the_crossing():
    t = tape((-1, 21000.0), (3, 21003.0), (9, 21006.0), (12, 20990.0), (40, 20990.0))
    out = one("BULLISH", t)
    assert out["label"] == "correct"
    assert out["resolved_ts"] == T0 + 9 * MIN
    assert out["ref_price"] == 21000.0


def test_fall_of_five_points_first_is_incorrect():
    t = tape((0, 21000.0), (4, 20995.0), (6, 21010.0), (40, 21010.0))
    out = one("BULLISH", t)
    assert out["label"] == "incorrect" and out["resolved_ts"] == T0 + 4 * MIN
    # the same path is correct for a bearish view
    assert one("BEARISH", t)["label"] == "correct"


def test_two_point_wiggles_for_thirty_minutes_are_neutral():
    pts = [(m, 21000.0 + (2.0 if m % 2 else -2.0)) for m in range(1, 31)] + [(31, 21000.0)]
    out = one("BULLISH", tape((0, 21000.0), *pts))
    assert out["label"] == "neutral"
    assert out["max_favorable"] == 2.0 and out["max_adverse"] == 2.0


def test_data_ending_before_the_horizon_is_unresolved_not_neutral():
    out = one("BULLISH", tape((0, 21000.0), (10, 21002.0)))
    assert out["label"] == "unresolved" and out["resolved_ts"] is None


def test_no_price_before_the_decision_is_unresolved():
    out = one("BULLISH", tape((5, 21000.0), (50, 21100.0)))
    assert out["label"] == "unresolved" and out["ref_price"] is None


def test_same_tick_stream_gives_identical_labels():
    t = tape((0, 21000.0), (4, 20995.0), (6, 21010.0), (40, 21010.0))
    a = label_signals(signal("BULLISH"), t)
    b = label_signals(signal("BULLISH"), t.sample(fraction=1.0, shuffle=True, seed=3))
    assert a.equals(b)


def test_barrier_and_horizon_are_parameters_and_stored():
    t = tape((0, 21000.0), (4, 21003.0), (40, 21003.0))
    out = one("BULLISH", t, barrier_points=2.5, horizon_s=600)
    assert out["label"] == "correct" and out["barrier_points"] == 2.5 and out["horizon_s"] == 600


def signals_at(*rows: tuple[str, str, float, int]) -> pl.DataFrame:
    """(signal_id, view, minute after T0, underlying) rows."""
    return pl.DataFrame(
        {
            "signal_id": [r[0] for r in rows],
            "algo": ["v3"] * len(rows),
            "view": [r[1] for r in rows],
            "decision_ts": [T0 + int(r[2] * MIN) for r in rows],
            "underlying_id": [r[3] for r in rows],
        },
        schema_overrides={"decision_ts": pl.UInt64, "underlying_id": pl.UInt32},
    )


def test_ib_trades_continue_the_tape_only_after_databento_stops():
    """Databento trades of FUT up to minute 10; IB's from minute 12 (its minute-5 print is
    ignored: Databento holds the tape there). Future 43 has IB prices only."""
    databento = tape((0, 100.0), (5, 100.0), (10, 100.0))
    ib = pl.concat(
        [
            tape((5, 999.0), (12, 106.0)),
            tape((1, 50.0), (2, 56.0)).with_columns(pl.lit(43, pl.UInt32).alias("instrument_id")),
        ]
    )
    full, first = extend_tape(databento, ib)
    assert first == {FUT: T0 + 12 * MIN, 43: T0 + 1 * MIN}
    assert full.height == 3 + 1 + 2
    sigs = signals_at(
        ("before", "BEARISH", 4, FUT),  # horizon ends at minute 9: Databento only
        ("across", "BULLISH", 8, FUT),  # ref 100 (Databento), +6 at minute 12 (IB)
        ("after", "BULLISH", 13, FUT),  # ref 106 from IB, nothing after: unresolved
        ("ib_only", "BULLISH", 1.5, 43),
    )
    out = label_signals(sigs, full, BarrierParams(5.0, 300))
    out = out.with_columns(price_sources(out, first))
    got = {
        r["signal_id"]: (r["label"], r["ref_price"], r["price_source"])
        for r in out.iter_rows(named=True)
    }
    assert got == {
        "before": ("neutral", 100.0, "databento"),
        "across": ("correct", 100.0, "databento+ib"),
        "after": ("unresolved", 106.0, "ib"),
        "ib_only": ("correct", 50.0, "ib"),
    }
    assert extend_tape(databento, ib.head(0)) == (databento, {})
