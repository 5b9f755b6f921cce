"""IFD v3 scoring on SYNTHETIC hand-built prints, through the pipeline's own code path: prints →
``PressureWindows`` → baselines of the 20 sessions before (``build_baselines`` / ``score``) →
``score_v3``. No z-score or feature is written by hand.

The cases of issue 17: a real single-strike flow signals with margin alone in its window (no
persistence, no coordination, a little noise on the other right); one large print with a few
small ones, two-sided churn and a straddle stay well below the threshold; a 3-strike sweep of
moderate size signals; more independent prints at the same volume never lower the score.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from ifd_core.analysis.baselines import add_bucket_keys, build_baselines, score
from ifd_core.analysis.ifd_v3 import V3Params, score_v3
from ifd_core.analysis.pressure_windows import PressureWindows
from ifd_core.calendar import sessions_before

NS = 1_000_000_000
W = 300 * NS
SESSION = dt.date(2026, 3, 4)
SESSIONS = sessions_before(SESSION, 20)
EXPIRY = int(dt.datetime(2026, 6, 19, 21, tzinfo=dt.UTC).timestamp()) * NS  # > 45 DTE throughout
UNDERLYING = 21000.0
STRIKES = [20950.0, 20975.0, 21000.0, 21025.0, 21050.0, 21075.0, 21100.0]
# instrument id → (right, strike): calls 1..7, puts 11..17; 99 has no history at all
INSTRUMENTS = {i + 1: ("C", k) for i, k in enumerate(STRIKES)}
INSTRUMENTS |= {i + 11: ("P", k) for i, k in enumerate(STRIKES)}
INSTRUMENTS[99] = ("C", 21300.0)
CALL, PUT = 3, 13  # the 21000 call and put


def _open(day: dt.date) -> int:
    """10:00 New York (15:00 UTC before the March DST switch): the 30-minute bucket 20."""
    return int(dt.datetime(day.year, day.month, day.day, 15, tzinfo=dt.UTC).timestamp()) * NS


def orders(iid, sizes, side, k=0, start_s=5, gap_s=12, day=SESSION, delta=None) -> list[dict]:
    """One print per aggressive order, ``gap_s`` apart, in window ``k`` after 10:00 of ``day``."""
    t0 = _open(day) + k * W + start_s * NS
    return [
        {
            "ts_event": t0 + i * gap_s * NS,
            "instrument_id": iid,
            "size": q,
            "aggressor": side,
            "delta": delta,
        }
        for i, q in enumerate(sizes)
    ]


def sweep(iid, levels, side, k=0, at_s=150, day=SESSION) -> list[dict]:
    """One aggressive order through several price levels: one print per level, one match time."""
    t = _open(day) + k * W + at_s * NS
    return [
        {"ts_event": t, "instrument_id": iid, "size": q, "aggressor": side, "delta": None}
        for q in levels
    ]


def windows(prints: list[dict]) -> pl.DataFrame:
    """The engine's windows of ``prints``, with the contract keys the engine joins on."""
    trades = (
        pl.DataFrame(prints, schema_overrides={"delta": pl.Float64})
        .with_columns(pl.lit(50 * NS, pl.Int64).alias("price"))
        .sort("ts_event")
    )
    pw = PressureWindows()
    out = pl.concat([pw.add(trades), pw.flush()])
    right = {i: r for i, (r, _) in INSTRUMENTS.items()}
    strike = {i: k for i, (_, k) in INSTRUMENTS.items()}
    return out.with_columns(
        pl.col("instrument_id").replace_strict(right, return_dtype=pl.String).alias("right"),
        pl.col("instrument_id").replace_strict(strike, return_dtype=pl.Float64).alias("strike"),
        pl.lit(EXPIRY, pl.UInt64).alias("expiration"),
        pl.lit(UNDERLYING).alias("underlying_price"),
        pl.col("window_start")
        .cast(pl.Int64)
        .cast(pl.Datetime("ns", "UTC"))
        .dt.date()
        .alias("date"),
    )


def _history(missing: int = 0) -> dict[str, pl.DataFrame]:
    """Normal trading on every option of the test chain: six windows a session of two or three
    small two-sided prints (3-7 contracts), in the sessions before SESSION (the last
    ``missing`` of them without data)."""
    prints = []
    for day in SESSIONS[: len(SESSIONS) - missing]:
        for iid in INSTRUMENTS:
            if iid == 99:
                continue
            for k in range(6):
                prints += orders(iid, [1 + k % 3, 2], "B", k, day=day)
                prints += orders(iid, [1 + (k * 7 + iid) % 4], "A", k, start_s=100, day=day)
    hist = add_bucket_keys(windows(prints))
    return build_baselines(hist, SESSION, SESSIONS)


@pytest.fixture(scope="module")
def baselines() -> dict[str, pl.DataFrame]:
    return _history()


def scored(prints: list[dict], base: dict[str, pl.DataFrame], **params) -> pl.DataFrame:
    return score_v3(score(add_bucket_keys(windows(prints)), base), V3Params(**params))


def row(out: pl.DataFrame, iid: int, k: int = 0) -> dict:
    start = _open(SESSION) + k * W
    hit = out.filter((pl.col("instrument_id") == iid) & (pl.col("window_start") == start))
    assert hit.height == 1
    return hit.row(0, named=True)


# ---------------------------------------------------------------------- the tester's cases
FLOW_SOLD = [40, 42, 45, 48, 50, 52, 55, 58, 60, 62, 64, 47, 53, 57, 43, 61, 80]  # 917 lots


def test_a_single_strike_flow_signals_alone_with_margin(baselines):
    # 945 contracts in 18 trades, 97 % sold (puts sold: BULLISH), no earlier window, no other
    # strike; the call at the same strike has 113 lots of small two-sided noise, net sold (the
    # opposite view): market-making likelihood 0.5 × 113 / 945 ≈ 0.06.
    assert sum(FLOW_SOLD) == 917
    prints = orders(PUT, FLOW_SOLD, "A", gap_s=15) + orders(PUT, [28], "B", start_s=7)
    prints += orders(CALL, [9, 8, 7, 7, 6, 6, 6, 5, 5, 4], "A", gap_s=25)
    prints += orders(CALL, [8, 7, 6, 6, 6, 5, 5, 3, 2, 2], "B", start_s=11, gap_s=25)
    out = scored(prints, baselines)
    flow = row(out, PUT)
    assert (flow["volume"], flow["trades"]) == (945, 18)
    assert flow["mm_likelihood"] == pytest.approx(0.06, abs=0.002)
    assert flow["f_persistence"] == 0.0 and flow["f_coordination"] == 0.0
    assert flow["independent_prints"] > 15
    assert flow["signal"] and flow["confidence"] >= 0.8
    assert (flow["view"], flow["direction"]) == ("BULLISH", "SELL")
    assert not row(out, CALL)["signal"]


ONE_PRINT_CASES = {
    # 144 lots: a 114-lot buy, three small buys, four small sells
    "114 of 144": orders(CALL, [114, 5, 3, 2], "B") + orders(CALL, [8, 6, 4, 2], "A", start_s=7),
    # 150 lots: a 100-lot sell with small prints on both sides
    "100 of 150": orders(CALL, [100, 6, 5, 4, 3, 2], "A")
    + orders(CALL, [10, 8, 6, 4, 2], "B", start_s=7),
    # 173 lots: an 86-lot buy in twenty small two-sided prints
    "86 of 173": orders(CALL, [86, 7, 6, 5, 5, 4, 4, 3, 3, 2, 2], "B", gap_s=20)
    + orders(CALL, [8, 7, 6, 5, 5, 4, 4, 3, 2, 2], "A", start_s=9, gap_s=20),
    # 188 lots: a 114-lot buy sweeping three levels (three prints, one order) and small ones
    "114-lot sweep of 188": sweep(CALL, [40, 40, 34], "B")
    + orders(CALL, [9, 8, 7, 6], "B")
    + orders(CALL, [9, 8, 7, 6, 5, 4, 3, 2], "A", start_s=7, gap_s=25),
}


@pytest.mark.parametrize("case", list(ONE_PRINT_CASES))
def test_one_large_print_with_a_few_small_ones_is_no_signal(baselines, case):
    w = row(scored(ONE_PRINT_CASES[case], baselines), CALL)
    assert 144 <= w["volume"] <= 188 and w["passes_gates"]
    assert w["independent_prints"] < 2.5  # the big print dominates however many small ones
    assert not w["signal"] and w["confidence"] <= 0.6


def test_balanced_two_sided_churn_is_no_signal(baselines):
    prints = orders(CALL, [10] * 13 + [13] * 10, "B", gap_s=6)
    prints += orders(CALL, [10] * 12 + [12] * 10, "A", start_s=8, gap_s=6)
    w = row(scored(prints, baselines), CALL)
    assert (w["buy_volume"], w["sell_volume"]) == (260, 240)
    assert not w["passes_gates"] and not w["signal"]
    assert w["confidence"] <= 0.6  # the score itself, not only the gate


def test_straddle_is_market_making_not_a_signal(baselines):
    prints = orders(CALL, [25] * 20, "B", gap_s=14) + orders(PUT, [24] * 20, "B", 0, 6, 14)
    out = scored(prints, baselines)
    for iid in (CALL, PUT):
        w = row(out, iid)
        assert w["passes_gates"] and w["straddle_likelihood"] > 0.9
        assert not w["signal"] and w["confidence"] <= 0.6


SWEEP_BUYS, SWEEP_SELLS = [70, 60, 50, 45], [5]  # per strike: 225 bought in 4 orders, 5 sold


def test_a_three_strike_sweep_of_moderate_size_signals(baselines):
    legs = (CALL, CALL + 1, CALL + 2)  # 21000, 21025, 21050 calls bought in the same window
    prints = []
    for i, iid in enumerate(legs):
        prints += orders(iid, SWEEP_BUYS, "B", start_s=5 + i, gap_s=40)
        prints += orders(iid, SWEEP_SELLS, "A", start_s=30)
    out = scored(prints, baselines)
    leg = orders(CALL, SWEEP_BUYS, "B", gap_s=40) + orders(CALL, SWEEP_SELLS, "A", start_s=30)
    alone = row(scored(leg, baselines), CALL)
    assert alone["f_coordination"] == 0.0 and alone["trades"] == 5
    for iid in legs:
        w = row(out, iid)
        assert w["coordinated_strikes"] == 2 and w["view"] == "BULLISH"
        assert w["signal"] and w["confidence"] >= 0.75
        assert w["confidence"] > alone["confidence"]  # coordination adds


# ---------------------------------------------------------------------- monotonicity
def test_more_independent_prints_at_the_same_volume_never_lower_the_score(baselines):
    scores = []
    for n in (1, 2, 3, 4, 5, 6, 8, 10, 12, 24):
        prints = orders(CALL, [240 // n] * n, "B", gap_s=12) + orders(CALL, [2, 1], "A", 0, 7)
        w = row(scored(prints, baselines), CALL)
        assert w["buy_volume"] == 240
        scores.append(w["confidence"])
    assert scores == sorted(scores)
    assert scores[0] == 0.0 and scores[-1] >= 0.8


def test_one_print_split_into_many_raises_the_score_and_a_sweep_does_not(baselines):
    small = orders(CALL, [3, 2], "A", start_s=200) + orders(CALL, [2, 2, 1], "B", start_s=230)
    one = row(scored(orders(CALL, [300], "B") + small, baselines), CALL)
    swept = row(scored(sweep(CALL, [100] * 3, "B") + small, baselines), CALL)
    split = row(scored(orders(CALL, [30] * 10, "B") + small, baselines), CALL)
    assert one["confidence"] < 0.3 and not one["signal"]
    # a sweep prints three times but is one decision: no breadth gained
    assert swept["trades"] == one["trades"] + 2
    assert swept["independent_prints"] == pytest.approx(one["independent_prints"])
    assert swept["confidence"] == pytest.approx(one["confidence"])
    assert split["confidence"] > one["confidence"] + 0.5 and split["signal"]


# ---------------------------------------------------------------------- views, gates, tiers
def test_views_follow_aggressor_side_and_right(baselines):
    flow = [40, 35, 30, 45, 50, 38, 42, 60, 55, 48, 57]  # 500 lots, 11 orders
    prints = orders(PUT, flow, "B") + orders(CALL + 2, flow, "B") + orders(PUT - 2, flow, "A")
    out = scored(prints, baselines)
    got = {i: (row(out, i)["view"], row(out, i)["direction"]) for i in (PUT, CALL + 2, PUT - 2)}
    assert got == {
        PUT: ("BEARISH", "BUY"),
        CALL + 2: ("BULLISH", "BUY"),
        PUT - 2: ("BULLISH", "SELL"),
    }


def test_view_is_the_sign_of_delta_signed_volume(baselines):
    # docs/algorithms.md §6: 500 puts bought (delta −0.4) → BEARISH; the same on calls
    # (+0.4) → BULLISH; 500 puts sold → BULLISH.
    flow = [50] * 10
    prints = orders(PUT, flow, "B", delta=-0.4) + orders(CALL + 2, flow, "B", delta=0.4)
    prints += orders(PUT - 2, flow, "A", delta=-0.4)
    out = scored(prints, baselines)
    assert [row(out, i)["view"] for i in (PUT, CALL + 2, PUT - 2)] == [
        "BEARISH",
        "BULLISH",
        "BULLISH",
    ]
    assert [row(out, i)["delta_volume"] for i in (PUT, CALL + 2, PUT - 2)] == pytest.approx(
        [-200.0, 200.0, 200.0]
    )


def test_constructed_extreme_case_reaches_the_top_tier(baselines):
    # four adjacent calls bought for three windows running, imbalance 0.6 → 0.8 → 1.0
    prints = []
    for iid in (CALL, CALL + 1, CALL + 2, CALL + 3):
        for k, (b, s) in enumerate([(400, 100), (450, 50), (500, 0)]):
            prints += orders(iid, [b // 10] * 10, "B", k) + orders(iid, [s // 5] * 5, "A", k, 8)
    out = scored(prints, baselines)
    top = max((row(out, i, 2) for i in (CALL, CALL + 1)), key=lambda r: r["confidence"])
    assert top["f_persistence"] == 1.0 and top["f_trend"] == pytest.approx(1.0)
    assert top["mm_likelihood"] == 0.0 and top["coordinated_strikes"] == 3
    assert top["tier"] == "EXTREME" and top["signal"] and top["view"] == "BULLISH"


def test_small_window_fails_volume_gate(baselines):
    w = row(scored(orders(CALL, [10] * 5, "B"), baselines), CALL)
    assert not w["passes_gates"] and not w["signal"]


def test_no_baseline_is_neutral_and_lowers_quality(baselines):
    # instrument 99 never traded before, and nothing of its bucket trades at 12:30 New York
    w = row(scored(orders(99, [50] * 10, "B", k=30), baselines), 99, k=30)
    assert not w["instrument_has_baseline"] and not w["bucket_has_baseline"]
    assert w["f_size"] == 0.5 and w["f_imbalance"] == 0.5 and w["data_quality"] == 0.5
    assert not w["signal"]


def test_min_data_quality_gates_signals():
    base = _history(missing=4)  # 16 of the 20 sessions have data: quality 0.8
    prints = orders(CALL, [50] * 10, "B")
    w = row(scored(prints, base, min_confidence=0.5), CALL)
    assert w["data_quality"] == pytest.approx(0.8) and w["signal"]
    assert not row(scored(prints, base, min_confidence=0.5, min_data_quality=0.9), CALL)["signal"]


def test_windows_stored_without_order_sizes_fall_back_to_the_largest_print(baselines):
    """Windows of engine-2 lack buy_size_sq/sell_size_sq (the lake reads them as null): breadth
    then uses the side's volume / max_print, never more breadth than the prints show."""
    many = orders(CALL, [50] * 10, "B")
    one = orders(CALL + 1, [300], "B") + orders(CALL + 1, [3, 2, 2, 1], "A", 0, 9)
    old = windows(many + one).with_columns(
        pl.lit(None, pl.Int64).alias("buy_size_sq"), pl.lit(None, pl.Int64).alias("sell_size_sq")
    )
    out = score_v3(score(add_bucket_keys(old), baselines), V3Params())
    assert row(out, CALL)["independent_prints"] == pytest.approx(10.0)
    assert row(out, CALL)["signal"]
    assert row(out, CALL + 1)["independent_prints"] == pytest.approx(1.0)
    assert not row(out, CALL + 1)["signal"] and row(out, CALL + 1)["confidence"] == 0.0
    dropped = score_v3(score(add_bucket_keys(old.drop("buy_size_sq", "sell_size_sq")), baselines))
    assert dropped["confidence"].to_list() == out["confidence"].to_list()


def test_weights_must_sum_to_one():
    with pytest.raises(ValueError, match="sum to 1"):
        score_v3(pl.DataFrame(), V3Params(weights={"size": 0.5, "imbalance": 0.2}))
    with pytest.raises(ValueError, match="evidence weights"):
        score_v3(pl.DataFrame(), V3Params(weights={"size": 0.5, "persistence": 0.5}))


def test_deterministic(baselines):
    prints = orders(CALL, [50] * 10, "B") + orders(PUT - 1, [30, 20, 15, 5, 5, 25], "A", 0, 7)
    keyed = score(add_bucket_keys(windows(prints)), baselines)
    assert score_v3(keyed).equals(score_v3(keyed.reverse()))
