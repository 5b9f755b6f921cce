"""The cost report: its HTML page, `ifd cost report` and the Prefect flow `cost_report`.

The prices are test inputs (IFD_COSTS__PRICES as an operator would set it), not the platform's.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from typer.testing import CliRunner

from ifd_cli.app import app
from ifd_core.ops.costs import NO_PRICES
from ifd_core.settings import get_settings
from jobs.cost_report import month_to_date
from reports.cost import write_cost_report
from warehouse.cost_ledger import LakeCostLedger
from warehouse.lake import Lake
from warehouse.sql import query

LICENCE = 179.0
PRICES = [
    {
        "effective_from": "2025-06-01",
        "subscriptions": {"cme_live_licence": LICENCE},
        "source": "test input",
    }
]


@pytest.fixture
def priced(monkeypatch) -> None:
    monkeypatch.setenv("IFD_COSTS__PRICES", json.dumps(PRICES))


def _charts(page: str) -> int:
    return len(re.findall(r'class="plotly-graph-div"', page))


def test_report_has_the_charts_and_the_ledger_rows(priced, data_dir) -> None:
    s = get_settings()
    lake = Lake(s.data_dir)
    ledger = LakeCostLedger(lake, s.costs)
    ledger.book_subscriptions(dt.date(2025, 6, 12))
    ts = dt.datetime(2025, 6, 4, 15, tzinfo=dt.UTC)
    ledger.append([{"entry_type": "historical_spend", "amount_usd": 6.0, "ts": ts}])
    mc = month_to_date(lake, s, dt.date(2025, 6, 12))
    page = write_cost_report(s.data_dir, mc).read_text()
    assert _charts(page) == 3
    for title in (
        "Data spend per day by type",
        "Month to date vs budget",
        "Cost per actionable signal",
        "Ledger rows of 2025-06",
    ):
        assert title in page
    assert "daily budget $5.83" in page
    assert "target \\u003c $5.00" in page  # the trace name, as plotly escapes it in JSON
    assert page.count("sub-cme_live_licence-2025-06-") == 12
    assert "NO PRICES CONFIGURED" not in page


def test_report_without_prices_says_so_first(data_dir) -> None:
    s = get_settings()
    mc = month_to_date(Lake(s.data_dir), s, dt.date(2025, 6, 12))
    page = write_cost_report(s.data_dir, mc).read_text()
    assert page.index("NO PRICES CONFIGURED") < page.index("plotly-graph-div")
    assert _charts(page) == 3  # empty charts still render: the page never breaks


def test_cli_cost_report_json(priced, data_dir) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["cost", "report", "--day", "2025-06-15", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["month"] == "2025-06" and doc["booked_subscription_entries"] == 15
    assert doc["spent"] == pytest.approx(LICENCE / 2)
    assert doc["projection"] == pytest.approx(LICENCE)
    assert doc["status"] == "CAUTION"  # the licence alone is above the default $175 budget
    assert doc["prices_configured"] is True
    assert (data_dir / "reports" / "cost-2025-06.html").is_file()

    again = runner.invoke(app, ["cost", "report", "--day", "2025-06-15", "--json"])
    assert json.loads(again.stdout)["booked_subscription_entries"] == 0
    assert json.loads(again.stdout)["spent"] == pytest.approx(doc["spent"])

    table = runner.invoke(app, ["cost", "report", "--day", "2025-06-15"])
    assert table.exit_code == 0 and "CAUTION" in table.stdout and "report:" in table.stdout


def test_cli_cost_report_without_prices_warns_on_stderr(data_dir) -> None:
    res = CliRunner().invoke(app, ["cost", "report", "--day", "2025-06-15", "--json"])
    assert res.exit_code == 0
    assert json.loads(res.stdout)["prices_configured"] is False
    assert NO_PRICES[:20] in res.stderr


def test_cli_cost_report_rejects_a_bad_day(data_dir) -> None:
    res = CliRunner().invoke(app, ["cost", "report", "--day", "15/06/2025"])
    assert res.exit_code == 2 and "YYYY-MM-DD" in res.stderr


@pytest.mark.slow
def test_flow_books_reports_and_publishes_artifacts(priced, data_dir) -> None:
    import anyio
    from prefect.client.orchestration import get_client
    from prefect.testing.utilities import prefect_test_harness

    from flows.cost_report import cost_report

    with prefect_test_harness(server_startup_timeout=120):
        state = cost_report(day="2025-06-30", return_state=True)
        assert state.is_completed()
        doc = state.result()

        async def artifacts():
            async with get_client() as client:
                return await client.read_artifacts()

        arts = {a.key: a for a in anyio.run(artifacts)}

    assert doc["month_end"] is True and doc["booked_subscription_entries"] == 30
    assert doc["advice"] == []  # an empty lake: nothing qualifies
    assert "## Cost advice" in arts["cost-report-summary"].data
    assert doc["spent"] == pytest.approx(LICENCE)
    assert {"cost-report-figures", "cost-report-summary", "cost-report-report"} <= set(arts)
    assert "Month-end cost report 2025-06" in arts["cost-report-summary"].data
    page = (data_dir / "reports" / "cost-2025-06.html").read_text()
    assert doc["report"].endswith("cost-2025-06.html") and _charts(page) == 3
    lake = Lake(data_dir)
    assert query(lake, "SELECT count(*) AS n FROM cost_ledger")["n"][0] == 30
