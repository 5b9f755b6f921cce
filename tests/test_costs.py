"""Costs (docs/operations.md §Costs): prices in settings, the cost functions, booking
into the lake ledger, the cost views and the month to date.

The prices below are test inputs, not the platform's: production prices come only from
IFD_COSTS__PRICES, verified against the provider's pricing page.
"""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest
from pydantic import ValidationError

from ifd_core.ops.budget import BudgetGate, Decision, prorated_daily
from ifd_core.ops.costs import (
    BudgetStatus,
    allocate,
    budget_status,
    cost_per_signal,
    live_usage_entry,
    marginal_data_cost,
    projection,
    subscription_entries,
    trading_fee_entries,
)
from ifd_core.settings import CostSettings, PricePeriod, Settings, get_settings, price_on
from jobs.cost_report import month_to_date
from tests.helpers import lake_fingerprint
from warehouse.cost_ledger import LakeCostLedger
from warehouse.cost_views import MACROS, VIEWS
from warehouse.lake import Lake
from warehouse.sql import query
from warehouse.tables import TABLES

JUNE = dt.date(2025, 6, 1)  # a 30-day month
LICENCE = 179.0  # the CME live licence figure the spec's tests use


def _period(day: dt.date = JUNE, **kw) -> dict:
    return {"effective_from": day.isoformat(), "source": "test input", **kw}


def settings_with(data_dir, *periods: dict, **costs) -> Settings:
    return get_settings(warehouse={"data_dir": data_dir}, costs={"prices": list(periods), **costs})


@pytest.fixture
def licence(data_dir) -> Settings:
    return settings_with(data_dir, _period(subscriptions={"cme_live_licence": LICENCE}))


def ledger_of(settings: Settings) -> LakeCostLedger:
    return LakeCostLedger(Lake(settings.data_dir), settings.costs)


def spend(ledger: LakeCostLedger, day: dt.date, amount: float, kind="historical_spend") -> None:
    ts = dt.datetime.combine(day, dt.time(15), dt.UTC)
    ledger.append([{"entry_type": kind, "amount_usd": amount, "ts": ts, "status": "spent"}])


def write_signals(lake: Lake, day: dt.date, algo: str, n: int, origin="historical", conf=0.8):
    ids = [f"{algo}-{day}-{origin}-{conf}-{i}" for i in range(n)]
    rows = [
        {"date": day, "signal_id": i, "algo": algo, "confidence": conf, "origin": origin}
        for i in ids
    ]
    df = pl.DataFrame(rows).with_columns(
        [pl.lit(None, t).alias(c) for c, t in TABLES["signals"].schema.items() if c not in rows[0]]
    )
    lake.write("signals", df, key=f"{algo}-{origin}-{conf}")


def write_engine_run(lake: Lake, day: dt.date, records: int, algos: str, origin="historical"):
    row = {"date": day, "records": records, "detectors": algos, "origin": origin}
    df = pl.DataFrame([row]).with_columns(
        [pl.lit(None, t).alias(c) for c, t in TABLES["engine_runs"].schema.items() if c not in row]
    )
    lake.write("engine_runs", df, key=f"engine-{algos.replace(',', '-')}")


# -- prices in settings ------------------------------------------------------------------------


def test_no_prices_by_default_and_nothing_is_booked(data_dir) -> None:
    s = get_settings()
    assert s.costs.prices == [] and price_on(s, dt.date(2026, 1, 1)) is None
    assert s.costs.live_streaming_budget_stop is False and s.costs.allocation == "by_records"
    ledger = ledger_of(s)
    assert ledger.book_subscriptions(dt.date(2026, 1, 31)) == []
    assert ledger.book_live_usage("run1", dt.date(2026, 1, 5), 10**12) is None
    assert ledger.entries().height == 0


def test_price_on_picks_the_period_in_force(data_dir) -> None:
    s = settings_with(
        data_dir,
        _period(dt.date(2025, 1, 1), subscriptions={"a": 100.0}),
        _period(dt.date(2025, 6, 16), subscriptions={"a": 120.0}, live_usage_per_gb=2.0),
    )
    assert price_on(s, dt.date(2024, 12, 31)) is None
    assert price_on(s, dt.date(2025, 1, 1)).subscriptions == {"a": 100.0}
    assert price_on(s, dt.date(2025, 6, 15)).live_usage_per_gb is None
    assert price_on(s, dt.date(2025, 6, 16)).subscriptions == {"a": 120.0}
    assert price_on(s.costs, dt.date(2030, 1, 1)).live_usage_per_gb == 2.0


@pytest.mark.parametrize("second", ["2025-01-01", "2024-12-01"])
def test_price_periods_must_strictly_increase(second: str) -> None:
    with pytest.raises(ValidationError, match="strictly increasing"):
        CostSettings(prices=[_period(dt.date(2025, 1, 1)), {**_period(), "effective_from": second}])


def test_a_price_period_needs_its_source_and_sane_values() -> None:
    with pytest.raises(ValidationError, match="source"):
        PricePeriod(effective_from=JUNE)
    with pytest.raises(ValidationError, match="negative"):
        PricePeriod(**_period(subscriptions={"x": -1.0}))
    with pytest.raises(ValidationError, match="must match"):
        PricePeriod(**_period(subscriptions={"cme licence": 1.0}))
    with pytest.raises(ValidationError):
        PricePeriod(**_period(live_usage_per_gb=-0.5))


def test_prices_from_the_environment_and_outside_config_version(monkeypatch) -> None:
    base = get_settings().config_version()
    prices = [_period(subscriptions={"cme_live_licence": LICENCE}, commission_per_contract=0.5)]
    monkeypatch.setenv("IFD_COSTS__PRICES", json.dumps(prices))
    s = get_settings()
    assert s.costs.prices[0].subscriptions == {"cme_live_licence": LICENCE}
    assert s.costs.prices[0].commission_per_contract == 0.5
    assert s.config_version() == base  # prices do not change signals


# -- the docs/operations.md §Costs budget gate against a ledger with booked costs ------------------------------------


def test_booked_subscriptions_count_against_the_gate(data_dir) -> None:
    # $170 of $175 spent through subscriptions alone, then the spec's quotes.
    s = settings_with(data_dir, _period(subscriptions={"feed": 170.0}))
    ledger = ledger_of(s)
    ledger.book_subscriptions(dt.date(2025, 6, 30))
    spent = ledger.spent_in_month("2025-06")
    assert spent == pytest.approx(170.0)
    gate = BudgetGate(s.budget)
    assert gate.authorize(4.0, "historical", spent).decision is Decision.DEFER
    assert gate.authorize(6.0, "historical", spent).decision is Decision.DENY
    # The next month starts at zero for the gate too.
    assert gate.authorize(3.0, "historical", ledger.spent_in_month("2025-07")).allowed


# -- subscriptions -----------------------------------------------------------------------------


def test_prorated_179_licence_adds_5_9667_per_day(licence: Settings) -> None:
    rows = subscription_entries(price_on(licence, JUNE), dt.date(2025, 6, 10))
    assert len(rows) == 1
    r = rows[0]
    assert r["entry_id"] == "sub-cme_live_licence-2025-06-10"
    assert r["entry_type"] == "subscription_fee" and r["category"] == "cme_live_licence"
    assert r["amount_usd"] == pytest.approx(5.9667, abs=5e-5)
    assert r["amount_usd"] == prorated_daily(LICENCE, 2025, 6)
    assert r["ts"] == dt.datetime(2025, 6, 10, tzinfo=dt.UTC)


def test_booking_subscriptions_twice_is_idempotent(licence: Settings) -> None:
    ledger = ledger_of(licence)
    first = ledger.book_subscriptions(dt.date(2025, 6, 30))
    assert len(first) == 30
    assert ledger.spent_in_month("2025-06") == pytest.approx(LICENCE)  # a whole month = the fee
    before = lake_fingerprint(licence.data_dir)
    assert ledger.book_subscriptions(dt.date(2025, 6, 30)) == []
    assert ledger.book_subscriptions(dt.date(2025, 6, 12)) == []
    assert lake_fingerprint(licence.data_dir) == before
    assert ledger.entries("2025-06").height == 30


def test_booking_catches_up_missed_days_across_months(licence: Settings) -> None:
    ledger = ledger_of(licence)
    assert len(ledger.book_subscriptions(dt.date(2025, 6, 10))) == 10
    later = ledger.book_subscriptions(dt.date(2025, 7, 3))  # the scheduler was down 3 weeks
    assert [r["ts"].date() for r in later][:1] == [dt.date(2025, 6, 11)]
    assert len(later) == 20 + 3
    assert ledger.spent_in_month("2025-06") == pytest.approx(LICENCE)
    assert ledger.spent_in_month("2025-07") == pytest.approx(3 * LICENCE / 31)


def test_booking_starts_at_the_first_price_and_follows_price_changes(data_dir) -> None:
    s = settings_with(
        data_dir,
        _period(dt.date(2025, 6, 15), subscriptions={"feed": 150.0}),
        _period(dt.date(2025, 6, 21), subscriptions={"feed": 180.0, "extra": 30.0}),
    )
    ledger = ledger_of(s)
    rows = ledger.book_subscriptions(dt.date(2025, 6, 30))
    assert min(r["ts"].date() for r in rows) == dt.date(2025, 6, 15)
    expected = 6 * 150 / 30 + 10 * (180 + 30) / 30
    assert ledger.spent_in_month("2025-06") == pytest.approx(expected)


def test_duplicate_entry_ids_are_counted_once(licence: Settings) -> None:
    ledger = ledger_of(licence)
    row = subscription_entries(price_on(licence, JUNE), JUNE)
    ledger.append(row)
    ledger.append(row)  # e.g. two processes booking at once under different file names
    assert ledger.spent_in_month("2025-06") == pytest.approx(LICENCE / 30)
    assert ledger.entries().height == 1
    daily = query(Lake(licence.data_dir), "SELECT sum(amount) AS a FROM cost_daily")
    assert daily["a"][0] == pytest.approx(LICENCE / 30)


# -- live usage --------------------------------------------------------------------------------


def test_live_usage_is_bytes_times_rate_per_decimal_gb(data_dir) -> None:
    s = settings_with(data_dir, _period(live_usage_per_gb=2.0))
    ledger = ledger_of(s)
    day = dt.date(2025, 6, 5)
    first = ledger.book_live_usage("run-a", day, 3_000_000_000)
    assert first["entry_id"] == "live-run-a-2025-06-05"
    assert first["amount_usd"] == pytest.approx(6.0) and first["billable_bytes"] == 3 * 10**9
    assert ledger.book_live_usage("run-a", day, 3_000_000_000) is None  # same total: nothing
    more = ledger.book_live_usage("run-a", day, 3_500_000_000)  # only the increase
    assert more["amount_usd"] == pytest.approx(1.0) and more["billable_bytes"] == 5 * 10**8
    assert ledger.book_live_usage("run-a", day, 3_500_000_000) is None
    assert ledger.spent_in_month("2025-06") == pytest.approx(7.0)


def test_flat_rate_live_books_no_usage(data_dir) -> None:
    s = settings_with(data_dir, _period(subscriptions={"cme_live_licence": LICENCE}))
    assert ledger_of(s).book_live_usage("run-a", dt.date(2025, 6, 5), 10**12) is None
    assert live_usage_entry(price_on(s, JUNE), "r", JUNE, 10**12) is None


# -- trading fees ------------------------------------------------------------------------------


def _fills(*modes: str) -> pl.DataFrame:
    ts = int(dt.datetime(2025, 6, 3, 14, 30, tzinfo=dt.UTC).timestamp() * 1e9)
    return pl.DataFrame(
        {
            "fill_id": [f"f{i}" for i in range(len(modes))],
            "mode": list(modes),
            "qty": [3] * len(modes),
            "ts": [ts + i for i in range(len(modes))],
            "algo": ["v3"] * len(modes),
            "run_id": ["r1"] * len(modes),
        }
    )


def test_only_real_money_fills_book_fees_as_two_trading_entries(data_dir) -> None:
    s = settings_with(
        data_dir, _period(commission_per_contract=0.85, exchange_fee_per_contract=0.3)
    )
    ledger = ledger_of(s)
    rows = ledger.book_trading_fees(_fills("paper", "backtest", "shadow", "live"))
    assert sorted(r["entry_type"] for r in rows) == ["broker_commission", "exchange_fee"]
    assert {r["request_id"] for r in rows} == {"f3"}  # the live fill only
    by_type = {r["entry_type"]: r["amount_usd"] for r in rows}
    assert by_type == pytest.approx({"broker_commission": 3 * 0.85, "exchange_fee": 3 * 0.3})
    assert ledger.spent_in_month("2025-06") == 0.0  # trading costs are not data spend
    assert ledger.book_trading_fees(_fills("paper", "backtest", "shadow", "live")) == []
    mc = month_to_date(Lake(s.data_dir), s, dt.date(2025, 6, 30))
    assert mc.spent == 0.0 and mc.trading_costs == pytest.approx(3 * 1.15)


def test_live_fill_without_a_configured_rate_is_refused(data_dir) -> None:
    s = settings_with(data_dir, _period(commission_per_contract=0.85))
    with pytest.raises(ValueError, match="exchange_fee_per_contract"):
        trading_fee_entries(_fills("live"), lambda d: price_on(s, d))
    assert trading_fee_entries(_fills("paper"), lambda d: None) == []  # simulated: not asked


# -- cost per signal (docs/operations.md §Costs) --------------------------------------------------------------------


def test_cost_per_signal_functions() -> None:
    assert cost_per_signal(179.0 + 6.0, 40) == pytest.approx(4.625)
    assert cost_per_signal(185.0, 30) == pytest.approx(6.1667, abs=5e-5)
    assert cost_per_signal(185.0, 0) is None
    assert marginal_data_cost(
        {"subscription_fee": 179.0, "historical_spend": 6.0, "exchange_fee": 9.0}
    ) == pytest.approx(6.0)
    assert allocate(100.0, "by_records", {"v3": 3, "v1": 1}, ["v1", "v3"]) == {
        "v1": 25.0,
        "v3": 75.0,
    }
    assert allocate(100.0, "all_to_v3", {"v3": 3, "v1": 1}, ["v1", "v3"]) == {
        "v1": 0.0,
        "v3": 100.0,
    }
    assert allocate(100.0, "all_to_v3", {"v1": 5}, ["v1"]) == {"v1": 100.0}  # v3 did not run
    assert allocate(100.0, "by_records", {}, ["v1", "v3"]) is None


@pytest.mark.parametrize(("signals", "per_signal", "meets"), [(40, 4.625, True), (30, 6.17, False)])
def test_month_with_licence_and_6_historical(licence, signals, per_signal, meets) -> None:
    lake = Lake(licence.data_dir)
    ledger = ledger_of(licence)
    ledger.book_subscriptions(dt.date(2025, 6, 30))
    spend(ledger, dt.date(2025, 6, 9), 6.0)
    spend(ledger, dt.date(2025, 6, 9), 6.0, kind="historical_quote")  # a quote is not spend
    write_signals(lake, dt.date(2025, 6, 9), "v3", signals)
    write_signals(lake, dt.date(2025, 6, 9), "v3", 25, origin="synthetic")  # never counted

    mc = month_to_date(lake, licence, dt.date(2025, 6, 30))
    assert mc.spent == pytest.approx(185.0)
    assert mc.cost_per_signal == pytest.approx(per_signal, abs=5e-3)
    assert mc.marginal_cost_per_signal == pytest.approx(6.0 / signals)
    assert (mc.cost_per_signal < mc.target_cost_per_signal) is meets
    assert mc.actionable_signals == {"v3": signals} and mc.synthetic_signals == 25
    assert mc.quoted == pytest.approx(6.0)

    view = query(lake, "SELECT * FROM cost_per_signal WHERE algo = 'all'").row(0, named=True)
    assert view["actionable_signals"] == signals
    assert view["cost_per_signal"] == pytest.approx(mc.cost_per_signal)
    assert view["marginal_cost_per_signal"] == pytest.approx(mc.marginal_cost_per_signal)


def test_signals_below_the_executors_confidence_are_not_actionable(licence) -> None:
    lake = Lake(licence.data_dir)
    write_signals(lake, dt.date(2025, 6, 9), "v3", 10, conf=0.9)
    write_signals(lake, dt.date(2025, 6, 9), "v3", 5, conf=0.4)
    strict = licence.model_copy(deep=True)
    strict.risk.min_signal_confidence = 0.5
    assert month_to_date(lake, licence, dt.date(2025, 6, 30)).actionable_signals == {"v3": 15}
    assert month_to_date(lake, strict, dt.date(2025, 6, 30)).actionable_signals == {"v3": 10}


def test_per_algorithm_allocation_by_records_and_all_to_v3(licence) -> None:
    lake = Lake(licence.data_dir)
    ledger_of(licence).book_subscriptions(dt.date(2025, 6, 30))
    write_signals(lake, dt.date(2025, 6, 9), "v3", 20)
    write_signals(lake, dt.date(2025, 6, 9), "v1", 10)
    write_engine_run(lake, dt.date(2025, 6, 9), 3_000, "v3,v1")
    write_engine_run(lake, dt.date(2025, 6, 10), 2_000, "v3")
    write_engine_run(lake, dt.date(2025, 6, 11), 9_999, "v3,v1", origin="synthetic")

    mc = month_to_date(lake, licence, dt.date(2025, 6, 30))
    assert mc.per_algo["v3"]["share"] == pytest.approx(5 / 8)
    assert mc.per_algo["v3"]["data_cost"] == pytest.approx(LICENCE * 5 / 8)
    assert mc.per_algo["v1"]["cost_per_signal"] == pytest.approx(LICENCE * 3 / 8 / 10)
    view = query(lake, "SELECT * FROM cost_per_signal WHERE algo <> 'all' ORDER BY algo")
    assert view["records_consumed"].to_list() == [3_000, 5_000]
    assert view["data_cost"].to_list() == pytest.approx([LICENCE * 3 / 8, LICENCE * 5 / 8])

    v3_only = licence.model_copy(deep=True)
    v3_only.costs.allocation = "all_to_v3"
    mc = month_to_date(lake, v3_only, dt.date(2025, 6, 30))
    assert mc.per_algo["v3"]["cost_per_signal"] == pytest.approx(LICENCE / 20)
    assert mc.per_algo["v1"]["data_cost"] == 0.0


# -- projection and status (docs/operations.md §Health, SLIs and alerts, docs/operations.md §Costs) -------------------------------------------------------


def test_projection_and_status_functions() -> None:
    assert projection(120.0, 15, 30) == 240.0
    assert budget_status(120.0, 175.0, 240.0) is BudgetStatus.CAUTION
    assert budget_status(166.25, 175.0, 170.0) is BudgetStatus.CRITICAL  # exactly 95 %
    assert budget_status(140.0, 175.0, 300.0) is BudgetStatus.WARNING  # exactly 80 %
    assert budget_status(90.0, 175.0, 175.0) is BudgetStatus.ON_TRACK  # projection = budget
    assert budget_status(80.0, 175.0, 100.0) is BudgetStatus.UNDER_BUDGET
    with pytest.raises(ValueError, match="outside"):
        projection(1.0, 31, 30)


def test_120_by_day_15_projects_240_and_is_caution(data_dir) -> None:
    s = get_settings()
    lake = Lake(s.data_dir)
    ledger = LakeCostLedger(lake)
    for day, amount in [(2, 50.0), (9, 40.0), (15, 20.0)]:
        spend(ledger, dt.date(2025, 6, day), amount)
    spend(ledger, dt.date(2025, 6, 15), 10.0, kind="backfill")
    spend(ledger, dt.date(2025, 6, 16), 99.0)  # after the report day: not month to date
    spend(ledger, dt.date(2025, 5, 31), 99.0)  # the month before
    spend(ledger, dt.date(2025, 6, 3), 7.0, kind="broker_commission")  # trading, not data

    mc = month_to_date(lake, s, dt.date(2025, 6, 15))
    assert mc.spent == pytest.approx(120.0) and mc.projection == pytest.approx(240.0)
    assert mc.status is BudgetStatus.CAUTION
    assert mc.elapsed_days == 15 and mc.days_in_month == 30
    assert mc.remaining == pytest.approx(55.0) and mc.remaining_per_day == pytest.approx(55 / 15)
    assert mc.daily_budget == pytest.approx(175 / 30)
    # The type breakdown sums to the total; trading costs stay outside it.
    assert sum(mc.by_type.values()) == pytest.approx(mc.spent)
    assert mc.by_type["historical_spend"] == pytest.approx(110.0)
    assert mc.by_type["backfill"] == pytest.approx(10.0)
    assert mc.by_day["amount"].sum() == pytest.approx(120.0)
    assert mc.trading_costs == pytest.approx(7.0)
    assert mc.entries.height == 5
    assert mc.prices_configured is False
    assert json.loads(json.dumps(mc.to_dict()))["status"] == "CAUTION"

    proj = query(lake, "SELECT * FROM cost_projection_asof(DATE '2025-06-15') ORDER BY month")
    assert proj.to_dicts() == [
        {
            "month": "2025-05",
            "spent": 99.0,
            "elapsed_days": 31,
            "days_in_month": 31,
            "projection": 99.0,
        },
        {
            "month": "2025-06",
            "spent": 120.0,
            "elapsed_days": 15,
            "days_in_month": 30,
            "projection": 240.0,
        },
    ]


def test_a_new_month_starts_at_zero(licence) -> None:
    lake = Lake(licence.data_dir)
    ledger = ledger_of(licence)
    ledger.book_subscriptions(dt.date(2025, 6, 30))
    spend(ledger, dt.date(2025, 6, 20), 100.0)
    june = month_to_date(lake, licence, dt.date(2025, 6, 30))
    assert june.status is BudgetStatus.CRITICAL and 0.95 in june.alert_levels_reached

    july = month_to_date(lake, licence, dt.date(2025, 7, 1))
    assert july.spent == 0.0 and july.alert_levels_reached == []
    assert july.status is BudgetStatus.UNDER_BUDGET
    ledger.book_subscriptions(dt.date(2025, 7, 1))
    july = month_to_date(lake, licence, dt.date(2025, 7, 1))
    assert july.spent == pytest.approx(LICENCE / 31)
    assert july.projection == pytest.approx(LICENCE)


# -- the views ---------------------------------------------------------------------------------


def test_cost_views_answer_in_duckdb(licence) -> None:
    lake = Lake(licence.data_dir)
    ledger = ledger_of(licence)
    ledger.book_subscriptions(dt.date(2025, 6, 30))
    spend(ledger, dt.date(2025, 6, 4), 6.0)
    spend(ledger, dt.date(2025, 6, 4), 9.0, kind="historical_quote")
    spend(ledger, dt.date(2025, 6, 5), 2.0, kind="exchange_fee")

    names = set(
        query(lake, "SELECT table_name FROM information_schema.tables")["table_name"].to_list()
    )
    assert set(VIEWS) <= names
    functions = query(lake, "SELECT DISTINCT function_name FROM duckdb_functions()")
    assert set(MACROS) <= set(functions["function_name"].to_list())

    daily = query(lake, "SELECT * FROM cost_daily WHERE date = DATE '2025-06-04' ORDER BY 3")
    assert daily.select("entry_type", "cost_class", "is_data_cost").rows() == [
        ("historical_quote", "quote", False),
        ("historical_spend", "data", True),
        ("subscription_fee", "data", True),
    ]
    monthly = query(lake, "SELECT * FROM cost_monthly").row(0, named=True)
    assert monthly["month"] == "2025-06"
    assert monthly["data_cost"] == pytest.approx(185.0)
    assert monthly["subscription_cost"] == pytest.approx(LICENCE)
    assert monthly["marginal_data_cost"] == pytest.approx(6.0)
    assert monthly["trading_cost"] == pytest.approx(2.0)
    assert monthly["quoted"] == pytest.approx(9.0)
    budget = query(lake, "SELECT * FROM cost_monthly_vs_budget(175)").row(0, named=True)
    assert budget["utilization"] == pytest.approx(185 / 175)
    assert budget["remaining"] == pytest.approx(-10.0)
    today = query(lake, "SELECT * FROM cost_projection")  # as of today: June 2025 is complete
    assert today["projection"].to_list() == pytest.approx([185.0])
