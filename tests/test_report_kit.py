"""The page/figure/table kit every HTML report is built on (reports/kit.py)."""

from __future__ import annotations

import re

import plotly.graph_objects as go
import polars as pl

from reports.kit import (
    PLOTLY_JS,
    figure_html,
    format_value,
    page_html,
    reports_dir,
    table_html,
    write_page,
)
from reports.labels import LABELS, ColumnFormat, column_format


def test_cells_dash_for_null_four_digits_below_a_thousand_whole_above() -> None:
    assert format_value(None) == "—"
    assert format_value(0.123456) == "0.1235"
    assert format_value(999.94) == "999.9"
    assert format_value(12345.6) == "12,346"
    assert format_value(-2500.4) == "-2,500"
    assert format_value(7) == "7" and format_value("v3") == "v3"
    assert format_value(1234567) == "1,234,567"


def test_table_escapes_every_title_header_and_cell() -> None:
    df = pl.DataFrame(
        {"a<b": ["<script>alert(1)</script>"], "n": [None]},
        schema={"a<b": pl.String, "n": pl.Int64},
    )
    out = table_html(df, "T & U <i>")
    assert "<h2>T &amp; U &lt;i&gt;</h2>" in out and "<th>A&lt;b</th>" in out
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td><td>—</td>" in out
    assert "<script>" not in out and "<i>" not in out


def test_table_shows_human_labels_and_formatted_numbers() -> None:
    metrics = pl.DataFrame(
        {
            "algo": ["v3"],
            "win_rate": [0.625],
            "net_pnl": [1234.5],
            "max_drawdown": [-2500.0],
            "trades": [12345],
            "profit_factor": [1.23456],
            "accuracy": [0.7960924868198468],
        }
    )
    out = table_html(metrics, "Metrics")
    heads = re.findall(r"<th(?: [^>]*)?>(.*?)</th>", out)
    assert heads == [
        "Algorithm",
        "Win rate",
        "Net P&amp;L",
        "Max drawdown",
        "Trades",
        "Profit factor",
        "Accuracy",
    ]
    cells = re.findall(r"<td(?: [^>]*)?>(.*?)</td>", out)
    assert cells == ["v3", "62.5%", "$1,234.50", "-$2,500.00", "12,345", "1.23", "79.6%"]
    assert "win_rate" not in out and "0.625" not in out and "1234.5" not in out
    # numbers right-aligned, text left; the header explains a column the warehouse describes
    assert '<td class="num">62.5%</td>' in out and "<td>v3</td>" in out
    assert 'title="Net P&amp;L, USD: gross_pnl - fees."' in out


def test_unlisted_columns_get_a_label_and_kind_from_their_name() -> None:
    assert column_format("gross_pnl") == ColumnFormat("Gross P&L", "usd")
    assert column_format("fill_rate").kind == "percent"
    assert column_format("n_windows") == ColumnFormat("N windows", "count")
    assert column_format("dominant_side") == ColumnFormat("Dominant side", "auto")
    assert format_value(42001234, "instrument_id") == "42001234"  # an id, not a quantity
    assert format_value(42001234, "volume") == "42,001,234"
    assert format_value(0.625, "win_rate") == "62.5%"
    assert format_value(1234.5, "net_pnl") == "$1,234.50"
    assert format_value(None, "net_pnl") == "—" and format_value(True) == "yes"


def test_every_metric_of_the_reports_has_a_label() -> None:
    from ifd_core.trading.metrics import TABLE_METRICS

    derived = [c for c in TABLE_METRICS if c not in LABELS and column_format(c).kind == "auto"]
    assert derived == []  # each is listed, or its name says what it is (counts, money)


def test_wide_tables_scroll_in_their_box_under_a_sticky_header() -> None:
    wide = pl.DataFrame({f"column_{i}": [i * 1000.5] for i in range(40)})
    page = page_html("t", False, [table_html(wide, "Wide")])
    assert '<div class="table-wrap"><table>' in page and "<thead>" in page
    assert ".table-wrap{overflow:auto" in page and "position:sticky" in page
    assert "td.num,th.num{text-align:right}" in page


def test_synthetic_banner_comes_before_every_section() -> None:
    page = page_html("t", True, ["<p>first number 42</p>"])
    assert page.index("SYNTHETIC DATA") < page.index("first number 42")
    assert "SYNTHETIC DATA" not in page_html("t", False, ["<p>x</p>"])


def test_pages_load_plotly_from_beside_them_written_once(tmp_path) -> None:
    d = reports_dir(tmp_path)
    js = d / PLOTLY_JS
    assert js.stat().st_size > 1_000_000
    before = js.stat().st_mtime_ns
    fig = figure_html(go.Figure(go.Bar(x=[1], y=[2])))
    path = write_page(tmp_path, "p.html", "Page", False, [fig])
    page = path.read_text()
    assert path == d / "p.html" and js.stat().st_mtime_ns == before
    assert f'<script src="{PLOTLY_JS}">' in page and "cdn.plot.ly" not in page
    assert 'class="plotly-graph-div"' in page
