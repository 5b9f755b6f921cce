"""Massive's trades into the lake (jobs/massive_options.py) against the loopback server.

A good fetch is one commit of ``massive_option_trades`` with origin massive, readable through the
catalog view; a bad answer anywhere in the window writes nothing; the same window fetched again
replaces its rows. The market served is SYNTHETIC (tests/servers/massive_http.py).
"""

from __future__ import annotations

import polars as pl
import pytest

from ifd_core.marketdata import massive_options as mo
from jobs.massive_options import TABLE, fetch_window
from tests.helpers import ONE_ATTEMPT, loopback_settings
from tests.servers.massive_http import (
    DAY,
    T0,
    TEST_API_KEY,
    S,
    massive_server_fixture,  # noqa: F401 - provides the `massive_server` fixture
)
from warehouse.migrations import ensure_migrated
from warehouse.sql import connect_read_only
from warehouse.tables import TABLES


def _settings(server, data_dir, **m):
    m = {"requests_per_minute": 10_000, **m}  # the throttle is tested on a fake clock elsewhere
    return loopback_settings("massive", TEST_API_KEY, server, data_dir, resilience=ONE_ATTEMPT, **m)


def test_a_window_lands_as_one_table_with_its_origin(massive_server, data_dir, lake):
    ensure_migrated(lake)
    s = _settings(massive_server, data_dir)
    summary = fetch_window(s, lake, T0, T0 + 300 * S)
    assert summary.trades == 9 and summary.contracts == 4
    rows = lake.scan(TABLE).collect()
    assert rows.schema == TABLES[TABLE].pl_schema
    assert rows.height == 9 and set(rows["origin"]) == {"massive"}
    assert set(rows["date"]) == {DAY} and set(rows["source_sha"]) == {summary.source_sha}
    con = connect_read_only(lake)
    try:
        got = con.execute(
            f"SELECT aggressor, count(*), sum(premium) FROM {TABLE} GROUP BY 1 ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    # By hand from the SYNTHETIC tape: B 2500 + 880 + 12200 + 540; S 11400 + 1200 + 300;
    # N 4000 + 980.
    assert [(a, n, round(p, 6)) for a, n, p in got] == [
        ("B", 4, 16120.0),
        ("N", 2, 4980.0),
        ("S", 3, 12900.0),
    ]
    again = fetch_window(s, lake, T0, T0 + 300 * S)  # the same window: replaced, not doubled
    assert again.trades == 9 and lake.scan(TABLE).collect().height == 9


@pytest.mark.parametrize("mode", ["malformed_page2", "rate_limit", "wrong_types", "auth"])
def test_a_bad_answer_writes_nothing(massive_server, data_dir, lake, mode):
    ensure_migrated(lake)
    massive_server.set_mode(mode)
    s = _settings(massive_server, data_dir, page_limit=1)
    with pytest.raises(mo.MassiveError):
        fetch_window(s, lake, T0, T0 + 300 * S)
    assert lake.files(TABLE) == [] or lake.scan(TABLE).collect().height == 0


def test_a_window_that_lost_its_trades_loses_its_rows(massive_server, data_dir, lake):
    ensure_migrated(lake)
    s = _settings(massive_server, data_dir)
    fetch_window(s, lake, T0, T0 + 300 * S)
    massive_server.trades = {k: [] for k in massive_server.trades}  # e.g. all busted later
    summary = fetch_window(s, lake, T0, T0 + 300 * S)
    assert summary.trades == 0
    assert lake.scan(TABLE).collect().height == 0
    assert isinstance(lake.scan(TABLE).collect(), pl.DataFrame)
