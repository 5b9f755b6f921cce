"""The page/figure/table kit every HTML report is built on (reports/kit.py)."""

from __future__ import annotations

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


def test_cells_dash_for_null_four_digits_below_a_thousand_whole_above() -> None:
    assert format_value(None) == "—"
    assert format_value(0.123456) == "0.1235"
    assert format_value(999.94) == "999.9"
    assert format_value(12345.6) == "12,346"
    assert format_value(-2500.4) == "-2,500"
    assert format_value(7) == "7" and format_value("v3") == "v3"


def test_table_escapes_every_header_and_cell() -> None:
    df = pl.DataFrame({"a<b": ["<script>"], "n": [None]}, schema={"a<b": pl.String, "n": pl.Int64})
    out = table_html(df, "T & U")
    assert "<h2>T &amp; U</h2>" in out and "<th>a&lt;b</th>" in out
    assert "<td>&lt;script&gt;</td><td>—</td>" in out and "<script>" not in out


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
