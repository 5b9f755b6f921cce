"""The daily Barchart cross-check (jobs/barchart_check.py) against the loopback server.

The chain served (tests/servers/barchart_http.py) and the Databento statistics written to the
lake here are SYNTHETIC. A correct chain lands exactly; every bad answer is one error with no
row in the lake; a planted disagreement is counted exactly in dq_results and fires the alert;
within the tolerances nothing fires.
"""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest
from typer.testing import CliRunner

from ifd_core.marketdata import barchart as bc
from ifd_core.units import FIXED
from jobs.barchart_check import NothingToCheck, run_check
from tests.helpers import FakeClock
from tests.servers.barchart_http import (
    DAY,
    MODES,
    barchart_server_fixture,  # noqa: F401 - provides the `barchart_server` fixture
)
from tests.test_barchart_client import CLOCK_START, EXPECTED, settings_for
from warehouse.lake import Lake
from warehouse.tables import TABLES

MARCH = dt.datetime(2026, 3, 20, 13, 30, tzinfo=dt.UTC)  # 09:30 New York
JUNE = dt.datetime(2026, 6, 18, 13, 30, tzinfo=dt.UTC)
WEEKLY = dt.datetime(2026, 3, 27, 20, 0, tzinfo=dt.UTC)  # an expiration Barchart does not list

# SYNTHETIC Databento options agreeing with the served chain: (id, expiration, strike, right,
# open interest, settlement). 20750C has no OI or settlement at Barchart (rules do not apply).
AGREEING = [
    (101, MARCH, 20750.0, "C", 300, 98.0),
    (102, MARCH, 20750.0, "P", 4105, 3.5),
    (201, JUNE, 21000.0, "C", 1520, 812.25),
    (202, JUNE, 21000.0, "P", 2210, 640.5),
    (203, JUNE, 21500.0, "C", 980, 575.75),
    (204, JUNE, 22000.0, "C", 0, 301.0),
    (301, WEEKLY, 21000.0, "C", 55, 400.0),  # out of scope: Barchart lists no such expiration
]


def _ns(t: dt.datetime) -> int:
    return int(t.timestamp()) * 10**9


def write_databento(lake: Lake, options: list[tuple], day: dt.date = DAY) -> None:
    """SYNTHETIC definitions, open interest and settlements of ``options`` on ``day``."""
    recv = _ns(dt.datetime.combine(day, dt.time(12), dt.UTC))
    common = {"date": day, "origin": "synthetic", "source_sha": "synthetic0000000"}
    defs = [
        {
            **common,
            "instrument_id": iid,
            "raw_symbol": f"SYN{iid}",
            "asset": "NQ",
            "group": "NQ",
            "security_type": "OOF",
            "instrument_class": right,
            "strike_price": int(strike * FIXED),
            "strike": strike,
            "expiration": _ns(exp),
            "underlying": "NQM6",
            "underlying_id": 9,
            "min_price_increment": 50_000_000,
            "display_factor": FIXED,
            "contract_multiplier": 1,
            "unit_of_measure_qty": 20 * FIXED,
            "tick_rule": 0,
            "currency": "USD",
            "exchange": "XCME",
            "security_update_action": "A",
            "ts_event": recv - 10**9,
            "ts_recv": recv - 10**9,
        }
        for iid, exp, strike, right, _, _ in options
    ]
    stat = {"ts_event": recv, "ts_ref": recv, "stat_flags": 1}
    oi = [
        {**common, **stat, "ts_recv": recv, "instrument_id": iid, "quantity": q}
        for iid, _, _, _, q, _ in options
        if q is not None
    ]
    settle = [
        {**common, **stat, "ts_recv": recv, "instrument_id": iid, "price": int(round(p * FIXED))}
        for iid, _, _, _, _, p in options
        if p is not None
    ]
    for table, rows in (("instruments", defs), ("open_interest", oi), ("settlements", settle)):
        lake.write(table, pl.DataFrame(rows, schema=TABLES[table].schema), key="synthetic")


def _settings(server, data_dir, **barchart):
    return settings_for(server, data_dir, cache=False, **barchart)


def _run(server, data_dir, **barchart):
    s = _settings(server, data_dir, **barchart)
    clock = FakeClock(CLOCK_START)
    return run_check(s, DAY, client=bc.make_client(s, clock=clock, sleep=clock.sleep))


def _table(data_dir, table: str) -> pl.DataFrame:
    return Lake(data_dir).scan(table).collect()


def _dq(data_dir) -> dict[str, dict]:
    dq = _table(data_dir, "dq_results").filter(pl.col("dataset") == "barchart_check")
    return {r["column"]: r for r in dq.to_dicts()}


def _alerts(data_dir) -> pl.DataFrame:
    return _table(data_dir, "alerts").filter(pl.col("rule") == "barchart.disagreements")


def test_a_correct_chain_lands_exactly_and_agrees(barchart_server, data_dir, lake):
    write_databento(lake, AGREEING)
    result = _run(barchart_server, data_dir)
    stored = _table(data_dir, "barchart_chain").sort("expiration", "strike", "right", "symbol")
    assert stored.equals(EXPECTED.select(list(TABLES["barchart_chain"].schema)))
    assert result.success and result.disagreements == 0 and result.compared == 6
    dq = _dq(data_dir)
    assert set(dq) == {"chk_oi_agrees", "chk_settlement_agrees", "chk_in_databento",
                       "chk_in_barchart"}  # fmt: skip
    assert all(r["success"] and r["unexpected_count"] == 0 for r in dq.values())
    assert dq["chk_oi_agrees"]["element_count"] == 6
    assert {r["source_file"] for r in dq.values()} == {f"barchart:NQ:{DAY}"}
    assert _alerts(data_dir).is_empty() and result.alerts == []


def test_a_refetch_replaces_the_day(barchart_server, data_dir, lake):
    write_databento(lake, AGREEING)
    _run(barchart_server, data_dir)
    barchart_server.chain[3]["openInterest"] = 4110  # Barchart revised one strike
    _run(barchart_server, data_dir, oi_tolerance=5)
    stored = _table(data_dir, "barchart_chain")
    assert stored.height == EXPECTED.height  # no doubles
    revised = stored.filter((pl.col("strike") == 20750.0) & (pl.col("right") == "P"))
    assert revised["open_interest"].to_list() == [4110]


def test_a_planted_disagreement_is_counted_exactly_and_alerts(barchart_server, data_dir, lake):
    options = [o for o in AGREEING if o[0] != 204]  # 22000C missing on Databento's side
    options = [(*o[:4], 2250, o[5]) if o[0] == 202 else o for o in options]  # OI off by 40
    options.append((205, JUNE, 21500.0, "P", 700, 520.0))  # a strike Barchart does not list
    write_databento(lake, options)
    result = _run(barchart_server, data_dir, oi_tolerance=10)
    assert not result.success
    assert result.failed == {
        "chk_oi_agrees": 1,
        "chk_settlement_agrees": 0,
        "chk_in_databento": 1,
        "chk_in_barchart": 1,
    }
    assert result.disagreements == 3
    dq = _dq(data_dir)
    assert {c: r["unexpected_count"] for c, r in dq.items()} == result.failed
    assert {r["batch_success"] for r in dq.values()} == {False}
    assert dq["chk_oi_agrees"]["element_count"] == 7  # 6 listed by both sides or one, +205
    assert "1 options whose open interest differs" in result.reason
    alerts = _alerts(data_dir)
    assert alerts.select("state", "severity", "subject", "value").rows() == [
        ("FIRING", "warning", "NQ", 3.0)
    ]
    # The chain landed too: the disagreement is with what Barchart served.
    assert _table(data_dir, "barchart_chain").height == EXPECTED.height


def test_within_the_tolerances_nothing_fires(barchart_server, data_dir, lake):
    options = [(*o[:4], o[4] + 3, o[5] + 0.05) if o[0] == 202 else o for o in AGREEING]
    write_databento(lake, options)
    result = _run(barchart_server, data_dir, oi_tolerance=3, settlement_tolerance=0.05)
    assert result.success and result.disagreements == 0
    assert _alerts(data_dir).is_empty()
    # The same data with tighter tolerances disagree on that one option.
    tight = _run(barchart_server, data_dir, oi_tolerance=2, settlement_tolerance=0.04)
    assert tight.failed["chk_oi_agrees"] == 1 and tight.failed["chk_settlement_agrees"] == 1
    assert tight.disagreements == 1


def test_a_clean_day_resolves_an_open_alert(barchart_server, data_dir, lake):
    write_databento(lake, [(*o[:4], o[4] + 100, o[5]) if o[0] == 201 else o for o in AGREEING])
    assert _run(barchart_server, data_dir).disagreements == 1
    _run(barchart_server, data_dir, oi_tolerance=100)
    assert _alerts(data_dir).sort("ts", "state")["state"].to_list() == ["FIRING", "RESOLVED"]


# Every bad answer the server can give: all its modes but the good ones ("slow" is good, late).
BAD_MODES = tuple(m for m in MODES if m not in ("ok", "slow"))


@pytest.mark.parametrize("mode", BAD_MODES)
def test_a_bad_answer_is_one_error_and_nothing_in_the_lake(barchart_server, data_dir, lake, mode):
    write_databento(lake, AGREEING)
    barchart_server.set_mode(mode)
    with pytest.raises(bc.BarchartError) as caught:
        _run(barchart_server, data_dir)
    assert "\n" not in str(caught.value)
    assert _table(data_dir, "barchart_chain").is_empty()
    assert _table(data_dir, "dq_results").is_empty()
    assert _alerts(data_dir).is_empty()


def test_a_crash_before_the_commit_leaves_nothing(barchart_server, data_dir, lake, monkeypatch):
    from ifd_core import failpoints
    from warehouse.migrations import ensure_migrated

    write_databento(lake, AGREEING)
    ensure_migrated(lake)
    monkeypatch.setattr(failpoints, "_hits", {})
    # The check's transaction stages the chain (1st), then the dq rows (2nd): fail there.
    monkeypatch.setenv("IFD_FAILPOINTS", "lake.staged=raise@2")
    with pytest.raises(Exception, match="lake.staged"):
        _run(barchart_server, data_dir)
    monkeypatch.delenv("IFD_FAILPOINTS")
    assert _table(data_dir, "barchart_chain").is_empty()
    assert _table(data_dir, "dq_results").is_empty()
    assert failpoints._hits == {"lake.staged": 2}  # it did fail where it says


def test_without_databento_statistics_the_chain_is_kept_and_nothing_compared(
    barchart_server, data_dir
):
    with pytest.raises(NothingToCheck, match="no Databento open interest or settlement"):
        _run(barchart_server, data_dir)
    assert _table(data_dir, "barchart_chain").height == EXPECTED.height
    assert _table(data_dir, "dq_results").is_empty()


def _cli(data_dir, server, monkeypatch, *args: str):
    from ifd_cli.app import app

    monkeypatch.setenv("IFD_WAREHOUSE__DATA_DIR", str(data_dir))
    monkeypatch.setenv("IFD_BARCHART__BASE_URL", server.url)
    monkeypatch.setenv("IFD_BARCHART__CACHE", "false")
    monkeypatch.setenv("IFD_RESILIENCE__RETRY__MAX_ATTEMPTS", "1")
    return CliRunner().invoke(app, ["barchart", "check", "--date", DAY.isoformat(), *args])


def test_cli_exit_codes(barchart_server, data_dir, lake, monkeypatch):
    from tests.servers.barchart_http import TEST_API_KEY

    monkeypatch.delenv("IFD_BARCHART__API_KEY", raising=False)
    assert _cli(data_dir, barchart_server, monkeypatch).exit_code == 2  # no key
    monkeypatch.setenv("IFD_BARCHART__API_KEY", TEST_API_KEY)
    assert _cli(data_dir, barchart_server, monkeypatch).exit_code == 1  # no Databento data
    write_databento(lake, AGREEING)
    done = _cli(data_dir, barchart_server, monkeypatch, "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["compared"] == 6
    barchart_server.set_mode("malformed")
    bad = _cli(data_dir, barchart_server, monkeypatch)
    assert bad.exit_code == 5 and "malformed JSON" in bad.output


@pytest.mark.slow
def test_flow_checks_and_publishes_artifacts(barchart_server, data_dir, lake, monkeypatch):
    import anyio
    from prefect.client.orchestration import get_client
    from prefect.testing.utilities import prefect_test_harness

    from flows.barchart_check import barchart_check
    from tests.servers.barchart_http import TEST_API_KEY

    options = [(*o[:4], o[4] + 50, o[5]) if o[0] == 203 else o for o in AGREEING]
    write_databento(lake, options)
    monkeypatch.setenv("IFD_WAREHOUSE__DATA_DIR", str(data_dir))
    monkeypatch.setenv("IFD_BARCHART__BASE_URL", barchart_server.url)
    monkeypatch.delenv("IFD_BARCHART__API_KEY", raising=False)
    with prefect_test_harness(server_startup_timeout=120):
        off = barchart_check(trade_date=DAY, return_state=True)  # optional: no key, skipped
        assert off.is_completed() and off.message.startswith("skipped: Barchart is not")
        assert barchart_server.count() == 0
        monkeypatch.setenv("IFD_BARCHART__API_KEY", TEST_API_KEY)
        state = barchart_check(trade_date=DAY, return_state=True)
        assert state.is_completed()
        doc = state.result()

        async def artifacts():
            async with get_client() as client:
                return await client.read_artifacts()

        arts = {a.key: a for a in anyio.run(artifacts)}
    assert doc["disagreements"] == 1 and doc["failed"]["chk_oi_agrees"] == 1
    assert {"barchart-check-rules", "barchart-check-summary"} <= set(arts)
    assert "**1 disagree**" in arts["barchart-check-summary"].data
    assert _alerts(data_dir)["state"].to_list() == ["FIRING"]
