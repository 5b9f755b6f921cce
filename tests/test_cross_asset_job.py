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
    m = {"requests_per_minute": 10_000, **m}  # the throttle is tested on a fake clock elsewhere
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


# ---------------------------------------------------------------------- the optional step
def test_the_step_is_skipped_without_a_key(data_dir, lake):
    from ifd_core.settings import get_settings
    from jobs.cross_asset import run_confirmation

    ensure_migrated(lake)
    _store(lake, _signals([("a1", "v3", "BULLISH", T0, T0 + 300 * S)]))
    got = run_confirmation(get_settings(data_dir=str(data_dir)), lake, DAY)
    assert got.status == "skipped" and "IFD_MASSIVE__API_KEY" in (got.error or "")
    assert lake.scan(TABLE).collect().is_empty()


def test_a_failure_is_an_incident_and_an_outcome_not_an_exception(massive_server, data_dir, lake):
    from jobs.cross_asset import INCIDENT_KIND, run_confirmation

    ensure_migrated(lake)
    _store(lake, _signals([("a1", "v3", "BULLISH", T0, T0 + 300 * S)]))
    s = _settings(massive_server, data_dir).model_copy(deep=True)
    s.resilience.breaker.consecutive_failures = 1  # one failure opens it
    ok = run_confirmation(s, lake, DAY, run_id="r1")
    assert ok.status == "ok" and ok.summary is not None and ok.summary.episodes == 1
    assert ok.summary.requests == massive_server.count() > 0
    before = lake.scan(TABLE).collect()
    assert lake.scan("incidents").collect().is_empty()
    massive_server.set_mode("server_error")
    failed = run_confirmation(s, lake, DAY, run_id="r2")
    assert failed.status == "failed" and "HTTP 500" in (failed.error or "")
    assert lake.scan(TABLE).collect().to_dicts() == before.to_dicts()  # kept as it was
    inc = lake.scan("incidents").collect()
    mine = inc.filter(pl.col("kind") == INCIDENT_KIND)
    assert mine.height == 1 and mine["state"][0] == "open" and mine["run_id"][0] == "r2"
    assert "HTTP 500" in mine["detail"][0]
    # The breaker's opening is an incident and the breaker.open alert fires on it.
    breaker_rows = inc.filter(pl.col("kind").str.starts_with("breaker:massive:"))
    alerts = lake.scan("alerts").collect().filter(pl.col("rule") == "breaker.open")
    assert breaker_rows["state"].to_list() == ["open"]
    assert alerts["state"].to_list() == ["FIRING"] and alerts["subject"][0].startswith("massive:")


def _cli(data_dir, server, monkeypatch, *args: str):
    from typer.testing import CliRunner

    from ifd_cli.app import app

    monkeypatch.setenv("IFD_WAREHOUSE__DATA_DIR", str(data_dir))
    monkeypatch.setenv("IFD_MASSIVE__BASE_URL", server.url)
    monkeypatch.setenv("IFD_MASSIVE__TIMEOUT_S", "5")
    monkeypatch.setenv("IFD_MASSIVE__REQUESTS_PER_MINUTE", "10000")
    monkeypatch.setenv("IFD_RESILIENCE__RETRY__MAX_ATTEMPTS", "1")
    return CliRunner().invoke(app, ["crossasset", "confirm", "--date", DAY.isoformat(), *args])


def test_cli_exit_codes(massive_server, data_dir, lake, monkeypatch):
    import json

    ensure_migrated(lake)
    _store(lake, _signals([("a1", "v3", "BULLISH", T0, T0 + 300 * S)]))
    monkeypatch.delenv("IFD_MASSIVE__API_KEY", raising=False)
    assert _cli(data_dir, massive_server, monkeypatch).exit_code == 2  # no key
    assert massive_server.count() == 0
    monkeypatch.setenv("IFD_MASSIVE__API_KEY", TEST_API_KEY)
    done = _cli(data_dir, massive_server, monkeypatch, "--json")
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    assert doc["status"] == "ok" and doc["summary"]["episodes"] == 1
    assert doc["summary"]["requests"] == massive_server.count()
    massive_server.set_mode("auth")
    bad = _cli(data_dir, massive_server, monkeypatch)
    assert bad.exit_code == 5 and "not authorised" in bad.output


# ---------------------------------------------------------------------- where it shows
def _confirmation_row(episode_id: str, same: float, opposite: float) -> pl.DataFrame:
    """A hand-built SYNTHETIC row of cross_asset_confirmations for DAY."""
    from warehouse.tables import conform

    return conform(
        TABLE,
        pl.DataFrame(
            {
                "date": [DAY],
                "episode_id": [episode_id],
                "view": ["BULLISH"],
                "algo": ["v3"],
                "trades": [3],
                "same_premium": [same],
                "opposite_premium": [opposite],
                "confirmation": [same / (same + opposite)],
                "origin": ["massive"],
                "start_ns": [T0],
                "end_ns": [T0 + 300 * S],
                "bullish_premium": [same],
                "bearish_premium": [opposite],
                "unsigned_premium": [0.0],
                "net_premium": [same - opposite],
                "underlyings": ["QQQ,NDX"],
                "source_sha": ["synthetic"],
            }
        ),
    )


def test_the_report_and_detect_json_show_stored_confirmations_only(data_dir, lake):
    from ifd_cli.detect import with_cross_asset
    from reports.detection import NO_CROSS_ASSET, cross_asset_section, day_signals

    ensure_migrated(lake)
    _store(
        lake,
        _signals(
            [
                ("a1", "v3", "BULLISH", T0, T0 + 300 * S),
                ("b1", "v3", "BEARISH", T0 + 600 * S, T0 + 900 * S),
                ("c1", "v1", "BEARISH", T0, T0 + 300 * S),
            ]
        ),
    )
    lake.replace_day(TABLE, DAY, _confirmation_row("ep-a", 3000.0, 1000.0), "massive")
    page = cross_asset_section(lake, DAY, day_signals(lake, DAY))  # the report's section
    assert "Cross-asset confirmation" in page and "ep-a" in page and "0.75" in page
    assert "3000" in page and "1000" in page
    assert NO_CROSS_ASSET in page.split("ep-b", 1)[1].split("</tr>", 1)[0]  # ep-b has no row
    rows = [
        {"algo": "v3", "episode_id": "ep-a"},
        {"algo": "v3", "episode_id": "ep-b"},
        {"algo": "v1", "episode_id": "ep-c"},
    ]
    got = with_cross_asset(lake, DAY, rows)
    assert got[0]["cross_asset"] == {
        "status": "stored",
        "same_premium": 3000.0,
        "opposite_premium": 1000.0,
        "confirmation": 0.75,
    }
    assert got[1]["cross_asset"] == {"status": "no cross-asset data"}
    assert "cross_asset" not in got[2]
