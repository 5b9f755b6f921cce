"""The page, figure and table kit every static HTML report uses.

Reports are files under ``<data>/reports/`` that open from the file system without a server or
the internet: plotly.js is written once beside them (``PLOTLY_JS``), never fetched from a CDN. A
page of synthetic data says so at the top, in red, before any number.
"""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path

import plotly.graph_objects as go
import polars as pl
from plotly.offline import get_plotlyjs

__all__ = [
    "PLOTLY_JS",
    "figure_html",
    "format_value",
    "page_html",
    "reports_dir",
    "table_html",
    "write_page",
]

PLOTLY_JS = "plotly.min.js"


def reports_dir(data_dir: Path) -> Path:
    """``<data>/reports/``, created with plotly.js beside it (written atomically, once)."""
    d = Path(data_dir) / "reports"
    d.mkdir(parents=True, exist_ok=True)
    js = d / PLOTLY_JS
    if not js.exists():
        tmp = js.with_suffix(".tmp")
        tmp.write_text(get_plotlyjs())
        tmp.replace(js)
    return d


def page_html(title: str, synthetic: bool, sections: list[str]) -> str:
    """A whole page from ready HTML sections; the SYNTHETIC banner comes before any of them."""
    banner = (
        '<p class="synthetic">SYNTHETIC DATA: simulated market. Nothing on this page is evidence '
        "about real markets.</p>"
        if synthetic
        else ""
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<script src="{PLOTLY_JS}"></script>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}
.synthetic{{color:#b00;font-weight:bold;font-size:1.2em;border:2px solid #b00;padding:.5em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
th{{background:#f3f3f3}}</style></head>
<body><h1>{html.escape(title)}</h1>{banner}
<p>Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC.</p>
{"".join(sections)}
</body></html>"""


def figure_html(fig: go.Figure) -> str:
    """A plotly figure as a page section; the page loads plotly.js once, from beside it."""
    return fig.to_html(full_html=False, include_plotlyjs=False)


def table_html(df: pl.DataFrame, title: str) -> str:
    """A frame as an HTML table under an ``<h2>`` title, every cell escaped."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    rows = []
    for r in df.iter_rows():
        cells = "".join(f"<td>{html.escape(format_value(v))}</td>" for v in r)
        rows.append(f"<tr>{cells}</tr>")
    return f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{''.join(rows)}</table>"


def format_value(v: object) -> str:
    """One table cell: a dash for null, 4 significant digits below 1,000, whole numbers above."""
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def write_page(data_dir: Path, name: str, title: str, synthetic: bool, sections: list[str]) -> Path:
    """``<data>/reports/<name>`` from ready sections; returns its path."""
    path = reports_dir(data_dir) / name
    path.write_text(page_html(title, synthetic, sections))
    return path
