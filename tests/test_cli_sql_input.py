"""`ifd sql` as people use it: the query from a file or standard input, a leading `--` comment,
DuckDB's whole refusal, and floats rounded in the table only."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ifd_cli.app import EXIT_OK, EXIT_USAGE, app
from warehouse.lake import Lake
from warehouse.migrations import ensure_migrated

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
QUERY = "-- a comment first\nSELECT 42 AS answer"
FLOATS = "SELECT 0.7960924868198468::DOUBLE AS share, 8181.000000000001::DOUBLE AS pnl"


def _ok(args, stdin=None):
    res = runner.invoke(app, args, input=stdin)
    assert res.exit_code == EXIT_OK, res.output + res.stderr
    return res.stdout


def test_query_from_a_file(data_dir, tmp_path):
    path = tmp_path / "q.sql"
    path.write_text(QUERY)
    assert "42" in _ok(["sql", "--file", str(path), "--csv"])
    assert "42" in _ok(["sql", "-f", str(path), "--csv"])


def test_query_from_standard_input(data_dir):
    assert _ok(["sql", "-", "--csv"], stdin=QUERY) == "answer\n42\n"
    assert _ok(["sql", "--file", "-", "--csv"], stdin=QUERY) == "answer\n42\n"


def test_the_readme_example_starting_with_a_comment_runs(data_dir):
    ensure_migrated(Lake(data_dir))
    text = (ROOT / "examples" / "signals_outcomes_windows.sql").read_text()
    assert text.lstrip().startswith("--")
    _ok(["sql", text, "--csv"])
    _ok(["sql", "--file", str(ROOT / "examples" / "signals_outcomes_windows.sql"), "--csv"])


def test_query_and_file_together_or_neither_are_usage_errors(data_dir, tmp_path):
    path = tmp_path / "q.sql"
    path.write_text(QUERY)
    both = runner.invoke(app, ["sql", "SELECT 1", "--file", str(path)])
    assert both.exit_code == EXIT_USAGE and "not both" in both.stderr
    neither = runner.invoke(app, ["sql"])
    assert neither.exit_code == EXIT_USAGE and "no query" in neither.stderr
    missing = runner.invoke(app, ["sql", "--file", str(tmp_path / "nope.sql")])
    assert missing.exit_code == EXIT_USAGE and "cannot read --file" in missing.stderr


def test_duckdbs_whole_message_is_shown(data_dir):
    ensure_migrated(Lake(data_dir))
    column = runner.invoke(app, ["sql", "SELECT sigal_id FROM signals"])
    assert column.exit_code == EXIT_USAGE
    assert 'Referenced column "sigal_id" not found' in column.stderr
    assert "Candidate bindings:" in column.stderr and '"signal_id"' in column.stderr
    table = runner.invoke(app, ["sql", "SELECT 1 FROM signalz"])
    assert table.exit_code == EXIT_USAGE and 'Did you mean "signals"' in table.stderr


def test_floats_are_rounded_in_the_table_only(data_dir):
    table = _ok(["sql", FLOATS])
    assert "0.796092" in table and "0.7960924868198468" not in table
    assert "8181.0" in table and "8181.000000000001" not in table
    assert _ok(["sql", FLOATS, "--csv"]) == "share,pnl\n0.7960924868198468,8181.000000000001\n"
    doc = json.loads(_ok(["sql", FLOATS, "--json"]))
    assert doc == [{"share": 0.7960924868198468, "pnl": 8181.000000000001}]


def test_rounding_keeps_cents_small_numbers_and_exact_decimals(data_dir):
    table = _ok(
        [
            "sql",
            "SELECT 21345.25::DOUBLE AS price, 1.234567e-9::DOUBLE AS tiny, "
            "1.123456789::DECIMAL(10,9) AS exact, 'nan'::DOUBLE AS n",
        ]
    )
    assert "21345.25" in table and "1.23457e-09" in table and "1.123456789" in table
    assert "nan" in table
