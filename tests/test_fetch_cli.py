"""`ifd fetch` end to end: real Historical client, loopback TLS server, budget gate, ingest."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ifd_cli.app import EXIT_BUDGET, app
from tests.servers.historical_http import (
    TEST_API_KEY,
    historical_server_fixture,  # noqa: F401 - provides the `historical_server` fixture
    samples_available,
)
from warehouse.lake import Lake
from warehouse.sql import query

pytestmark = pytest.mark.skipif(not samples_available(), reason="Databento samples missing")
ARGS = [
    "fetch",
    "--start",
    "2020-12-28",
    "--end",
    "2020-12-29",
    "--schema",
    "definition",
    "--symbols",
    "ESH1",
]


def test_fetch_needs_approval_then_downloads_and_ingests(historical_server, monkeypatch, data_dir):
    monkeypatch.setenv("IFD_DATABENTO__API_KEY", TEST_API_KEY)
    monkeypatch.setenv("IFD_DATABENTO__HISTORICAL_GATEWAY", historical_server.url)
    historical_server.cost = 12.0
    runner = CliRunner()
    refused = runner.invoke(app, ARGS)
    assert refused.exit_code == EXIT_BUDGET
    assert "$12.00" in refused.stderr and "--approve" in refused.stderr
    assert not list((data_dir / "incoming").glob("*.dbn.zst"))

    done = runner.invoke(app, [*ARGS, "--approve"])
    assert done.exit_code == 0, done.output + done.stderr
    lake = Lake(data_dir)
    assert query(lake, "SELECT count(*) AS n FROM instruments")["n"][0] == 1
    ledger = query(lake, "SELECT entry_type, amount_usd, decision FROM cost_ledger ORDER BY ts")
    assert ledger.to_dicts() == [
        {"entry_type": "historical_quote", "amount_usd": 12.0, "decision": "require_approval"},
        {"entry_type": "historical_quote", "amount_usd": 12.0, "decision": "approve"},
        {"entry_type": "historical_spend", "amount_usd": 12.0, "decision": "approve"},
    ]
    origin = query(lake, "SELECT DISTINCT origin FROM instruments")["origin"].to_list()
    assert origin == ["historical"]
