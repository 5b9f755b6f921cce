"""The Prefect flow `historical_ingest` runs against a real (temporary) Prefect server."""

from __future__ import annotations

import pytest

from tests.conftest import NT
from tests.fixtures import dbn_factory as f
from warehouse.lake import Lake
from warehouse.sql import query

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_flow_ingests_a_trading_day_and_publishes_artifacts(prefect_server, tmp_path, data_dir):
    from prefect.client.orchestration import get_client

    from flows.historical_ingest import historical_ingest

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    f.definition_file(
        incoming / "glbx-mdp3-20260302.definition.dbn.zst", {"NQM6 C21000": (5001, 21000.0)}
    )
    f.mbo_file(
        incoming / "glbx-mdp3-20260302.mbo.dbn.zst", f.simple_book_rows(5001), {"NQM6 C21000": 5001}
    )
    import datetime as dt

    state = historical_ingest(
        trade_date=dt.date(2026, 3, 2), source_dir=str(incoming), return_state=True
    )
    assert state.is_completed()
    rows = state.result()
    assert [r["status"] for r in rows] == ["loaded", "loaded"]
    assert rows[0]["file"].endswith(".definition.dbn.zst")  # definitions first
    assert query(Lake(data_dir), "SELECT count(*) AS n FROM mbo")["n"][0] == 6

    import anyio

    async def artifacts():
        async with get_client() as client:
            return await client.read_artifacts()

    keys = {a.key for a in anyio.run(artifacts)}
    assert {"historical-ingest-files", "historical-ingest-summary"} <= keys


def test_flow_fails_when_a_file_is_refused(prefect_server, tmp_path):
    from flows.historical_ingest import historical_ingest

    bad = NT / "esh4-glbx-mdp3-20231224.mbo.dbn.zst"  # no definition anywhere: quarantined
    state = historical_ingest(paths=[str(bad)], return_state=True)
    assert state.is_failed()
    assert "no definition" in str(state.message) or "no definition" in repr(
        state.result(raise_on_failure=False)
    )
