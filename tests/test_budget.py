"""The docs/operations.md §Costs budget gate, alerts and proration, and the lake cost ledger it reads from."""

from __future__ import annotations

import datetime as dt

import pytest

from ifd_core.ops.budget import BudgetGate, CostLedger, Decision, prorated_daily
from ifd_core.settings import BudgetSettings
from warehouse.cost_ledger import LakeCostLedger
from warehouse.lake import Lake


@pytest.fixture
def gate() -> BudgetGate:
    return BudgetGate(BudgetSettings())  # $175, auto ≤ $5, approval > $10 / 50 % / 80 %


# -- the spec's TEST list -----------------------------------------------------------------------


def test_quote_3_is_auto_approved(gate: BudgetGate) -> None:
    a = gate.authorize(3.0, "historical", spent_this_month=0.0)
    assert a.decision is Decision.APPROVE
    assert "auto-approved" in a.reason and "$3.00" in a.reason
    assert a.remaining == 175.0
    assert a.post_utilization == pytest.approx(3 / 175)


def test_quote_12_requires_approval(gate: BudgetGate) -> None:
    a = gate.authorize(12.0, "historical", spent_this_month=0.0)
    assert a.decision is Decision.REQUIRE_APPROVAL
    assert a.triggers == ("above_max",)
    assert "$12.00" in a.reason and "$10.00" in a.reason


def test_month_spent_170_and_quote_4_is_deferred(gate: BudgetGate) -> None:
    a = gate.authorize(4.0, "historical", spent_this_month=170.0)
    assert a.decision is Decision.DEFER
    assert a.post_utilization == pytest.approx(174 / 175)
    assert "next month" in a.reason and "$175.00" in a.reason and "99.4 %" in a.reason


def test_quote_6_with_5_remaining_is_denied(gate: BudgetGate) -> None:
    a = gate.authorize(6.0, "historical", spent_this_month=170.0)
    assert a.decision is Decision.DENY
    assert a.remaining == 5.0
    assert "exceeds remaining" in a.reason and "$5.00 left" in a.reason


def test_prorated_179_over_30_days() -> None:
    assert prorated_daily(179.0, 2025, 6) == pytest.approx(5.9667, abs=5e-5)
    assert prorated_daily(179.0, 2025, 2) == pytest.approx(179 / 28)
    assert prorated_daily(179.0, 2024, 2) == pytest.approx(179 / 29)  # leap year


# -- boundaries ---------------------------------------------------------------------------------


def test_exactly_5_is_auto_approved(gate: BudgetGate) -> None:
    a = gate.authorize(5.0, "historical", 0.0)
    assert a.decision is Decision.APPROVE and "auto-approved" in a.reason


def test_between_5_and_10_without_trigger_is_approved(gate: BudgetGate) -> None:
    a = gate.authorize(7.5, "historical", 0.0)
    assert a.decision is Decision.APPROVE
    assert "auto-approved" not in a.reason and a.triggers == ()


def test_exactly_10_is_approved_and_a_cent_more_is_not(gate: BudgetGate) -> None:
    assert gate.authorize(10.0, "historical", 0.0).decision is Decision.APPROVE
    assert gate.authorize(10.01, "historical", 0.0).decision is Decision.REQUIRE_APPROVAL


def test_half_of_remaining_triggers_approval() -> None:
    # With the defaults the 50 % rule is always shadowed by the 80 % one, so isolate it.
    g = BudgetGate(BudgetSettings(monthly_budget=16.0))
    at_half = g.authorize(8.0, "historical", 0.0)  # exactly 50 % of the $16 left: allowed
    assert at_half.decision is Decision.APPROVE
    above = g.authorize(8.5, "historical", 0.0)
    assert above.decision is Decision.REQUIRE_APPROVAL
    assert above.triggers == ("share_of_remaining",)
    assert "50.0 % of the $16.00 remaining" in above.reason


def test_post_utilization_above_80_percent_triggers_approval(gate: BudgetGate) -> None:
    # $135 + $5 = $140 = exactly 80 %: allowed; one more cent crosses it.
    assert gate.authorize(5.0, "historical", 135.0).decision is Decision.APPROVE
    a = gate.authorize(5.0, "historical", 135.01)
    assert a.decision is Decision.REQUIRE_APPROVAL
    assert a.triggers == ("post_utilization",)
    assert "80.0 %" in a.reason


def test_post_utilization_at_95_percent_is_not_deferred(gate: BudgetGate) -> None:
    # 95 % exactly is the last allowed point (it still needs approval: it is above 80 %).
    a = gate.authorize(5.0, "historical", 161.25)
    assert a.post_utilization == pytest.approx(0.95)
    assert a.decision is Decision.REQUIRE_APPROVAL
    assert gate.authorize(5.0, "historical", 161.26).decision is Decision.DEFER


def test_spending_exactly_the_remainder_is_deferred_not_denied(gate: BudgetGate) -> None:
    a = gate.authorize(5.0, "historical", 170.0)
    assert a.decision is Decision.DEFER


def test_overspent_month_denies_everything(gate: BudgetGate) -> None:
    a = gate.authorize(0.01, "historical", 180.0)
    assert a.decision is Decision.DENY and a.remaining == -5.0
    assert "$0.00 left" in a.reason


def test_float_sums_of_cents_do_not_flip_a_decision(gate: BudgetGate) -> None:
    spent = sum([0.1] * 1700)  # 170.00000000000xx
    assert gate.authorize(5.0, "historical", spent).decision is Decision.DEFER


def test_free_request_is_approved_even_in_a_full_month(gate: BudgetGate) -> None:
    assert gate.authorize(0.0, "historical", 175.0).decision is Decision.APPROVE


def test_negative_amount_is_an_error(gate: BudgetGate) -> None:
    with pytest.raises(ValueError, match="negative"):
        gate.authorize(-1.0, "historical", 0.0)


def test_nonpositive_budget_is_an_error() -> None:
    with pytest.raises(ValueError, match="IFD_BUDGET__MONTHLY_BUDGET"):
        BudgetGate(BudgetSettings(monthly_budget=0.0))


# -- explicit approval --------------------------------------------------------------------------


def test_approval_turns_require_approval_into_approve(gate: BudgetGate) -> None:
    a = gate.authorize(12.0, "historical", 0.0, approved=True)
    assert a.decision is Decision.APPROVE
    assert "approved explicitly" in a.reason and a.triggers == ("above_max",)


def test_approval_never_overrides_defer_or_deny(gate: BudgetGate) -> None:
    assert gate.authorize(4.0, "historical", 170.0, approved=True).decision is Decision.DEFER
    assert gate.authorize(6.0, "historical", 170.0, approved=True).decision is Decision.DENY


# -- alerts -------------------------------------------------------------------------------------


def test_alerts_crossed(gate: BudgetGate) -> None:
    assert gate.alerts_crossed(0.0, 100.0) == []
    assert gate.alerts_crossed(130.0, 140.0) == [0.8]  # landing exactly on 80 % fires it
    assert gate.alerts_crossed(140.0, 150.0) == []  # already past 80 %: fires once only
    assert gate.alerts_crossed(130.0, 175.0) == [0.8, 0.95, 1.0]
    assert gate.alerts_crossed(170.0, 180.0) == [1.0]
    assert gate.alerts_crossed(175.0, 180.0) == []


# -- the lake ledger ----------------------------------------------------------------------------


def test_lake_ledger_sums_spend_types_only(tmp_path) -> None:
    ledger = LakeCostLedger(Lake(tmp_path))
    assert isinstance(ledger, CostLedger)
    jan = dt.datetime(2026, 1, 15, 12, tzinfo=dt.UTC)
    ledger.append(
        [
            {"entry_type": "historical_quote", "amount_usd": 50.0, "ts": jan},
            {"entry_type": "historical_spend", "amount_usd": 3.0, "ts": jan},
            {"entry_type": "backfill", "amount_usd": 1.5, "ts": jan},
            {"entry_type": "live_usage", "amount_usd": 0.25, "ts": jan},
            {"entry_type": "broker_commission", "amount_usd": 4.0, "ts": jan},
            {"entry_type": "exchange_fee", "amount_usd": 2.0, "ts": jan},
        ]
    )
    fee = prorated_daily(179.0, 2026, 1)  # one day of a flat licence
    ledger.append(
        [{"entry_type": "subscription_fee", "amount_usd": fee, "ts": jan, "category": "cme"}]
    )
    ledger.append(
        [{"entry_type": "historical_spend", "amount_usd": 9.0, "ts": jan.replace(month=2)}]
    )

    assert ledger.spent_in_month("2026-01") == pytest.approx(3.0 + 1.5 + 0.25 + fee)
    assert ledger.spent_in_month("2026-02") == pytest.approx(9.0)
    assert ledger.spent_in_month("2025-12") == 0.0

    rows = ledger.entries("2026-01")
    assert rows.height == 7
    assert rows["date"].unique().to_list() == [dt.date(2026, 1, 15)]
    assert rows["entry_id"].n_unique() == 7
    assert ledger.entries().height == 8


def test_lake_ledger_fills_ids_and_utc_dates(tmp_path) -> None:
    ledger = LakeCostLedger(Lake(tmp_path))
    late_new_york = dt.datetime(2026, 1, 31, 20, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    ledger.append([{"entry_type": "historical_spend", "amount_usd": 2, "ts": late_new_york}])
    row = ledger.entries().row(0, named=True)
    assert row["month"] == "2026-02" and row["date"] == dt.date(2026, 2, 1)  # UTC, not local
    assert row["ts"] == late_new_york and len(row["entry_id"]) == 32
    assert row["amount_usd"] == 2.0 and row["record_count"] is None


def test_lake_ledger_rejects_bad_entries_whole(tmp_path) -> None:
    ledger = LakeCostLedger(Lake(tmp_path))
    ok = {"entry_type": "historical_spend", "amount_usd": 1.0}
    with pytest.raises(ValueError, match="entry_type"):
        ledger.append([ok, {"entry_type": "historical_query", "amount_usd": 1.0}])
    with pytest.raises(ValueError, match="unknown fields"):
        ledger.append([{**ok, "amount": 1.0}])
    with pytest.raises(ValueError, match="amount_usd"):
        ledger.append([{"entry_type": "backfill", "amount_usd": "3"}])
    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.append([{**ok, "ts": dt.datetime(2026, 1, 1)}])
    with pytest.raises(ValueError, match="YYYY-MM"):
        ledger.spent_in_month("2026-1")
    assert ledger.entries().height == 0  # nothing of a rejected batch was written
