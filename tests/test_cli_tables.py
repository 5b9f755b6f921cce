"""Tables the `ifd` command prints never show an unrounded float (0.7960924868198468,
8181.000000000001), and `ifd chain` names its underlying by symbol. The market is a small
SYNTHETIC simulation (3 sessions), ingested once for the module."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from ifd_cli.app import EXIT_OK, app
from ifd_cli.common import format_cell, format_number

runner = CliRunner()
# A float printed with more digits than a person reads: 7 or more decimals, or the binary
# noise of a sum (…000000001 / …99999999).
LONG_FLOAT = re.compile(r"\d\.\d{7,}|0{6,}\d|9{6,}\d")


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    from ifd_core.simulator.market import simulate_market
    from warehouse.ingest import ingest_files
    from warehouse.lake import Lake

    root = tmp_path_factory.mktemp("synthetic-market")
    summary = simulate_market(root / "sim", 3, 7, scale=0.1)  # SYNTHETIC
    lake = Lake(root / "data")
    assert ingest_files(summary.files, lake).ok
    return {"env": {"IFD_WAREHOUSE__DATA_DIR": str(lake.root)}, "days": summary.days, "lake": lake}


def _table_output(market, *args: str) -> str:
    res = runner.invoke(app, list(args), env=market["env"])
    assert res.exit_code == EXIT_OK, res.output + res.stderr
    return res.stdout


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.7960924868198468, "0.796092"),
        (8181.000000000001, "8181.00"),
        (12.0, "12.00"),
        (-3.14159265, "-3.14159"),
        (1234567.891, "1234567.89"),
        (0.000012345678, "0.0000123457"),
        (0.0, "0.00"),
        (float("nan"), "nan"),
    ],
)
def test_a_float_gets_six_significant_digits_and_keeps_its_cents(value, text):
    assert format_number(value) == text


def test_cells_round_floats_inside_lists_and_leave_other_values():
    assert format_cell([0.7960924868198468, 2]) == "[0.796092, 2]"
    assert format_cell(None) == "" and format_cell(8181) == "8181" and format_cell("v3") == "v3"


def test_print_frame_rounds_every_float_column(capsys):
    import polars as pl

    from ifd_cli.common import print_frame

    frame = pl.DataFrame({"net": [8181.000000000001], "acc": [0.7960924868198468], "n": [3]})
    print_frame(frame, title="SYNTHETIC")
    text = capsys.readouterr().out
    assert "8181.00" in text and "0.796092" in text and not LONG_FLOAT.search(text)
    print_frame(frame, fmt="csv")
    assert "0.7960924868198468" in capsys.readouterr().out  # CSV keeps full precision


def test_sql_table_rounds_and_csv_keeps_full_precision(market):
    query = "SELECT 8181.000000000001 :: DOUBLE AS total, 0.7960924868198468 :: DOUBLE AS acc"
    table = _table_output(market, "sql", query)
    assert "8181.000000000001" not in table and "0.7960924868198468" not in table
    assert "0.796092" in table and not LONG_FLOAT.search(table)
    assert "0.7960924868198468" in _table_output(market, "sql", "--csv", query)


def test_chain_names_the_underlying_by_symbol_and_rounds_its_table(market):
    day = market["days"][-1]
    text = _table_output(market, "chain", "--date", day.isoformat(), "--at", "15:30")
    said = re.search(r"underlying (\S+) at ", text)
    assert said, text
    symbols = set(market["lake"].scan("instruments").select("raw_symbol").collect()["raw_symbol"])
    assert said.group(1) in symbols and not said.group(1).isdigit()
    assert said.group(1).startswith("NQ")
    assert "Chain signals" in text and not LONG_FLOAT.search(text)


def test_backtest_summary_prints_no_long_float(market):
    days = market["days"]
    text = _table_output(market, "backtest", "--start", str(days[0]), "--end", str(days[-1]))
    assert "Metrics per algorithm" in text
    assert not LONG_FLOAT.search(text), text
