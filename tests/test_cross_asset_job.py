"""jobs/cross_asset.py: a day's v3 episodes confirmed from the loopback Massive server.

SYNTHETIC signals (two v3 episodes, one v1 signal that must be ignored) and the SYNTHETIC market
of tests/servers/massive_http.py; the expected premiums are summed by hand from that tape.
"""

from __future__ import annotations

import polars as pl
import pytest

from ifd_core.marketdata import massive_options as mo
from jobs.cross_asset import TABLE, confirm_day, merged_windows
from tests.helpers import ONE_ATTEMPT, loopback_settings
from tests.servers.massive_http import (
    DAY,
    T0,
    TEST_API_KEY,
    S,
    massive_server_fixture,  # noqa: F401 - provides the `massive_server` fixture
)
from warehouse.migrations import ensure_migrated
from warehouse.tables import TABLES


def _settings(server, data_dir, **m):
    return loopback_settings("massive", TEST_API_KEY, server, data_dir, resilience=ONE_ATTEMPT, **m)


def _signals(rows: list[tuple[str, str, str, int, int]]) -> pl.DataFrame:
    """SYNTHETIC signals: (signal_id, algo, view, window_start, window_end) of episode
    ``ep-<signal_id[0]>``, NQ at 19 650."""
    schema = TABLES["signals"].schema
    data = {
        "date": [DAY] * len(rows),
        "signal_id": [r[0] for r in rows],
        "algo": [r[1] for r in rows],
        "view": [r[2] for r in rows],
        "window_start": [r[3] for r in rows],
        "window_end": [r[4] for r in rows],
        "decision_ts": [r[4] for r in rows],
        "episode_id": [f"ep-{r[0][0]}" for r in rows],
        "underlying_price": [19650.0] * len(rows),
    }
    return pl.DataFrame(
        {c: data.get(c, [None] * len(rows)) for c in schema}, schema=schema, strict=False
    )


def _store(lake, signals: pl.DataFrame) -> None:
    lake.write("signals", signals, "test-signals")


def test_episodes_are_confirmed_by_hand(massive_server, data_dir, lake):
    ensure_migrated(lake)
    _store(
        lake,
        _signals(
            [
                ("a1", "v3", "BULLISH", T0, T0 + 150 * S),
                ("a2", "v3", "BULLISH", T0 + 150 * S, T0 + 300 * S),
                ("b1", "v3", "BEARISH", T0 + 60 * S, T0 + 120 * S),
                ("c1", "v1", "BEARISH", T0 + 3600 * S, T0 + 3900 * S),  # not v3: ignored
            ]
        ),
    )
    s = _settings(massive_server, data_dir)
    summary = confirm_day(s, lake, DAY)
    assert (summary.episodes, summary.windows) == (2, 1)  # b's minutes lie inside a's
    rows = {r["episode_id"]: r for r in lake.scan(TABLE).collect().iter_rows(named=True)}
    assert set(rows) == {"ep-a", "ep-b"}
    a, b = rows["ep-a"], rows["ep-b"]
    # ep-a, [T0, T0 + 300 s), BULLISH. Bullish: QQQ C bought 2500, NDX C bought 12200, NDX P sold
    # 11400, QQQ P sold 300, QQQ C bought 540 = 26940; bearish: QQQ P bought 880, QQQ C sold
    # 1200 = 2080; unsigned: NDX P 4000 (no quote yet), QQQ C 980 (inside) = 4980.
    assert (a["trades"], a["bullish_premium"], a["bearish_premium"]) == (9, 26940.0, 2080.0)
    assert (a["unsigned_premium"], a["same_premium"], a["net_premium"]) == (
        4980.0,
        26940.0,
        24860.0,
    )
    assert a["confirmation"] == pytest.approx(26940 / 29020)
    # ep-b, [T0 + 60 s, T0 + 120 s), BEARISH: NDX P sold 11400 and QQQ P sold 300 (bullish),
    # QQQ C sold 1200 (bearish).
    assert (b["trades"], b["same_premium"], b["opposite_premium"]) == (3, 1200.0, 11700.0)
    assert b["confirmation"] == pytest.approx(1200 / 12900)
    assert (a["origin"], a["algo"], a["underlyings"]) == ("massive", "v3", "QQQ,NDX")
    # Strike bands: QQQ around its last trade before T0 (478.10), NDX around NQ's 19 650.
    bands = {
        r.params["underlying_ticker"]: float(r.params["strike_price.gte"])
        for r in massive_server.requests
        if "underlying_ticker" in r.params
    }
    assert bands == {
        "QQQ": pytest.approx(478.10 * 0.97),
        "NDX": pytest.approx(19650 * 0.97),
    }
    # Run again: the same rows, not twice as many (trades and confirmations are replaced).
    confirm_day(s, lake, DAY)
    again = lake.scan(TABLE).collect().sort("episode_id")
    assert again.drop("source_sha").to_dicts() == (
        pl.DataFrame([rows["ep-a"], rows["ep-b"]]).drop("source_sha").to_dicts()
    )


def test_a_failed_fetch_leaves_the_days_confirmations_as_they_were(massive_server, data_dir, lake):
    ensure_migrated(lake)
    _store(lake, _signals([("a1", "v3", "BULLISH", T0, T0 + 300 * S)]))
    s = _settings(massive_server, data_dir)
    confirm_day(s, lake, DAY)
    before = lake.scan(TABLE).collect()
    massive_server.set_mode("server_error")
    with pytest.raises(mo.MassiveTransient):
        confirm_day(s, lake, DAY)
    assert lake.scan(TABLE).collect().to_dicts() == before.to_dicts()


def test_merged_windows_floor_ceil_and_join():
    spans = pl.DataFrame(
        {
            "first_window_start": [T0 + 30 * S, T0 + 100 * S, T0 + 600 * S],
            "last_window_end": [T0 + 90 * S, T0 + 200 * S, T0 + 660 * S],
        }
    )
    # [T0, T0+120) and [T0+60, T0+240) overlap: one window; [T0+600, T0+660) apart.
    assert merged_windows(spans) == [(T0, T0 + 240 * S), (T0 + 600 * S, T0 + 660 * S)]
