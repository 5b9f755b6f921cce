"""A new user's path: `ifd simulate`, then `ifd ingest` on its output, then SQL on the result."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ifd_cli.app import EXIT_USAGE, app

runner = CliRunner()


def test_simulate_then_ingest_then_query(tmp_path):
    out = tmp_path / "sim"
    res = runner.invoke(
        app, ["simulate", "--out", str(out), "--days", "2", "--seed", "3", "--scale", "0.2"]
    )
    assert res.exit_code == 0, res.output
    assert "SYNTHETIC" in res.output
    ingest = runner.invoke(app, ["ingest", str(out), "--json"])
    assert ingest.exit_code == 0, ingest.output + ingest.stderr
    report = json.loads(ingest.output)
    assert {f["status"] for f in report["files"]} == {"loaded"} and len(report["files"]) == 6
    assert {f["origin"] for f in report["files"]} == {"synthetic"}
    from pathlib import Path

    docs = Path(report["data_docs"])  # Great Expectations Data Docs of this ingest run
    assert docs.name == "index.html" and "ifd_mbo" in docs.read_text()
    counts = runner.invoke(
        app, ["sql", "SELECT origin, count(*) AS n FROM mbo GROUP BY 1", "--json"]
    )
    rows = json.loads(counts.output)
    assert rows[0]["origin"] == "synthetic" and rows[0]["n"] > 10_000
    again = runner.invoke(app, ["ingest", str(out)])
    assert again.exit_code == 0
    assert (
        json.loads(runner.invoke(app, ["sql", "SELECT count(*) AS n FROM mbo", "--json"]).output)[
            0
        ]["n"]
        == rows[0]["n"]
    )


def test_synthetic_files_cannot_be_ingested_as_historical(tmp_path):
    out = tmp_path / "sim"
    assert (
        runner.invoke(
            app, ["simulate", "--out", str(out), "--days", "1", "--scale", "0.1"]
        ).exit_code
        == 0
    )
    res = runner.invoke(app, ["ingest", str(out), "--origin", "historical"])
    assert res.exit_code == 1 and "marked synthetic" in res.stderr


def test_bad_simulate_arguments_are_usage_errors(tmp_path):
    res = runner.invoke(app, ["simulate", "--out", str(tmp_path), "--start", "March 2"])
    assert res.exit_code == EXIT_USAGE and "YYYY-MM-DD" in res.stderr
