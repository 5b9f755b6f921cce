"""Risk analysis (docs/algorithms.md §9): the spec's chain (price 21761.75; 21750 C 545 @12.75 / P 18 @6.00,
21760 C 15 @8.00 / P 1 @10.75, 21770 C 60 @4.05 / P 0 @17.00) with per-option volumes; roles
from the price side, "no data" instead of a verdict on empty input, and the doc's thresholds."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import polars as pl
import pytest
from scipy.stats import norm

from ifd_core.analysis.black76 import RATE
from ifd_core.analysis.chain.risk_analysis import (
    RiskParams,
    analyze_risk,
    verdict,
)
from ifd_core.analysis.chain.snapshot import MarketSnapshot, with_greeks

NS = 1_000_000_000
T0 = int(dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC).timestamp()) * NS
EXP = T0 + 86_400 * NS
F = 21761.75
# strike: (call OI, call price, call volume, put OI, put price, put volume)
SPEC = {
    21750.0: (545, 12.75, 916, 18, 6.00, 0),
    21760.0: (15, 8.00, 394, 1, 10.75, 0),
    21770.0: (60, 4.05, 392, 0, 17.00, 0),
}
REF_PARAMS = RiskParams(significance_floor_usd=0.0, battle_zone_share=0.0)


def snapshot(spec=SPEC, price=F) -> MarketSnapshot:
    rows, iid = [], 1
    for k, (c_oi, c_px, c_vol, p_oi, p_px, p_vol) in spec.items():
        for right, oi, px, vol in (("C", c_oi, c_px, c_vol), ("P", p_oi, p_px, p_vol)):
            rows.append(
                {
                    "instrument_id": iid,
                    "root": "NQ",
                    "expiration": EXP,
                    "strike": k,
                    "right": right,
                    "open_interest": oi,
                    "buy_volume": vol,
                    "sell_volume": 0,
                    "unsigned_volume": 0,
                    "recent_buy_volume": 0,
                    "recent_sell_volume": 0,
                    "premium": 0.0,
                    "last_price": px,
                    "settlement": None,
                }
            )
            iid += 1
    return with_greeks(MarketSnapshot(T0, 1, price, pl.DataFrame(rows)))


def strikes(e) -> dict[float, dict]:
    return {r["strike"]: r for r in e.strikes.iter_rows(named=True)}


def test_marks_come_from_each_options_own_price():
    s = snapshot()
    assert s.chain["iv_source"].to_list() == ["last"] * 6


def test_premium_at_stake_and_verdict():
    r = analyze_risk(snapshot(), REF_PARAMS)
    e = r.expiries[0]
    assert r.status == e.status == "ok"
    # [ref] OTM calls above the price: 21770 only, 60 × 4.05 × 20
    assert e.call_stake == pytest.approx(4860.0, rel=1e-9)
    # [ref] OTM puts below: 21750 18 × 6 × 20 = 2160 and 21760 1 × 10.75 × 20 = 215
    assert e.put_stake == pytest.approx(2375.0, rel=1e-9)
    assert e.ratio == pytest.approx(4860 / 2375, rel=1e-9)  # 2.0463
    assert (e.verdict, e.bias) == ("STRONG_CALL_DOMINANCE", "UPWARD")


def test_battle_zones_roles_fixed_and_danger_ranking():
    e = analyze_risk(snapshot(), REF_PARAMS).expiries[0]
    zones = e.battle_zones.select("strike", "danger", "proximity", "role").rows()
    assert [z[0] for z in zones] == [21770.0, 21750.0, 21760.0]
    assert zones[0][1] == pytest.approx(14580.0)  # 4860 × 3 (IMMEDIATE, d 8.25)
    assert zones[1][1] == pytest.approx(4320.0)  # 2160 × 2 (NEAR_TERM, d 11.75)
    assert zones[2][1] == pytest.approx(645.0)  # 215 × 3 (IMMEDIATE, d 1.75)
    assert [z[2] for z in zones] == ["IMMEDIATE", "NEAR_TERM", "IMMEDIATE"]
    # DEFECT fixed: the reference says "STRONG SUPPORT at 21770" (a call strike above the
    # price) and "STRONG RESISTANCE at 21760" (a put strike below); it is the other way round
    assert [z[3] for z in zones] == ["RESISTANCE", "SUPPORT", "SUPPORT"]
    rows = strikes(e)
    # [ref] reinforcement from the option's own volume: 392 / 60 = 6.53 → heavy
    assert rows[21770.0]["call_volume_oi"] == pytest.approx(392 / 60)
    assert rows[21770.0]["call_reinforcement"] == "HEAVY_REINFORCEMENTS"
    assert rows[21760.0]["put_reinforcement"] == "EXISTING_POSITIONS"  # 0 / 1
    assert rows[21770.0]["put_reinforcement"] == "NEW_POSITIONS_ONLY"  # OI 0
    assert rows[21770.0]["urgency"] == "CRITICAL"  # 8.25 / 21761.75 = 0.04 % < 1 %


def test_threats_proximity_bias_and_region():
    e = analyze_risk(snapshot(), REF_PARAMS).expiries[0]
    # [ref] nearest put threat 1.75 below beats the call threat 8.25 above → DOWNWARD
    assert (e.nearest_call_threat, e.nearest_put_threat) == (21770.0, 21760.0)
    assert e.proximity_bias == "DOWNWARD"
    # ±0.5 % region holds every strike: calls 4860 ≥ 1.5 × 2375 puts
    assert e.region_dominance == "CALL"


def test_default_thresholds_significance_floor_and_zone_share():
    p = RiskParams()
    assert p.significance_floor_usd == 10_000 and p.battle_zone_share == 0.15
    assert (p.strike_dominance, p.region_pct, p.region_dominance) == (1.2, 0.5, 1.5)
    assert p.verdict_levels == (3.0, 2.0, 1.5, 1.2, 0.67, 0.5)
    assert (p.critical_pct, p.high_pct) == (1.0, 2.0)
    e = analyze_risk(snapshot(), p).expiries[0]
    # every strike is below $10,000: nothing significant, no zones, no threats — verdict stays
    assert e.battle_zones.height == 0 and e.nearest_call_threat is None
    assert e.verdict == "STRONG_CALL_DOMINANCE"
    # with the floor lifted, the 15 % share drops 21760 (215 / 7235 = 3 %)
    share_only = dataclasses.replace(p, significance_floor_usd=0.0)
    zones = analyze_risk(snapshot(), share_only).expiries[0].battle_zones
    assert zones["strike"].to_list() == [21770.0, 21750.0]


@pytest.mark.parametrize(
    ("ratio", "label"),
    [
        (3.0, "EXTREME_CALL_DOMINANCE"),
        (2.9999, "STRONG_CALL_DOMINANCE"),
        (2.0, "STRONG_CALL_DOMINANCE"),
        (1.5, "MODERATE_CALL_DOMINANCE"),
        (1.2, "SLIGHT_CALL_DOMINANCE"),
        (1.19, "BALANCED"),
        (0.67, "BALANCED"),
        (0.669, "MODERATE_PUT_DOMINANCE"),
        (0.5, "MODERATE_PUT_DOMINANCE"),
        (0.49, "STRONG_PUT_DOMINANCE"),
        (math.inf, "EXTREME_CALL_DOMINANCE"),
    ],
)
def test_seven_level_verdict(ratio, label):
    assert verdict(ratio, RiskParams().verdict_levels)[0] == label


def test_per_strike_dominance_at_1_2x():
    # at the money a call and a put of one price have equal Black-76 value, so the stakes are
    # in the ratio of open interest (extrinsic basis counts both sides at every strike)
    def dominance(call_oi: int, put_oi: int) -> str:
        spec = {21000.0: (call_oi, 50.0, 0, put_oi, 50.0, 0)}
        p = RiskParams(stake_basis="extrinsic", significance_floor_usd=0.0)
        return strikes(analyze_risk(snapshot(spec, 21000.0), p).expiries[0])[21000.0]["dominance"]

    assert dominance(601, 500) == "CALL"
    assert dominance(599, 500) == "CONTESTED"
    assert dominance(500, 601) == "PUT"


def test_dealer_exposure_under_the_stated_assumption():
    r = analyze_risk(snapshot(), REF_PARAMS)
    e, rows = r.expiries[0], strikes(r.expiries[0])
    assert "long call OI" in r.positioning
    chain = {(x["strike"], x["right"]): x for x in snapshot().chain.iter_rows(named=True)}
    # dealers: +call OI − put OI − today's customer net buys (calls bought 916 at 21750 ...)
    k = 21750.0
    c, p = chain[(k, "C")], chain[(k, "P")]
    expected = (545 - 916) * c["gamma"] + (-18 - 0) * p["gamma"]
    assert rows[k]["dealer_gamma"] == pytest.approx(expected, rel=1e-12)
    # the ITM 21750 call counts here even though it has no OTM stake
    assert rows[k]["call_stake"] == 0.0
    assert e.net_dealer_gamma == pytest.approx(sum(x["dealer_gamma"] for x in rows.values()))
    tau = 1 / 365.25
    sd = c["iv"] * math.sqrt(tau)
    d1 = (math.log(F / k) + sd * sd / 2) / sd
    assert c["gamma"] == pytest.approx(math.exp(-RATE * tau) * norm.pdf(d1) / (F * sd), rel=1e-7)


def test_empty_or_fieldless_inputs_are_no_data_not_put_dominance():
    # DEFECT fixed: contracts without open interest gave ratio 0 → "STRONG PUT DOMINANCE"
    no_oi = {k: (0, c, v, 0, p, pv) for k, (_, c, v, _, p, pv) in SPEC.items()}
    r = analyze_risk(snapshot(no_oi))
    assert r.status == "no_data" and r.expiries[0].verdict is None
    assert any(f.startswith("no_data") for f in r.data_quality)
    s = snapshot()
    empty = analyze_risk(dataclasses.replace(s, chain=s.chain.clear()))
    assert empty.status == "no_data" and empty.expiries == ()


def test_extrinsic_basis_adds_in_the_money_time_value():
    e = analyze_risk(snapshot(), dataclasses.replace(REF_PARAMS, stake_basis="extrinsic"))
    e = e.expiries[0]
    # calls: 21750 ITM 545 × (12.75 − 11.75) × 20, 21760 ITM 15 × (8 − 1.75) × 20, 21770 OTM
    assert e.call_stake == pytest.approx(10900 + 1875 + 4860, rel=1e-9)
    # puts: 21770 ITM has OI 0
    assert e.put_stake == pytest.approx(2375, rel=1e-9)
