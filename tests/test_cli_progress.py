"""Progress where work is long: the callbacks behind `ifd ingest`'s setup phase and file bar,
`ifd detect`'s engine bar, `ifd backtest`'s bar over days and `ifd demo`'s steps are called,
with counts that only grow; --quiet and a non-terminal stderr draw no bar. The market is a
small SYNTHETIC simulation (2 sessions)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ifd_cli.app import EXIT_OK, app

runner = CliRunner()


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """Two SYNTHETIC sessions ingested with both callbacks recorded."""
    from ifd_core.simulator.market import simulate_market
    from warehouse.ingest import ingest_files
    from warehouse.lake import Lake

    root = tmp_path_factory.mktemp("synthetic-progress")
    summary = simulate_market(root / "sim", 2, 11, scale=0.05)  # SYNTHETIC
    lake = Lake(root / "data")
    stages: list[str] = []
    done: list[str] = []
    report = ingest_files(
        summary.files, lake, stage=stages.append, progress=lambda r: done.append(r.path.name)
    )
    assert report.ok
    return {
        "lake": lake,
        "days": summary.days,
        "files": summary.files,
        "stages": stages,
        "done": done,
    }


def test_ingest_says_its_setup_before_the_first_file(market):
    stages, files = market["stages"], market["files"]
    setup = [s for s in stages if s.startswith("setup: ")]
    assert setup == [
        "setup: checking the warehouse schema",
        "setup: reading the files' schemas (definitions load first)",
        "setup: starting Great Expectations (the validation engine, once per process)",
    ]
    assert stages[: len(setup)] == setup  # all of it before any file
    named = stages[len(setup) :]
    assert sorted(named) == sorted(f.name for f in files)
    assert named == market["done"]  # each file is announced, then counted, in the same order
    assert "definition" in named[0]


def test_backtest_counts_its_days_up_from_zero(market):
    from ifd_core.settings import get_settings
    from jobs.backtest import run_backtest

    days = market["days"]
    calls: list[tuple[int, int]] = []
    run_backtest(
        market["lake"],
        get_settings(),
        days[0],
        days[-1],
        ("v3",),
        write=False,
        days_done=lambda d, t: calls.append((d, t)),
    )
    steps = 2 * len(days)  # each day: its detection, then its account pass
    assert calls == [(n, steps) for n in range(steps + 1)]


def test_detect_reports_the_engines_records_as_they_grow(market):
    from ifd_core.settings import get_settings
    from jobs.detect import detect_day

    seen: list[int] = []
    baseline: list = []
    run = detect_day(
        market["lake"],
        market["days"][-1],
        get_settings(),
        ("v3",),
        progress=baseline.append,
        records_done=seen.append,
    )
    assert seen and all(b > a for a, b in zip(seen, seen[1:], strict=False))
    assert seen[-1] == run.records


def test_the_demo_says_each_step_with_its_number(monkeypatch):
    """The flow's step listener is the CLI's line printer for the run it starts, and only then."""
    import flows.demo as demo_flow
    from flows.prefect_api import PrefectUnavailable
    from ifd_cli import demo as demo_cli

    heard: list[tuple[str, int, int]] = []

    def fake_run(days, seed, scale):  # the flow itself is run by tests/test_prefect_api.py
        demo_flow._step("detection of 2026-03-31", 3, 11)
        raise PrefectUnavailable("no API in this test")

    monkeypatch.setattr(demo_flow, "_run_demo_flow", fake_run)
    with pytest.raises(PrefectUnavailable):
        demo_flow.run_demo_flow(21, 7, 0.3, step=lambda *a: heard.append(a))
    assert heard == [("detection of 2026-03-31", 3, 11)]
    assert demo_flow._step_listener is None  # cleared: a later deployment run hears nothing
    lines: list[str] = []
    monkeypatch.setattr("ifd_cli.demo.note", lines.append)
    demo_cli._say_step("detection of 2026-03-31", 3, 11)
    assert lines == ["demo step 4/11: detection of 2026-03-31"]


def test_quiet_and_a_pipe_draw_no_bar_and_quiet_drops_notes(capsys):
    from ifd_cli import common

    assert runner.invoke(app, ["config", "show", "--json"]).exit_code == EXIT_OK
    assert common.progress_bar().disable  # CliRunner's stderr is no terminal
    common.note("2026-03-02: 1/2 days, 0 signals")
    assert "1/2 days" in capsys.readouterr().err
    assert runner.invoke(app, ["-q", "config", "show", "--json"]).exit_code == EXIT_OK
    assert common.progress_bar().disable
    common.note("2026-03-02: 1/2 days, 0 signals")
    assert capsys.readouterr().err == ""
