"""Cross-asset confirmation of v3 episodes (ifd_core/analysis/cross_asset.py), computed by hand.

SYNTHETIC trades and episodes: every expected number below is summed by hand from the rows, so a
change in which trades count (minutes, views, signs) or how they add up fails a test.
"""

from __future__ import annotations

import polars as pl
import pytest

from ifd_core.analysis.cross_asset import (
    CONFIRMATION_SCHEMA,
    cross_asset_confirmation,
    episode_spans,
)

S = 10**9
T0 = 1_774_017_000 * S  # 2026-03-20 14:30:00 UTC, a whole minute

# SYNTHETIC signed trades: (seconds after T0, right, aggressor, premium USD)
TAPE = [
    (10, "C", "B", 1000.0),  # call bought: bullish
    (20, "P", "S", 500.0),  # put sold: bullish
    (30, "P", "B", 300.0),  # put bought: bearish
    (40, "C", "S", 200.0),  # call sold: bearish
    (50, "C", "N", 700.0),  # unsigned
    (119, "P", "B", 50.0),  # put bought: bearish
    (300, "C", "B", 10000.0),  # at T0 + 300 s: outside [T0, T0 + 300 s)
    (-1, "C", "B", 999.0),  # before T0
]


def _trades() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts": [T0 + s * S if s >= 0 else T0 - 1 for s, *_ in TAPE],
            "right": [r for _, r, _, _ in TAPE],
            "aggressor": [a for _, _, a, _ in TAPE],
            "premium": [p for *_, p in TAPE],
        },
        schema_overrides={"ts": pl.UInt64},
    )


def _episodes(rows: list[tuple[str, str, int, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "episode_id": [r[0] for r in rows],
            "view": [r[1] for r in rows],
            "first_window_start": [r[2] for r in rows],
            "last_window_end": [r[3] for r in rows],
        },
        schema_overrides={"first_window_start": pl.UInt64, "last_window_end": pl.UInt64},
    )


def test_signed_premium_per_episode_by_hand():
    episodes = _episodes(
        [
            ("e1", "BULLISH", T0, T0 + 300 * S),
            ("e2", "BEARISH", T0, T0 + 300 * S),
            # Not on minutes: [T0 + 65 s, T0 + 100 s) widens to [T0 + 60 s, T0 + 120 s).
            ("e3", "BULLISH", T0 + 65 * S, T0 + 100 * S),
            ("e4", "BEARISH", T0 + 3600 * S, T0 + 3900 * S),
        ]
    )
    out = cross_asset_confirmation(episodes, _trades())
    assert out.schema == pl.Schema(CONFIRMATION_SCHEMA)
    got = {r["episode_id"]: r for r in out.iter_rows(named=True)}
    assert list(got) == ["e1", "e2", "e3", "e4"]
    # e1: bullish 1000 + 500; bearish 300 + 200 + 50; unsigned 700; six trades.
    e1 = got["e1"]
    assert (e1["trades"], e1["bullish_premium"], e1["bearish_premium"]) == (6, 1500.0, 550.0)
    assert (e1["unsigned_premium"], e1["same_premium"], e1["opposite_premium"]) == (
        700.0,
        1500.0,
        550.0,
    )
    assert e1["net_premium"] == 950.0 and e1["confirmation"] == pytest.approx(1500 / 2050)
    # e2: the same minutes, the other view.
    e2 = got["e2"]
    assert (e2["same_premium"], e2["opposite_premium"], e2["net_premium"]) == (
        550.0,
        1500.0,
        -950.0,
    )
    assert e2["confirmation"] == pytest.approx(550 / 2050)
    # e3: only the put bought at +119 s: bearish 50 against a bullish view.
    e3 = got["e3"]
    assert (e3["start_ns"], e3["end_ns"]) == (T0 + 60 * S, T0 + 120 * S)
    assert (e3["trades"], e3["same_premium"], e3["opposite_premium"]) == (1, 0.0, 50.0)
    assert (e3["net_premium"], e3["confirmation"]) == (-50.0, 0.0)
    # e4: nothing traded in its minutes: zeros, and no confirmation rather than 0.
    e4 = got["e4"]
    assert (e4["trades"], e4["same_premium"], e4["opposite_premium"]) == (0, 0.0, 0.0)
    assert e4["confirmation"] is None


def test_unsigned_flow_alone_confirms_nothing():
    episodes = _episodes([("e", "BULLISH", T0, T0 + 60 * S)])
    trades = _trades().filter(pl.col("aggressor") == "N")
    (row,) = cross_asset_confirmation(episodes, trades).iter_rows(named=True)
    assert (row["trades"], row["unsigned_premium"], row["confirmation"]) == (1, 700.0, None)


def test_the_result_does_not_depend_on_row_order():
    episodes = _episodes(
        [("b", "BEARISH", T0, T0 + 300 * S), ("a", "BULLISH", T0 + 65 * S, T0 + 100 * S)]
    )
    one = cross_asset_confirmation(episodes, _trades())
    two = cross_asset_confirmation(episodes.reverse(), _trades().reverse())
    assert one.to_dicts() == two.to_dicts()
    assert one["episode_id"].to_list() == ["a", "b"]


def test_a_view_that_is_not_bullish_or_bearish_is_refused():
    with pytest.raises(ValueError, match="NEUTRAL"):
        cross_asset_confirmation(_episodes([("e", "NEUTRAL", T0, T0 + 60 * S)]), _trades())


def test_episode_spans_from_signals():
    signals = pl.DataFrame(
        {
            "episode_id": ["a", "a", "b"],
            "view": ["BULLISH", "BULLISH", "BEARISH"],
            "window_start": [T0 + 300 * S, T0, T0],
            "window_end": [T0 + 600 * S, T0 + 300 * S, T0 + 300 * S],
        },
        schema_overrides={"window_start": pl.UInt64, "window_end": pl.UInt64},
    )
    spans = episode_spans(signals)
    assert spans.rows() == [
        ("a", "BULLISH", T0, T0 + 600 * S),
        ("b", "BEARISH", T0, T0 + 300 * S),
    ]
    mixed = signals.with_columns(pl.Series("view", ["BULLISH", "BEARISH", "BEARISH"]))
    with pytest.raises(ValueError, match="episode a has several views"):
        episode_spans(mixed)
    with pytest.raises(ValueError, match="without an episode_id"):
        episode_spans(signals.with_columns(pl.lit(None, dtype=pl.Utf8).alias("episode_id")))
