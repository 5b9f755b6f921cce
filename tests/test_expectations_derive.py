"""Row-level facts of expectations/derive.py: definitions as of each row's date, duplicates."""

from __future__ import annotations

import datetime as dt

import polars as pl

from expectations.derive import OPT_SMALL_TICK, _asof, _duplicates

D1, D2, D3 = dt.date(2026, 3, 2), dt.date(2026, 3, 3), dt.date(2026, 3, 4)


def test_each_row_gets_the_definition_in_force_on_its_date():
    ticks = pl.DataFrame(
        {
            "instrument_id": [7, 7, 8],
            "def_date": [D1, D3, D2],
            "variable_tick": [True, False, False],
            "tick": [OPT_SMALL_TICK, 250_000_000, 25_000_000],
        },
        schema_overrides={"instrument_id": pl.UInt32},
    )
    rows = pl.DataFrame(
        {
            "date": [D2, D1, D3, D1, D2, D3, D2],
            "instrument_id": [7, 8, 7, 7, 8, 8, 9],
        },
        schema_overrides={"instrument_id": pl.UInt32},
    )
    out = _asof(rows, ticks)
    assert out.select("date", "instrument_id").equals(rows)  # row order kept
    assert out["def_date"].to_list() == [D1, None, D3, D1, D2, D2, None]
    assert out["tick"].to_list() == [OPT_SMALL_TICK, None, 250_000_000, OPT_SMALL_TICK] + [
        25_000_000,
        25_000_000,
        None,
    ]
    assert out["variable_tick"].to_list() == [True, None, False, True, False, False, None]
    empty = _asof(rows, ticks.clear())
    assert empty["def_date"].null_count() == rows.height


def test_duplicates_are_exact_rows_whatever_their_order():
    base = {
        "ts_recv": [1, 2, 3, 2, 5],
        "ts_event": [1, 2, 3, 2, 5],
        "order_id": [10, 11, 12, 11, 13],
        "sequence": [1, 2, 3, 2, 4],
        "instrument_id": [7, 7, 7, 7, 7],
        "action": ["A", "A", "T", "A", "C"],
        "size": [1, 1, 1, 1, 1],
        "origin": ["synthetic"] * 5,
    }
    assert _duplicates(pl.DataFrame(base), "mbo").to_list() == [False, True, False, True, False]
    # the same keys with another size are not duplicates: only candidates, compared in full
    other = {**base, "size": [1, 1, 1, 2, 1]}
    assert not _duplicates(pl.DataFrame(other), "mbo").any()
    # identical T records are separate matches, never duplicates
    fills = {**base, "action": ["A", "T", "T", "T", "C"]}
    assert not _duplicates(pl.DataFrame(fills), "mbo").any()
