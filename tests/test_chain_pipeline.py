"""Signals and orchestration (docs/algorithms.md §9–17): one signal schema with content ids, conflict netting per
underlying and horizon, deterministic ranking, composite score, and the analyzers end to end."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import polars as pl
import pytest

from ifd_core.analysis.black76 import value
from ifd_core.analysis.chain import (
    ChainParams,
    ChainSignal,
    ChainState,
    composite_score,
    run_chain_analyzers,
)
from ifd_core.analysis.chain.expected_value import ExpectedValueParams, evaluate
from ifd_core.analysis.chain.pipeline import rank, resolve_conflicts
from ifd_core.analysis.chain.snapshot import MarketSnapshot

NS = 1_000_000_000
T0 = int(dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC).timestamp()) * NS


def sig(direction="BULLISH", score=0.6, strike=21900.0, source="ifd_v1", **kw) -> ChainSignal:
    base = {
        "source": source,
        "source_version": "1",
        "event_time_ns": T0,
        "underlying_id": 1,
        "expiration_ns": None,
        "strikes": (strike,),
        "rights": ("C",),
        "direction": direction,
        "horizon_s": 1800.0,
        "score": score,
    }
    return ChainSignal(**{**base, **kw})


def test_composite_score():
    # [ref] scores {Risk 0.8, EV 0.6}, weights {Risk 0.3, EV 0.7, Momentum 0.5} → 0.66
    got = composite_score({"Risk": 0.8, "EV": 0.6}, {"Risk": 0.3, "EV": 0.7, "Momentum": 0.5})
    assert got == pytest.approx(0.66)
    assert composite_score({"Risk": 0.8}, {"EV": 1.0}) is None  # nothing in common: no data


def test_signal_id_is_deterministic_and_content_based():
    a, b = sig(), sig()
    assert a.id == b.id and len(a.id) == 16 and a == b
    assert sig(score=0.61).id != a.id
    assert sig(evidence={"x": 1}).id != sig(evidence={"x": 2}).id
    with pytest.raises(TypeError):
        a.evidence["x"] = 1  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.score = 0.1  # type: ignore[misc]
    with pytest.raises(ValueError, match="score"):
        sig(score=1.5)
    with pytest.raises(ValueError, match="direction"):
        sig(direction="LONG")


def test_conflicts_one_sided_and_empty():
    # [ref] v1 only → kept; nothing → nothing
    only = [sig()]
    assert resolve_conflicts(only) == only
    assert resolve_conflicts([]) == []


def test_same_direction_merges_without_boosting():
    # [ref] LONG 21900 (0.6) and LONG 21925 (0.6): both kept, scores untouched (no fitted
    # combiner yet, so agreement does not raise confidence)
    a, b = sig(), sig(strike=21925.0, source="ifd_v3")
    out = resolve_conflicts([a, b])
    assert sorted(s.id for s in out) == sorted([a.id, b.id])
    assert all(s.score == 0.6 for s in out)


def test_opposing_equal_scores_net_to_nothing():
    # the reference picks V3 via an arbitrary 1.1 multiplier; netting by score cancels both
    out = resolve_conflicts([sig(), sig("BEARISH", 0.6, 21920.0, "ifd_v3")])
    assert out == []


def test_opposing_signals_net_by_score_regardless_of_strike_distance():
    # the reference ignores pairs 60 points apart (> 50); opposing calls on one underlying and
    # horizon conflict wherever their strikes are
    bull, bear = sig(score=0.6), sig("BEARISH", 0.2, 21960.0, "ifd_v3")
    out = resolve_conflicts([bull, bear])
    assert len(out) == 1 and out[0].direction == "BULLISH"
    assert out[0].score == pytest.approx(0.6 * (0.6 - 0.2) / 0.6)
    assert out[0].evidence["netted_against"] == [bear.id]
    assert out[0].evidence["score_before_netting"] == 0.6


def test_no_netting_across_horizons_or_underlyings():
    bull = sig(horizon_s=600.0)
    other_horizon = sig("BEARISH", horizon_s=5 * 86_400.0)
    other_underlying = sig("BEARISH", underlying_id=2)
    out = resolve_conflicts([bull, other_horizon, other_underlying])
    assert len(out) == 3


def test_ranking_calibrated_ev_then_score_then_notional_then_id():
    p = ExpectedValueParams(coefficients={"f": 1.0})
    plan = lambda x: evaluate("LONG", 21000.0, 100, 100, None, {"f": x}, p)  # noqa: E731
    s_hi_ev = sig(score=0.1, trade_plan=plan(1.0))
    s_lo_ev = sig(score=0.9, trade_plan=plan(0.5))
    s_2m = sig(score=0.7, notional_premium=2e6)
    s_1m = sig(score=0.7, notional_premium=1e6)
    s_low = sig(score=0.3)
    s_uncal = sig(
        score=0.5, trade_plan=evaluate("LONG", 21000.0, 100, 100, None, {}, ExpectedValueParams())
    )
    got = rank([s_low, s_uncal, s_1m, s_lo_ev, s_2m, s_hi_ev])
    assert got == [s_hi_ev, s_lo_ev, s_2m, s_1m, s_uncal, s_low]
    twin_a, twin_b = sig(score=0.4, strike=1.0), sig(score=0.4, strike=2.0)
    assert rank([twin_a, twin_b]) == rank([twin_b, twin_a])  # ties end on the id


# ------------------------------------------------------------------ end to end
F = 21010.0
EXP = T0 + 2 * 86_400 * NS
TAU = 2 / 365.25


def chain_snapshot(put_buys: int = 300) -> MarketSnapshot:
    rows, iid = [], 1
    for k in (20900.0, 20950.0, 21000.0, 21050.0, 21100.0):
        for right in ("C", "P"):
            buys = put_buys if (k, right) == (21000.0, "P") else 0
            rows.append(
                {
                    "instrument_id": iid,
                    "root": "NQ",
                    "expiration": EXP,
                    "strike": k,
                    "right": right,
                    "open_interest": 2000 if right == "C" else 1500,
                    "buy_volume": buys,
                    "sell_volume": 0,
                    "unsigned_volume": 0,
                    "recent_buy_volume": buys,
                    "recent_sell_volume": 0,
                    "premium": 20.0 * 60 * buys,
                    "last_price": float(value(F, k, TAU, 0.2, right == "C")),
                    "settlement": None,
                }
            )
            iid += 1
    return MarketSnapshot(T0, 1, F, pl.DataFrame(rows), futures_volume=3000)


BASELINE = pl.DataFrame(
    {"instrument_id": list(range(1, 11)), "baseline_volume": [20.0] * 10, "sessions": [20] * 10}
)


def test_run_is_deterministic_and_uses_one_schema():
    snap, state = chain_snapshot(), ChainState(volume_baseline=BASELINE)
    first = run_chain_analyzers(snap, ChainParams(), state)
    again = run_chain_analyzers(snap, ChainParams(), state)
    assert [s.id for s in first] == [s.id for s in again]
    sources = {s.source for s in first}
    assert "volume_shock" in sources
    shock = next(s for s in first if s.source == "volume_shock")
    # customers bought 300 ATM puts: dealers sell futures → bearish
    assert shock.direction == "BEARISH" and shock.evidence["hedge_direction"] == "SELL_FUTURES"
    assert shock.evidence["hedge_futures"] < 0
    for s in first:
        assert 0 <= s.score <= 1 and s.event_time_ns == T0 and s.underlying_id == 1
        # uncalibrated: no probability, and no trade plan can have EV > 0
        assert s.probability is None and s.trade_plan is None
        assert s.evidence.get("calibrated") is False


def test_calibrated_tilts_produce_positive_ev_plans_ranked_first():
    params = ChainParams(
        expected_value=ExpectedValueParams(coefficients={"volume_shock": 3.0}, horizon_s=None)
    )
    out = run_chain_analyzers(chain_snapshot(), params, ChainState(volume_baseline=BASELINE))
    planned = [s for s in out if s.trade_plan is not None]
    assert planned and out[0].trade_plan is not None
    assert all(s.trade_plan.calibrated and s.trade_plan.ev_net > 0 for s in planned)
    assert all(s.trade_plan.direction == "SHORT" for s in planned)  # bearish hedge flow
    evs = [s.trade_plan.ev_net for s in out if s.trade_plan is not None]
    assert evs == sorted(evs, reverse=True)
    ev_sig = next(s for s in out if s.source == "expected_value")
    assert ev_sig.probability == ev_sig.trade_plan.p_target


def test_empty_snapshot_gives_no_signals():
    s = chain_snapshot()
    empty = dataclasses.replace(s, chain=s.chain.clear())
    assert run_chain_analyzers(empty, ChainParams(), ChainState(volume_baseline=BASELINE)) == []


def test_external_signals_join_netting_and_ranking():
    snap = chain_snapshot(put_buys=0)  # no shock
    ext = sig("BULLISH", 0.9, source="ifd_v3", horizon_s=math.inf)
    out = run_chain_analyzers(snap, ChainParams(), ChainState(external_signals=(ext,)))
    alone = run_chain_analyzers(snap, ChainParams(), ChainState())
    # the pin map attracts to 21000, below the price: a bearish two-day signal
    pin = [s for s in alone if s.source == "expiration_pressure"]
    assert [s.direction for s in pin] == ["BEARISH"] and pin[0].horizon_s == 2 * 86_400
    assert pin[0].expected_move == pytest.approx(21000.0 - F)
    # the multi-day bullish IFD signal and the bearish pin share underlying and horizon class
    # (> 1 day): the stronger survives with the difference of the scores
    assert [s.source for s in out] == ["ifd_v3"]
    assert out[0].evidence["netted_against"] == [pin[0].id]
    assert out[0].score == pytest.approx(0.9 - pin[0].score)
