"""The page, figure and table kit every static HTML report uses.

Reports are files under ``<data>/reports/`` that open from the file system without a server or
the internet: plotly.js is written once beside them (``PLOTLY_JS``), never fetched from a CDN. A
page of synthetic data says so at the top, in red, before any number. The page shell and tables
are Jinja2 templates (``reports/templates/``, autoescaped); column labels and number formats come
from ``reports/labels.py``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import jinja2
import plotly.graph_objects as go
import polars as pl
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from reports.labels import column_format, column_meaning, format_cell, is_numeric

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


_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True,  # every title, label and cell is text; sections are marked safe below
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
)


def page_html(title: str, synthetic: bool, sections: list[str]) -> str:
    """A whole page from ready HTML sections; the SYNTHETIC banner comes before any of them.

    The shell is templates/page.html.j2; sections are HTML this kit (or plotly) made, passed
    through as is, and everything else is escaped."""
    return _ENV.get_template("page.html.j2").render(
        title=title,
        synthetic=synthetic,
        plotly_js=PLOTLY_JS,
        generated=f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M}",
        sections=[Markup(s) for s in sections],
    )


def figure_html(fig: go.Figure) -> str:
    """A plotly figure as a page section; the page loads plotly.js once, from beside it."""
    return fig.to_html(full_html=False, include_plotlyjs=False)


def table_html(df: pl.DataFrame, title: str) -> str:
    """A frame as an HTML table under an ``<h2>`` title (templates/table.html.j2): headers by
    their human label (reports/labels.py) with the column's meaning as a tooltip, values
    formatted by kind (percent, currency, counts), numbers right-aligned, every text escaped;
    wide tables scroll inside their box under a sticky header."""
    formats = [column_format(c) for c in df.columns]
    headers = [
        {"label": f.label, "meaning": column_meaning(c), "numeric": t.is_numeric()}
        for c, f, t in zip(df.columns, formats, df.dtypes, strict=True)
    ]
    rows = [
        [
            {"text": format_cell(v, f.kind), "numeric": is_numeric(v)}
            for v, f in zip(r, formats, strict=True)
        ]
        for r in df.iter_rows()
    ]
    return _ENV.get_template("table.html.j2").render(title=title, headers=headers, rows=rows)


def format_value(v: object, column: str | None = None) -> str:
    """One table cell: a dash for null; with a ``column`` name, written as that column's kind
    (reports/labels.py: "62.5%", "$1,234.50"); without one, 4 significant digits below 1,000
    and whole numbers above, thousands separated."""
    return format_cell(v, column_format(column).kind if column else "auto")


def write_page(data_dir: Path, name: str, title: str, synthetic: bool, sections: list[str]) -> Path:
    """``<data>/reports/<name>`` from ready sections; returns its path."""
    path = reports_dir(data_dir) / name
    path.write_text(page_html(title, synthetic, sections))
    return path
