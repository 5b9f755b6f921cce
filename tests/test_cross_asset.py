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
    live_weight_note,
    weighted_confidence,
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


# ---------------------------------------------------------------------- the confidence weight
def _sigs() -> pl.DataFrame:
    """SYNTHETIC signals: two v3 signals of episode e1, one of e2 (no confirmation row), one of
    e3 (its row has no confirmation: nothing signed traded), one v1 signal of episode e1's id."""
    return pl.DataFrame(
        {
            "signal_id": ["s1", "s2", "s3", "s4", "s5"],
            "algo": ["v3", "v3", "v3", "v3", "v1"],
            "episode_id": ["e1", "e1", "e2", "e3", "e1"],
            "confidence": [0.60, 0.80, 0.70, 0.50, 0.40],
        }
    )


def _confs(rows: list[tuple[str, float | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        {"episode_id": [r[0] for r in rows], "confirmation": [r[1] for r in rows]},
        schema={"episode_id": pl.Utf8, "confirmation": pl.Float64},
    )


def test_weighted_confidence_by_hand():
    out = weighted_confidence(_sigs(), _confs([("e1", 0.90), ("e3", None)]), 0.25)
    # e1: 0.75 x 0.60 + 0.25 x 0.90 = 0.675; 0.75 x 0.80 + 0.25 x 0.90 = 0.825.
    # e2 has no row, e3's row has no confirmation, s5 is v1: unchanged.
    assert out["confidence"].to_list() == pytest.approx([0.675, 0.825, 0.70, 0.50, 0.40])
    assert out.columns == _sigs().columns
    assert out["signal_id"].to_list() == ["s1", "s2", "s3", "s4", "s5"]


def test_a_disagreeing_confirmation_lowers_confidence_and_weight_one_replaces_it():
    low = weighted_confidence(_sigs(), _confs([("e1", 0.20)]), 0.5)
    # 0.5 x 0.60 + 0.5 x 0.20 = 0.40; 0.5 x 0.80 + 0.5 x 0.20 = 0.50
    assert low["confidence"].to_list()[:2] == pytest.approx([0.40, 0.50])
    full = weighted_confidence(_sigs(), _confs([("e1", 0.20)]), 1.0)
    assert full["confidence"].to_list()[:3] == pytest.approx([0.20, 0.20, 0.70])


def test_weight_zero_returns_the_signals_untouched():
    sigs = _sigs()
    assert weighted_confidence(sigs, _confs([("e1", 0.90)]), 0.0) is sigs


def test_bad_weights_and_two_confirmations_for_one_episode_are_errors():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        weighted_confidence(_sigs(), _confs([]), 1.5)
    with pytest.raises(ValueError, match="e1 has several confirmations"):
        weighted_confidence(_sigs(), _confs([("e1", 0.9), ("e1", 0.1)]), 0.5)


def test_live_says_it_does_not_apply_the_weight():
    assert live_weight_note(0.0) is None
    note = live_weight_note(0.3)
    assert note is not None and "not applied live" in note and "0.3" in note
