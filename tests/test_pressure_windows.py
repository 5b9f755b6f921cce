"""Pressure windows: the spec's hand-computed cases (docs/algorithms.md §4) and stream parity."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from ifd_core.analysis.pressure_windows import PressureWindows, WindowParams

T1300 = int(dt.datetime(2026, 3, 2, 13, 0, tzinfo=dt.UTC).timestamp()) * 1_000_000_000
S = 1_000_000_000


def trades(rows: list[tuple[float, int, int, str]], iid: int = 5001) -> pl.DataFrame:
    """(seconds after 13:00, price in points ×100, size, aggressor) rows."""
    return pl.DataFrame(
        {
            "ts_event": [T1300 + int(t * S) for t, *_ in rows],
            "instrument_id": [iid] * len(rows),
            "price": [p * 10_000_000 for _, p, _, _ in rows],
            "size": [z for *_, z, _ in rows],
            "aggressor": [a for *_, a in rows],
        }
    )


def one_window(rows) -> dict:
    pw = PressureWindows()
    out = pl.concat([pw.add(trades(rows)), pw.flush()])
    assert out.height == 1
    return out.row(0, named=True)


def test_buy_pressure_window():
    # 12 buy prints totalling 300 and 8 sell prints totalling 100 inside [13:00, 13:05)
    rows = [(i * 10, 1250, 25, "B") for i in range(12)]
    rows += [(200 + i, 1250, 12, "A") for i in range(7)] + [(207, 1250, 16, "A")]
    w = one_window(rows)
    assert (w["buy_volume"], w["sell_volume"], w["trades"]) == (300, 100, 20)
    assert w["pressure_ratio"] == pytest.approx(3.0)
    assert w["imbalance"] == pytest.approx(0.5)
    assert w["dominant_side"] == "BUY"
    assert w["confidence"] == pytest.approx(0.5)
    assert w["volume"] / w["trades"] == pytest.approx(20.0)
    assert w["buy_premium"] == pytest.approx(300 * 12.50 * 20)


def test_only_buys_gives_finite_measures():
    w = one_window([(1, 500, 20, "B"), (2, 500, 20, "B"), (3, 500, 10, "B")])
    assert w["log_ratio"] == pytest.approx(math.log(51))
    assert w["imbalance"] == 1.0
    assert w["pressure_ratio"] == 100.0
    assert w["confidence"] == pytest.approx(0.15)


def test_near_balance_is_neutral():
    rows = [(i, 100, 11, "B") for i in range(5)] + [(10 + i, 100, 9, "A") for i in range(5)]
    w = one_window(rows)
    assert (w["buy_volume"], w["sell_volume"]) == (55, 45)
    assert w["dominant_side"] == "NEUTRAL"
    assert w["pressure_ratio"] == pytest.approx(55 / 45)
    assert w["confidence"] == pytest.approx(0.05)


def test_unsigned_prints_are_kept_apart():
    w = one_window([(1, 100, 40, "N"), (2, 100, 10, "B")])
    assert (w["unsigned_volume"], w["buy_volume"], w["sell_volume"]) == (40, 10, 0)


def test_gap_emits_the_window_once_and_no_empty_windows():
    pw = PressureWindows()
    first = pw.add(trades([(60, 100, 5, "B")]))
    assert first.height == 0  # 13:01 print: window still open
    second = pw.add(trades([(20 * 60, 100, 5, "A")]))  # 13:20
    assert second["window_start"].to_list() == [T1300]
    rest = pw.flush()
    assert rest["window_start"].to_list() == [T1300 + 20 * 60 * S]


def test_window_closes_only_after_the_grace_period():
    pw = PressureWindows(WindowParams(grace_s=30))
    assert pw.add(trades([(10, 100, 5, "B"), (300 + 29, 100, 5, "B")])).height == 0
    closed = pw.add(trades([(300 + 31, 100, 5, "B")]))
    assert closed["window_start"].to_list() == [T1300]


def test_late_trade_is_kept_aside_not_merged():
    pw = PressureWindows(WindowParams(grace_s=0))
    pw.add(trades([(10, 100, 5, "B")]))
    assert pw.add(trades([(400, 100, 5, "B")])).height == 1
    pw.add(trades([(20, 100, 7, "A")]))  # belongs to the 13:00 window, already published
    assert pw.late_trades["size"].to_list() == [7]


def test_one_batch_and_random_chunks_give_identical_windows():
    rng = np.random.default_rng(5)
    n = 5000
    ts = np.sort(rng.integers(0, 3 * 3600, n)) * S // 10 + T1300
    df = pl.DataFrame(
        {
            "ts_event": ts.astype(np.uint64),
            "instrument_id": rng.integers(1, 6, n).astype(np.uint32),
            "price": (rng.integers(1, 400, n) * 5 * 10_000_000).astype(np.int64),
            "size": rng.integers(1, 60, n).astype(np.uint32),
            "aggressor": rng.choice(["B", "A", "N"], n),
        }
    )
    whole = PressureWindows()
    expected = pl.concat([whole.add(df), whole.flush()])
    chunked = PressureWindows()
    parts, start = [], 0
    while start < n:
        size = int(rng.integers(1, 400))
        parts.append(chunked.add(df[start : start + size]))
        start += size
    parts.append(chunked.flush())
    got = pl.concat(parts)
    assert got.equals(expected)
    assert expected["volume"].sum() == df["size"].sum()
    # Many trades share a 0.1 s timestamp, and chunks cut through them: the orders merged across
    # a chunk boundary are the same as in one batch (Σ q² per order > Σ of squared prints).
    buy_prints_sq = df.filter(pl.col("aggressor") == "B")["size"].cast(pl.Int64).pow(2).sum()
    assert expected["buy_size_sq"].sum() > buy_prints_sq


def test_a_sweep_is_one_aggressive_order_in_the_sum_of_squares():
    # A 60-lot buy sweeping three levels prints three times at one match time; two other buys
    # of 10 and a sell of 5 are separate orders. Unsigned prints are no order of either side.
    rows = [(1, 100, 20, "B"), (1, 105, 25, "B"), (1, 110, 15, "B")]
    rows += [(5, 110, 10, "B"), (9, 110, 10, "B"), (12, 100, 5, "A"), (14, 100, 40, "N")]
    w = one_window(rows)
    assert (w["buy_volume"], w["buy_trades"]) == (80, 5)
    assert w["buy_size_sq"] == 60**2 + 10**2 + 10**2
    assert w["sell_size_sq"] == 25
    # effective independent buy orders: 80² / 3800 ≈ 1.68, not the 5 prints
    assert w["buy_volume"] ** 2 / w["buy_size_sq"] == pytest.approx(1.684, abs=1e-3)


def test_a_window_is_priced_the_same_in_a_one_trade_batch_and_in_a_big_one():
    """polars divides a short column exactly and a long one by the reciprocal; prices are
    converted by multiplication so a live micro-batch of one trade and a whole day agree."""
    alone = trades([(10, 15, 3, "B")], iid=7)  # 0.15 x 3 contracts
    others = trades([(10 + i, 1250, 1, "A") for i in range(20)], iid=8)
    pw1, pw2 = PressureWindows(), PressureWindows()
    w1 = pl.concat([pw1.add(alone), pw1.flush()])
    w2 = pl.concat([pw2.add(pl.concat([alone, others]).sort("ts_event")), pw2.flush()])
    w2 = w2.filter(pl.col("instrument_id") == 7)
    for col in ("vwap", "buy_premium"):
        assert w1[col].to_list() == w2[col].to_list()
