"""Expiration pressure (docs/algorithms.md §9): the spec's chain (price 15010; 15000 2500 C / 1800 P, 15025 1200 /
3200, 14975 1800 / 2100), with the PROPOSAL's Black-76 probabilities and dealer-gamma pin map.
Expected numbers come from textbook formulas written here, not from the module."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import polars as pl
import pytest
from scipy.stats import norm

from ifd_core.analysis.black76 import RATE
from ifd_core.analysis.chain.expiration_pressure import (
    ExpirationPressureParams,
    analyze_expiration_pressure,
    minutes_to_expiry,
)
from ifd_core.analysis.chain.positioning import DealerPositioning
from ifd_core.analysis.chain.snapshot import MarketSnapshot
from ifd_core.calendar import et_to_ns

NS = 1_000_000_000
YEAR_S = 365.25 * 86_400
DAY = dt.date(2026, 3, 6)  # a Friday
EXPIRY = et_to_ns(DAY, 16, 0)  # weekly: afternoon close
F = 15010.0
VOL = 0.20
OI = {15000.0: (2500, 1800), 15025.0: (1200, 3200), 14975.0: (1800, 2100), 15100.0: (200, 200)}


def d12(f, k, tau, vol):
    sd = vol * math.sqrt(tau)
    d1 = (math.log(f / k) + 0.5 * sd * sd) / sd
    return d1, d1 - sd


def b76(f, k, tau, vol, call):
    d1, d2 = d12(f, k, tau, vol)
    disc = math.exp(-RATE * tau)
    return (
        disc * (f * norm.cdf(d1) - k * norm.cdf(d2))
        if call
        else disc * (k * norm.cdf(-d2) - f * norm.cdf(-d1))
    )


def snapshot(minutes: float, flow: dict | None = None, priced: bool = True) -> MarketSnapshot:
    """The spec chain ``minutes`` before expiry; 15000 C and P trade at 20 % vol (the ATM IV)."""
    now = EXPIRY - int(minutes * 60 * NS)
    tau = minutes * 60 / YEAR_S
    flow = flow or {}
    rows, iid = [], 1
    for k, (c_oi, p_oi) in OI.items():
        for right, oi in (("C", c_oi), ("P", p_oi)):
            px = b76(F, k, tau, VOL, right == "C") if priced and k == 15000.0 else None
            buy, sell = flow.get((k, right), (0, 0))
            rows.append(
                {
                    "instrument_id": iid,
                    "root": "NQ",
                    "expiration": EXPIRY,
                    "strike": k,
                    "right": right,
                    "open_interest": oi,
                    "buy_volume": buy,
                    "sell_volume": sell,
                    "unsigned_volume": 0,
                    "recent_buy_volume": 0,
                    "recent_sell_volume": 0,
                    "premium": 0.0,
                    "last_price": px,
                    "settlement": None,
                }
            )
            iid += 1
    return MarketSnapshot(now, 1, F, pl.DataFrame(rows))


def table(result) -> dict[float, dict]:
    assert len(result.expiries) == 1
    return {r["strike"]: r for r in result.expiries[0].strikes.iter_rows(named=True)}


def test_minutes_come_from_the_expiration_instant_never_a_forced_1600():
    # [ref] now 15:16:30 ET, expiry 16:00 ET today → 43.5 minutes (the reference floors to 43)
    assert minutes_to_expiry(EXPIRY, et_to_ns(DAY, 15, 16, 30)) == pytest.approx(43.5)
    # DEFECT fixed: a morning-settled quarterly (09:30 ET) at 09:00 ET is 30 minutes away,
    # not the 420 minutes the reference's forced 16:00 gives
    quarterly = et_to_ns(dt.date(2026, 3, 20), 9, 30)
    assert minutes_to_expiry(quarterly, et_to_ns(dt.date(2026, 3, 20), 9, 0)) == 30.0
    r = analyze_expiration_pressure(snapshot(44))
    assert r.expiries[0].minutes_to_expiry == pytest.approx(44.0)


def test_probabilities_are_black76_with_the_expiry_atm_iv():
    r = analyze_expiration_pressure(snapshot(44))
    e = r.expiries[0]
    assert e.status == "ok" and e.atm_iv == pytest.approx(VOL, abs=1e-9)
    tau = 44 * 60 / YEAR_S
    rows = table(r)
    for k in (15000.0, 15025.0, 14975.0):
        _, d2 = d12(F, k, tau, VOL)
        assert rows[k]["p_itm_call"] == pytest.approx(norm.cdf(d2), abs=1e-9)
        assert rows[k]["p_itm_put"] == pytest.approx(norm.cdf(-d2), abs=1e-9)
        lo, hi = d12(F, k - 0.25, tau, VOL)[1], d12(F, k + 0.25, tau, VOL)[1]
        pin = norm.cdf(lo) - norm.cdf(hi)
        assert rows[k]["pin_probability"] == pytest.approx(pin, rel=1e-7)
        # t² only ranks: pressure = total OI × pin probability / t²
        assert rows[k]["pressure"] == pytest.approx(sum(OI[k]) * pin / 44**2, rel=1e-7)
    # the floor defect is gone: nearer strikes are likelier to pin
    assert rows[15000.0]["pin_probability"] > rows[15025.0]["pin_probability"]
    assert rows[15025.0]["pin_probability"] > rows[14975.0]["pin_probability"]
    order = [r["strike"] for r in e.strikes.iter_rows(named=True)]
    assert order == sorted(order, key=lambda k: -rows[k]["pressure"])
    # settlement band: forward × exp(−σ²τ/2 ± σ√τ), coverage 2N(1) − 1
    sd = VOL * math.sqrt(tau)
    assert e.settle_band == pytest.approx(
        (F * math.exp(-sd * sd / 2 - sd), F * math.exp(-sd * sd / 2 + sd)), rel=1e-9
    )
    assert e.band_coverage == pytest.approx(0.682689492, abs=1e-9)


def test_oi_below_high_oi_threshold_is_skipped():
    # [ref] a strike with 400 total OI is skipped (≥ 500 required)
    rows = table(analyze_expiration_pressure(snapshot(44)))
    assert 15100.0 not in rows and set(rows) == {14975.0, 15000.0, 15025.0}


def test_dealer_gamma_sign_attract_and_repel():
    r = analyze_expiration_pressure(snapshot(44))
    rows, e = table(r), r.expiries[0]
    tau = 44 * 60 / YEAR_S
    # default assumption: dealers long call OI, short put OI
    for k in (15000.0, 15025.0, 14975.0):
        d1, _ = d12(F, k, tau, VOL)
        gamma = math.exp(-RATE * tau) * norm.pdf(d1) / (F * VOL * math.sqrt(tau))
        pos = OI[k][0] - OI[k][1]
        assert rows[k]["dealer_position"] == pos
        assert rows[k]["dealer_gamma"] == pytest.approx(pos * gamma, rel=1e-7)
    assert rows[15000.0]["effect"] == "ATTRACT"  # +700 contracts of long gamma
    assert rows[15025.0]["effect"] == "REPEL"  # −2000
    assert rows[14975.0]["effect"] == "REPEL"  # −300
    assert e.attraction_level == 15000.0 and e.repel_level == 15025.0
    assert e.attraction_probability == pytest.approx(rows[15000.0]["pin_probability"])
    total = sum(abs(x["dealer_gamma"]) for x in rows.values())
    assert e.gamma_concentration == pytest.approx(rows[15000.0]["dealer_gamma"] / total)
    assert e.net_dealer_gamma == pytest.approx(sum(x["dealer_gamma"] for x in rows.values()))


def test_todays_customer_buys_are_dealer_shorts():
    # customers lift 1000 15000 calls today: dealers 2500 − 1000 − 1800 = −300 → repel
    r = analyze_expiration_pressure(snapshot(44, flow={(15000.0, "C"): (1000, 0)}))
    assert table(r)[15000.0]["dealer_position"] == -300
    assert table(r)[15000.0]["effect"] == "REPEL"
    assert r.expiries[0].attraction_level is None
    oi_only = ExpirationPressureParams(positioning=DealerPositioning(include_flow=False))
    r2 = analyze_expiration_pressure(snapshot(44, flow={(15000.0, "C"): (1000, 0)}), oi_only)
    assert table(r2)[15000.0]["effect"] == "ATTRACT"
    assert "long call OI" in r2.positioning and "OI only" in r2.positioning


def test_urgency_at_44_minutes_without_the_fall_through():
    rows = table(analyze_expiration_pressure(snapshot(44)))
    assert rows[15000.0]["urgency"] == "PIN_RISK_MANAGEMENT"  # d 10 < 30, OI 4300
    assert rows[15025.0]["urgency"] == "PIN_RISK_MANAGEMENT"  # d 15 < 30, OI 4400
    # DEFECT fixed: the reference labels 14975 (d 35) PIN_RISK too, via its fall-through
    assert rows[14975.0]["urgency"] == "NONE"


def test_urgency_at_10_minutes():
    rows = table(analyze_expiration_pressure(snapshot(10)))
    # [ref] 15000: t < 15, OI 4300 > 1000, d 10 < 15 → ASSIGNMENT_PANIC
    assert rows[15000.0]["urgency"] == "ASSIGNMENT_PANIC"
    # DEFECT fixed: 10 minutes is outside the 30–120 minute pin-risk window
    assert rows[15025.0]["urgency"] == "NONE"
    assert rows[14975.0]["urgency"] == "NONE"


def test_no_iv_means_no_probabilities_not_a_default_vol():
    r = analyze_expiration_pressure(snapshot(44, priced=False))
    e = r.expiries[0]
    assert e.status == "no_iv" and e.atm_iv is None
    assert e.attraction_level is None and e.settle_band is None
    assert r.status == "no_data"


def test_empty_chain_is_no_data():
    s = snapshot(44)
    empty = dataclasses.replace(s, chain=s.chain.clear())
    r = analyze_expiration_pressure(empty)
    assert r.status == "no_data" and r.expiries == ()
    assert any(f.startswith("no_data") for f in r.data_quality)
