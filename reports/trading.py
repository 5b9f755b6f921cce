"""The trading reports: backtest, A/B test and extended test pages, and their figures
(equity and drawdown, Monte Carlo, per-day accuracy, algorithms side by side)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from reports.kit import figure_html, table_html, write_page


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
    fig.update_layout(title="Directional accuracy per day (resolved episodes)", yaxis_range=[0, 1])
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


# Every report that judges signals says what it counts.
UNIT_NOTE = (
    "<p><b>Unit: signal episodes.</b> Accuracy, its Wilson interval, the resolved counts and the "
    "tests count episodes — one flow seen in consecutive windows (same option or coordinated "
    "strikes, same view) is one outcome, its first signal's label — never correlated windows. "
    "<code>signals</code> and <code>episodes</code> give both counts; P&amp;L intervals resample "
    "whole trading days.</p>"
)


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
    name = f"backtest-{result.run_id}.html"
    days = f"{result.days[0]} to {result.days[-1]}" if result.days else "no days"
    title = title or f"Backtest {result.run_id} ({', '.join(result.algos)}; {days})"
    sections = [
        UNIT_NOTE,
        table_html(metrics, "Metrics per algorithm"),
        figure_html(comparison_figure(metrics)),
        figure_html(equity_figure(result.daily, result.capital)),
        figure_html(accuracy_figure(result.daily)),
    ]
    if result.mc_paths:
        mc = pl.DataFrame([{"algo": a, **v} for a, v in result.monte_carlo.items()])
        sections += [
            table_html(mc, "Monte Carlo"),
            figure_html(monte_carlo_figure(result.mc_paths)),
        ]
    if result.walk_forward:
        sections.append(
            "<h2>Walk-forward</h2><pre>"
            + html.escape(json.dumps(result.walk_forward, indent=1, default=str))
            + "</pre>"
        )
    sections += extra_sections or []
    return write_page(data_dir, name, title, result.synthetic, sections)


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
        UNIT_NOTE,
        table_html(metrics, "Both algorithms on the same stream"),
        figure_html(comparison_figure(metrics)),
        figure_html(equity_figure(bt.daily, bt.capital)),
        figure_html(accuracy_figure(bt.daily)),
        "<h2>The test in numbers</h2>" + numbers,
    ]
    return write_page(
        data_dir, f"ab-{bt.run_id}.html", f"A/B test {bt.run_id}", bt.synthetic, sections
    )


def write_extended_report(data_dir: Path, res) -> Path:
    """The extended test: the verdict with its reasons, the final and weekly pools, daily rows."""
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in res.verdict.reasons)
    sections = [
        f"<h2>Verdict: {html.escape(res.verdict.status)}</h2><ul>{reasons}</ul>",
        UNIT_NOTE,
        table_html(res.final, "Final, pooled from the daily counts"),
        table_html(res.weekly, "Weekly"),
        figure_html(accuracy_figure(res.daily)),
        table_html(res.daily, "Daily rows (daily figures, not cumulative)"),
    ]
    if getattr(res, "cross_asset_weight", None) is not None:
        sections.insert(2, weight_section(res.cross_asset_weight))
    return write_page(
        data_dir,
        f"extended-{res.test_id}.html",
        f"Extended test {res.test_id}",
        res.synthetic,
        sections,
    )


def weight_section(effect: dict) -> str:
    """The cross-asset confidence weight's measured effect: coverage in episodes and days, and
    the candidate's metrics and verdict with and without it, or why it was not measured."""
    title = (
        f"<h2>Cross-asset confidence weight {effect['weight']:g} ({html.escape(effect['algo'])})"
        "</h2>"
    )
    if "episodes" not in effect:  # nothing counted (real-time mode)
        return title + f"<p><b>{html.escape(effect['status'])}</b></p>"
    head = title + (
        f"<p>{effect['episodes_confirmed']} of {effect['episodes']} episodes have a "
        f"confirmation ({effect['episodes_stored']} stored rows), on "
        f"{effect['days_with_confirmations']} of {effect['days']} days; "
        f"{effect['episodes_gained']} episodes pass the min-confidence filter only with the "
        f"weight, {effect['episodes_lost']} only without it. Accuracy counts every episode's "
        "label, traded or not: the weight moves trades and P&amp;L only.</p>"
    )
    if effect["status"] != "measured":
        return head + f"<p><b>{html.escape(effect['status'])}</b></p>"
    rows = [
        {"": name, **{k: v for k, v in effect[key].items() if k != "reasons"}}
        for name, key in (("with the weight", "with_weight"), ("without", "without_weight"))
    ]
    return head + table_html(pl.DataFrame(rows), "Metrics and verdict with and without the weight")
