"""The detection report and the data-quality report on a small SYNTHETIC lake, and the Prefect
flows that publish them (`detection`; `historical_ingest`'s DQ artifacts).

The lake: 4 simulated sessions at a low scale. Baselines look back 3 sessions (2 samples) and
v1's thresholds are lowered, test inputs set as an operator would (IFD_ANALYSIS__...), so both
algorithms raise signals on the last day within seconds. Every expected number is read back
from the lake, never written into the test.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import polars as pl
import pytest

from ifd_core.settings import get_settings
from ifd_core.simulator.market import simulate_market
from jobs.detect import detect_day
from reports.detection import (
    HEATMAP_TITLE,
    SIGNALS_TITLE,
    pressure_grid,
    underlying_prices,
    write_detection_report,
)
from reports.dq import DQ_CHART_TITLE, DQ_TABLE_TITLE, write_dq_report
from tests.fixtures import dbn_factory as f
from warehouse.ingest import ingest_files
from warehouse.lake import Lake
from warehouse.sql import query

pytestmark = pytest.mark.slow

TUNING = {
    "IFD_ANALYSIS__BASELINE_MIN_SAMPLES": "2",
    "IFD_ANALYSIS__V3__LOOKBACK_DAYS": "3",
    "IFD_ANALYSIS__V1__MIN_VOL_OI_RATIO": "0.1",
    "IFD_ANALYSIS__V1__MIN_VOLUME": "100",
    "IFD_ANALYSIS__V1__MIN_DOLLAR_SIZE": "10000",
}
BANNER = "SYNTHETIC DATA: simulated market"


def _environment(mp: pytest.MonkeyPatch, data_dir: Path) -> None:
    """Only the test's IFD_ settings: the data root and the tuning above."""
    for key in list(os.environ):
        if key.startswith("IFD_"):
            mp.delenv(key)
    mp.setenv("IFD_WAREHOUSE__DATA_DIR", str(data_dir))
    for k, v in TUNING.items():
        mp.setenv(k, v)
    mp.chdir(data_dir.parent)  # no developer .env


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("detection")
    summary = simulate_market(root / "sim", 4, 23, scale=0.05)
    lake = Lake(root / "data")
    ingest = ingest_files(summary.files, lake)
    assert ingest.ok
    day = summary.days[-1]
    with pytest.MonkeyPatch.context() as mp:
        _environment(mp, lake.root)
        detect_day(lake, day, get_settings(), ("v3", "v1"))
    page = write_detection_report(lake, lake.root, day)
    return {"lake": lake, "day": day, "days": summary.days, "page": page, "run_id": ingest.run_id}


@pytest.fixture(scope="module")
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _artifacts(state) -> dict:
    """The artifacts of one flow run, by key."""
    import anyio
    from prefect.client.orchestration import get_client

    async def read():
        async with get_client() as client:
            return await client.read_artifacts()

    run_id = state.state_details.flow_run_id
    return {a.key: a for a in anyio.run(read) if a.flow_run_id == run_id}


def _linked_file(artifact) -> Path:
    """The file a link artifact points at ("[text](file:///...)")."""
    uri = re.fullmatch(r"\[.*\]\((file://.+)\)", artifact.data).group(1)
    return Path(unquote(urlparse(uri).path))


def _copy(world, tmp_path: Path) -> Lake:
    """The world's data root copied, so a flow's re-detection leaves the module's lake alone."""
    shutil.copytree(world["lake"].root, tmp_path / "copy")
    return Lake(tmp_path / "copy")


def _table_rows(page: str, title_prefix: str) -> list[str]:
    """The body rows (<tr>…</tr>) of the table under the <h2> that starts with title_prefix."""
    start = page.index(f"<h2>{title_prefix}")
    table = page[start : page.index("</table>", start)]
    rows = re.findall(r"<tr>(.*?)</tr>", table)[1:]
    return [re.sub(r"<td [^>]*>", "<td>", r) for r in rows]  # numbers carry class="num"


def _lake_signals(lake: Lake, day: dt.date) -> pl.DataFrame:
    return query(
        lake,
        "SELECT signal_id, algo, direction, raw_symbol, label FROM signals_with_outcomes "
        "WHERE date = ?",
        [day],
    )


# ---------------------------------------------------------------------- detection report
def test_report_has_its_charts_and_every_signal_of_the_lake(world) -> None:
    lake, day, path = world["lake"], world["day"], world["page"]
    assert path == lake.root / "reports" / f"detection-{day}.html" and path.is_file()
    page = path.read_text()
    assert len(re.findall(r'class="plotly-graph-div"', page)) == 2
    for title in (f"{SIGNALS_TITLE} on {day}", f"{HEATMAP_TITLE} on {day}", "Signals (v3, v1)"):
        assert title in page
    # offline: plotly.js beside the page, nothing from a CDN
    assert '<script src="plotly.min.js">' in page and "cdn.plot.ly" not in page
    assert (path.parent / "plotly.min.js").stat().st_size > 1_000_000

    sig = _lake_signals(lake, day)
    assert set(sig["algo"]) == {"v3", "v1"}, "the scenario should give signals of both"
    rows = _table_rows(page, "Signals (v3, v1)")
    assert len(rows) == sig.height
    for r in sig.iter_rows(named=True):
        row = next(x for x in rows if f"<td>{r['signal_id']}</td>" in x)
        assert f"<td>{r['raw_symbol']}</td>" in row and f"<td>{r['algo']}</td>" in row
        assert f"<td>{r['label'] or 'not labelled'}</td>" in row
        assert f"id {r['signal_id']}" in page  # the marker's hover text
    # one marker trace per algorithm and direction, named with its count
    for (algo, direction), part in sig.group_by(["algo", "direction"]):
        assert f'"name":"{algo} {direction} ({part.height})"' in page


def test_report_says_synthetic_before_any_number(world) -> None:
    page = world["page"].read_text()
    assert BANNER in page
    assert page.index(BANNER) < page.index("plotly-graph-div")
    origins = query(world["lake"], "SELECT DISTINCT origin FROM mbo WHERE date = ?", [world["day"]])
    assert origins["origin"].to_list() == ["synthetic"]


def test_underlying_line_is_the_last_trade_of_each_minute(world) -> None:
    lake, day = world["lake"], world["day"]
    uid = query(lake, "SELECT DISTINCT underlying_id FROM signals WHERE date = ?", [day])
    ids = uid["underlying_id"].to_list()
    line = underlying_prices(lake, day, ids)
    expected = (
        lake.scan("trades")
        .filter((pl.col("date") == day) & pl.col("instrument_id").is_in(ids))
        .collect()
        .sort("ts_event", "ts_recv", "sequence")
        .group_by(
            pl.col("instrument_id"),
            (pl.col("ts_event") // 60_000_000_000).alias("m"),
            maintain_order=True,
        )
        .agg(pl.col("ts_event").last(), (pl.col("price").last() * 1e-9).alias("price"))
        .sort("instrument_id", "ts_event")
    )
    assert expected.height > 10
    assert line["source"].unique().to_list() == ["trades"]
    assert line["ts"].to_list() == expected["ts_event"].cast(pl.Int64).to_list()
    assert line["price"].to_list() == pytest.approx(expected["price"].to_list())
    symbol = query(
        lake, "SELECT DISTINCT raw_symbol FROM instruments WHERE instrument_id = ?", [ids[0]]
    )
    assert f"{symbol['raw_symbol'][0]} (last trade per minute)" in world["page"].read_text()


def test_heatmap_is_net_signed_volume_per_right_strike_and_window(world) -> None:
    lake, day = world["lake"], world["day"]
    grid = pressure_grid(lake, day)
    w = lake.scan("pressure_windows").filter(pl.col("date") == day).collect()
    expected = (
        w.filter(pl.col("right").is_in(["C", "P"]))
        .group_by("right", "strike", "window_start")
        .agg((pl.col("buy_volume").sum() - pl.col("sell_volume").sum()).alias("net"))
        .sort("right", "strike", "window_start")
    )
    assert grid.height == expected.height > 0
    assert grid["net"].to_list() == expected["net"].to_list()
    assert set(grid["right"]) == {"C", "P"}
    page = world["page"].read_text()
    assert "Calls: net contracts bought" in page and "Puts: net contracts bought" in page


def test_a_day_without_signals_still_renders_and_says_so(world) -> None:
    lake, day = world["lake"], world["days"][0]  # windows exist (baselines), no detection ran
    assert _lake_signals(lake, day).height == 0
    page = write_detection_report(lake, lake.root, day).read_text()
    assert f"No signal of v3, v1 on {day}" in page
    assert len(re.findall(r'class="plotly-graph-div"', page)) == 2 and BANNER in page


# ---------------------------------------------------------------------- data-quality report
def test_dq_report_has_one_row_per_expectation_of_the_run(world) -> None:
    lake, run_id = world["lake"], world["run_id"]
    path = write_dq_report(lake, lake.root, run_id)
    assert path == lake.root / "reports" / f"dq-{run_id}.html"
    page = path.read_text()
    assert BANNER in page and DQ_CHART_TITLE in page
    expected = query(
        lake,
        'SELECT dataset, expectation, "column", count(*) AS batches, '
        "sum(unexpected_count) AS unexpected FROM dq_results WHERE run_id = ? GROUP BY ALL",
        [run_id],
    )
    assert expected.height > 5
    rows = _table_rows(page, DQ_TABLE_TITLE)
    assert len(rows) == expected.height
    for r in expected.iter_rows(named=True):
        assert any(
            f"<td>{r['dataset']}</td><td>{r['expectation']}</td><td>{r['column']}</td>"
            f"<td>{r['batches']}</td>" in x
            for x in rows
        ), r
    assert "All expectations passed" in page


def test_dq_report_shows_what_a_run_quarantined(data_dir, tmp_path) -> None:
    lake = Lake(data_dir)
    good = f.definition_file(
        tmp_path / "glbx-mdp3-20260302.definition.dbn.zst", {"NQM6 C21000": (5001, 21000.0)}
    )
    bad = f.mbo_file(  # instrument 5002 has no definition: quarantined
        tmp_path / "glbx-mdp3-20260302.mbo.dbn.zst", f.simple_book_rows(5002), {"X": 5002}
    )
    report = ingest_files([good, bad], lake)
    assert [r.status for r in report.files] == ["loaded", "quarantined"]
    page = write_dq_report(lake, data_dir, report.run_id).read_text()
    assert "Failed expectations" in page and "Quarantined files (1)" in page
    q = _table_rows(page, "Expectations of the quarantined files")
    failing = [r for r in report.files[1].dq if not r["success"]]
    assert failing
    for r in failing:  # one batch, none passed
        assert any(f"<td>{r['column']}</td><td>1</td><td>0</td>" in x for x in q), r
    stored = query(
        lake,
        'SELECT count(*) AS n FROM (SELECT DISTINCT dataset, expectation, "column" '
        "FROM dq_results WHERE run_id = ?)",
        [report.run_id],
    )
    assert len(_table_rows(page, DQ_TABLE_TITLE)) == stored["n"][0] > 0
    assert BANNER not in page  # factory files are not synthetic-marked: no banner


# ---------------------------------------------------------------------- flows
def test_detection_flow_publishes_summary_signals_and_report(
    world, prefect_server, tmp_path
) -> None:
    from flows.detection import detection

    lake, day = _copy(world, tmp_path), world["day"]
    with pytest.MonkeyPatch.context() as mp:
        _environment(mp, lake.root)
        state = detection(return_state=True)  # default day: the last date with MBO data
        assert state.is_completed(), state.message
        doc = state.result()
    arts = _artifacts(state)
    sig = _lake_signals(lake, day)
    assert sig.height == _lake_signals(world["lake"], day).height  # same data, same signals
    assert doc["day"] == day.isoformat() and doc["synthetic"] is True
    assert doc["signals"] == {a: sig.filter(pl.col("algo") == a).height for a in ("v3", "v1")}
    assert {"detection-summary", "detection-signals", "detection-report"} <= set(arts)
    md = arts["detection-summary"].data
    assert md.index("SYNTHETIC") < md.index("signal")
    table = arts["detection-signals"].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert sorted(r["signal_id"] for r in rows) == sorted(sig["signal_id"].to_list())
    report = _linked_file(arts["detection-report"])
    assert report == Path(doc["report"]).resolve() and report.is_file()
    assert report.parent == lake.root / "reports"
    page = report.read_text()
    assert BANNER in page and all(s in page for s in sig["signal_id"])


def test_detection_flow_one_algorithm(world, prefect_server, tmp_path) -> None:
    from flows.detection import detection

    lake, day = _copy(world, tmp_path), world["day"]
    with pytest.MonkeyPatch.context() as mp:
        _environment(mp, lake.root)
        doc = detection(day=day, algo="v3")
    assert set(doc["signals"]) == {"v3"}
    page = Path(doc["report"]).read_text()
    assert Path(doc["report"]).name == f"detection-{day}-v3.html"
    v1 = _lake_signals(lake, day).filter(pl.col("algo") == "v1")
    assert v1.height > 0 and all(s not in page for s in v1["signal_id"])


def test_a_massive_failure_does_not_fail_detection(world, prefect_server, tmp_path) -> None:
    # A key, and a host that never answers: the cross-asset step fails, the flow completes, the
    # signals stand, and the failure is an incident.
    from flows.detection import detection
    from jobs.cross_asset import INCIDENT_KIND

    lake, day = _copy(world, tmp_path), world["day"]
    with pytest.MonkeyPatch.context() as mp:
        _environment(mp, lake.root)
        mp.setenv("IFD_MASSIVE__API_KEY", "k-test")
        mp.setenv("IFD_MASSIVE__BASE_URL", "https://127.0.0.1:1")
        mp.setenv("IFD_RESILIENCE__RETRY__MAX_ATTEMPTS", "1")
        state = detection(day=day, algo="v3", return_state=True)
        assert state.is_completed(), state.message
        doc = state.result()
    assert doc["cross_asset"] == "failed" and doc["signals"]["v3"] > 0
    assert _lake_signals(lake, day).filter(pl.col("algo") == "v3").height == doc["signals"]["v3"]
    inc = lake.scan("incidents").collect().filter(pl.col("kind") == INCIDENT_KIND)
    assert inc.height == 1 and "cannot reach" in inc["detail"][0]


def test_historical_ingest_publishes_dq_table_and_report(prefect_server, data_dir, tmp_path):
    from flows.historical_ingest import historical_ingest

    sim = simulate_market(tmp_path / "sim", 1, 5, scale=0.02)
    state = historical_ingest(paths=[str(p) for p in sim.files], return_state=True)
    assert state.is_completed(), state.message
    rows = state.result()
    run_ids = sorted({r["run_id"] for r in rows})
    assert len(run_ids) == 1  # one ingest run for the flow run, its files side by side or not
    arts = _artifacts(state)
    assert {"historical-ingest-files", "historical-ingest-summary"} <= set(arts)
    assert {"historical-ingest-dq", "historical-ingest-dq-report"} <= set(arts)
    lake = Lake(data_dir)
    expected = query(
        lake,
        'SELECT DISTINCT dataset, expectation, "column" FROM dq_results '
        "WHERE list_contains(?, run_id)",
        [run_ids],
    )
    table = arts["historical-ingest-dq"].data
    dq = json.loads(table) if isinstance(table, str) else table
    assert len(dq) == expected.height > 0
    assert {(r["dataset"], r["expectation"], r["column"]) for r in dq} == set(expected.iter_rows())
    report = _linked_file(arts["historical-ingest-dq-report"])
    assert report.parent == data_dir.resolve() / "reports" and report.is_file()
    page = report.read_text()
    assert BANNER in page and len(_table_rows(page, DQ_TABLE_TITLE)) == expected.height
    assert "Data-quality report" in arts["historical-ingest-summary"].data
