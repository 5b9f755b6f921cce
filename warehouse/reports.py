"""Static HTML reports under ``<data>/reports/`` with plotly charts: they open from the file
system without a server or the internet (plotly.js is written once beside them, not fetched
from a CDN). A report of synthetic data says so at the top, in red, before any number.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path

import plotly.graph_objects as go
import polars as pl
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

PLOTLY_JS = "plotly.min.js"


def reports_dir(data_dir: Path) -> Path:
    d = Path(data_dir) / "reports"
    d.mkdir(parents=True, exist_ok=True)
    js = d / PLOTLY_JS
    if not js.exists():
        tmp = js.with_suffix(".tmp")
        tmp.write_text(get_plotlyjs())
        tmp.replace(js)
    return d


def _page(title: str, synthetic: bool, sections: list[str]) -> str:
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


def _fig(fig: go.Figure) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False)


def _table(df: pl.DataFrame, title: str) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    rows = []
    for r in df.iter_rows():
        cells = "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r)
        rows.append(f"<tr>{cells}</tr>")
    return f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{''.join(rows)}</table>"


def _fmt(v: object) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def equity_figure(daily: pl.DataFrame, capital: float) -> go.Figure:
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, subplot_titles=("Equity", "Drawdown"))
    for (algo,), part in daily.sort("date").group_by(["algo"], maintain_order=True):
        x = [capital, *part["equity_end"].to_list()]
        dates = [None, *part["date"].to_list()]
        fig.add_trace(go.Scatter(x=dates[1:], y=x[1:], name=f"{algo} equity"), row=1, col=1)
        fig.add_trace(
            go.Scatter(x=dates[1:], y=(-part["drawdown"]).to_list(), name=f"{algo} drawdown"),
            row=2,
            col=1,
        )
    fig.update_layout(height=520)
    return fig


def monte_carlo_figure(mc: dict[str, object]) -> go.Figure:
    fig = go.Figure()
    for algo, res in mc.items():
        fig.add_trace(go.Histogram(x=res.terminal_returns, name=algo, opacity=0.6, nbinsx=60))
    fig.update_layout(
        barmode="overlay",
        title="Monte Carlo: terminal return per path (block bootstrap by trading day)",
        xaxis_title="terminal return (fraction of capital)",
    )
    return fig


def accuracy_figure(daily: pl.DataFrame) -> go.Figure:
    d = daily.with_columns(
        pl.when(pl.col("resolved") > 0)
        .then(pl.col("correct") / pl.col("resolved"))
        .otherwise(None)
        .alias("accuracy")
    )
    fig = go.Figure()
    for (algo,), part in d.sort("date").group_by(["algo"], maintain_order=True):
        fig.add_trace(go.Bar(x=part["date"].to_list(), y=part["accuracy"].to_list(), name=algo))
    fig.update_layout(title="Directional accuracy per day (resolved signals)", yaxis_range=[0, 1])
    return fig


def comparison_figure(metrics: pl.DataFrame) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Accuracy, Wilson 95 %", "Net P&L ($)"))
    m = metrics.sort("algo")
    acc = m["accuracy"].to_list()
    lo = [
        (a - x) if a is not None and x is not None else None
        for a, x in zip(acc, m["ci_low"], strict=True)
    ]
    hi = [
        (x - a) if a is not None and x is not None else None
        for a, x in zip(acc, m["ci_high"], strict=True)
    ]
    fig.add_trace(
        go.Bar(
            x=m["algo"].to_list(),
            y=acc,
            error_y={"type": "data", "array": hi, "arrayminus": lo},
            name="accuracy",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(go.Bar(x=m["algo"].to_list(), y=m["net_pnl"].to_list(), name="net P&L"), 1, 2)
    fig.update_layout(showlegend=False)
    return fig


def write_backtest_report(
    data_dir: Path,
    result,
    metrics: pl.DataFrame,
    *,
    title: str | None = None,
    extra_sections: list[str] | None = None,
) -> Path:
    """The backtest's report: metrics, equity and drawdown, the Monte Carlo distribution,
    per-day accuracy and the algorithms side by side; returns its path."""
    d = reports_dir(data_dir)
    name = f"backtest-{result.run_id}.html"
    days = f"{result.days[0]} to {result.days[-1]}" if result.days else "no days"
    title = title or f"Backtest {result.run_id} ({', '.join(result.algos)}; {days})"
    sections = [
        _table(metrics, "Metrics per algorithm"),
        _fig(comparison_figure(metrics)),
        _fig(equity_figure(result.daily, result.capital)),
        _fig(accuracy_figure(result.daily)),
    ]
    if result.mc_paths:
        mc = pl.DataFrame([{"algo": a, **v} for a, v in result.monte_carlo.items()])
        sections += [_table(mc, "Monte Carlo"), _fig(monte_carlo_figure(result.mc_paths))]
    if result.walk_forward:
        sections.append(
            "<h2>Walk-forward</h2><pre>"
            + html.escape(json.dumps(result.walk_forward, indent=1, default=str))
            + "</pre>"
        )
    sections += extra_sections or []
    path = d / name
    path.write_text(_page(title, result.synthetic, sections))
    return path


def write_page(data_dir: Path, name: str, title: str, synthetic: bool, sections: list[str]) -> Path:
    """Any other report (A/B, extended test) from ready sections."""
    path = reports_dir(data_dir) / name
    path.write_text(_page(title, synthetic, sections))
    return path


def write_ab_report(data_dir: Path, res, metrics: pl.DataFrame) -> Path:
    """The A/B test: verdict first, then the numbers behind it and the charts."""
    doc = res.to_dict()
    verdict = (
        f"<h2>Verdict: {html.escape(doc['recommendation'])}</h2>"
        f"<p>{html.escape(doc['verdict'])}</p><ul>"
        + "".join(f"<li>{html.escape(r)}</li>" for r in doc["reasons"])
        + "</ul>"
    )
    numbers = "<pre>" + html.escape(json.dumps(doc, indent=1, default=str)) + "</pre>"
    bt = res.backtest
    sections = [
        verdict,
        _table(metrics, "Both algorithms on the same stream"),
        _fig(comparison_figure(metrics)),
        _fig(equity_figure(bt.daily, bt.capital)),
        _fig(accuracy_figure(bt.daily)),
        "<h2>The test in numbers</h2>" + numbers,
    ]
    return write_page(data_dir, f"ab-{bt.run_id}.html", f"A/B test {bt.run_id}", bt.synthetic,
                      sections)  # fmt: skip


def write_extended_report(data_dir: Path, res) -> Path:
    """The extended test: the verdict with its reasons, the final and weekly pools, daily rows."""
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in res.verdict.reasons)
    sections = [
        f"<h2>Verdict: {html.escape(res.verdict.status)}</h2><ul>{reasons}</ul>",
        _table(res.final, "Final, pooled from the daily counts"),
        _table(res.weekly, "Weekly"),
        _fig(accuracy_figure(res.daily)),
        _table(res.daily, "Daily rows (daily figures, not cumulative)"),
    ]
    return write_page(data_dir, f"extended-{res.test_id}.html", f"Extended test {res.test_id}",
                      res.synthetic, sections)  # fmt: skip
