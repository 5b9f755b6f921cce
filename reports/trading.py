"""Static HTML reports under ``<data>/reports/`` with plotly charts: they open from the file
system without a server or the internet (plotly.js is written once beside them, not fetched
from a CDN). A report of synthetic data says so at the top, in red, before any number.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Sequence
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
    d = reports_dir(data_dir)
    name = f"backtest-{result.run_id}.html"
    days = f"{result.days[0]} to {result.days[-1]}" if result.days else "no days"
    title = title or f"Backtest {result.run_id} ({', '.join(result.algos)}; {days})"
    sections = [
        UNIT_NOTE,
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
        UNIT_NOTE,
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
        UNIT_NOTE,
        _table(res.final, "Final, pooled from the daily counts"),
        _table(res.weekly, "Weekly"),
        _fig(accuracy_figure(res.daily)),
        _table(res.daily, "Daily rows (daily figures, not cumulative)"),
    ]
    return write_page(data_dir, f"extended-{res.test_id}.html", f"Extended test {res.test_id}",
                      res.synthetic, sections)  # fmt: skip


# ---------------------------------------------------------------------- data quality
DQ_TABLE_TITLE = "Expectations"
DQ_CHART_TITLE = "Unexpected rows and batch pass rate per expectation"


def dq_summary(lake, run_ids: str | Sequence[str]) -> pl.DataFrame:
    """``dq_results`` of the ingest run(s) per dataset, expectation and column: batches
    validated, batches passed, rows checked, unexpected rows and the pass rate."""
    from warehouse.sql import query

    ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
    return query(
        lake,
        """
        SELECT dataset, expectation, "column", count(*) AS batches,
               count(*) FILTER (WHERE success) AS passed,
               CAST(sum(element_count) AS BIGINT) AS rows_checked,
               CAST(sum(unexpected_count) AS BIGINT) AS unexpected,
               count(*) FILTER (WHERE success) / count(*) AS pass_rate
        FROM dq_results WHERE list_contains(?, run_id)
        GROUP BY ALL ORDER BY 1, 2, 3""",
        [ids],
    )


def dq_batches(lake, run_ids: str | Sequence[str]) -> pl.DataFrame:
    """One row per validated batch (file and dataset) of the run(s), from ``dq_summary``."""
    from warehouse.sql import query

    ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
    return query(
        lake,
        """
        SELECT run_id, dataset, source_file, batch_success, expectations, failed, validated_at
        FROM dq_summary WHERE list_contains(?, run_id) ORDER BY validated_at, source_file""",
        [ids],
    )


def dq_origins(lake, run_ids: Sequence[str]) -> set[str]:
    """Origins of the rows the run(s) published: the ingest log's file hashes, looked up in the
    market tables (``source_sha`` is the first 16 hex digits of the raw file's sha256)."""
    from warehouse.tables import MARKET_TABLES

    log = lake.scan("ingest_log").filter(pl.col("run_id").is_in(list(run_ids))).collect()
    shas = [s[:16] for s in log["sha256"].to_list() if s]
    if not shas:
        return set()
    origins: set[str] = set()
    for t in MARKET_TABLES:
        found = (
            lake.scan(t)
            .filter(pl.col("source_sha").is_in(shas))
            .select("origin")
            .unique()
            .collect()
        )
        origins |= {o for o in found["origin"].to_list() if o}
    return origins


def dq_quarantined(lake, run_ids: Sequence[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """What the run(s) quarantined, which the lake does not hold: a batch with any failed
    expectation is kept out of the lake, its results only in ``<data>/quarantine/<dir>/``.
    Returns (files: file, reason, dir; expectations grouped like ``dq_summary``)."""
    ids = set(run_ids)
    files, rows = [], []
    for d in sorted(lake.quarantine.glob("*/dq_results.json")) if lake.quarantine.exists() else []:
        found = [r for r in json.loads(d.read_text()) if r.get("run_id") in ids]
        if not found:
            continue
        reason = d.parent / "reason.txt"
        files.append(
            {
                "source_file": found[0].get("source_file", ""),
                "reason": reason.read_text().strip() if reason.exists() else "",
                "quarantine_dir": d.parent.name,
            }
        )
        rows += found
    file_schema = {"source_file": pl.String, "reason": pl.String, "quarantine_dir": pl.String}
    if not rows:
        return pl.DataFrame(files, schema=file_schema), pl.DataFrame()
    summary = (
        pl.DataFrame(rows)
        .group_by("dataset", "expectation", "column")
        .agg(
            pl.len().cast(pl.Int64).alias("batches"),
            pl.col("success").sum().cast(pl.Int64).alias("passed"),
            pl.col("element_count").sum().cast(pl.Int64).alias("rows_checked"),
            pl.col("unexpected_count").sum().cast(pl.Int64).alias("unexpected"),
        )
        .with_columns((pl.col("passed") / pl.col("batches")).alias("pass_rate"))
        .sort("dataset", "expectation", "column")
    )
    return pl.DataFrame(files, schema=file_schema), summary


def dq_figure(summary: pl.DataFrame) -> go.Figure:
    labels = [
        f"{d} · {e.removeprefix('expect_')}{f' · {c}' if c else ''}"
        for d, e, c in summary.select("dataset", "expectation", "column").iter_rows()
    ]
    fig = make_subplots(
        rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.03,
        subplot_titles=("Unexpected rows (sum over batches)", "Batches passed (fraction)"),
    )  # fmt: skip
    failed = [p < 1 for p in summary["pass_rate"].to_list()]
    colour = ["#b00" if f else "#4575b4" for f in failed]
    fig.add_trace(
        go.Bar(y=labels, x=summary["unexpected"].to_list(), orientation="h",
               marker_color=colour, name="unexpected rows"),
        row=1, col=1,
    )  # fmt: skip
    fig.add_trace(
        go.Bar(y=labels, x=summary["pass_rate"].to_list(), orientation="h",
               marker_color=colour, name="pass rate"),
        row=1, col=2,
    )  # fmt: skip
    fig.update_xaxes(rangemode="tozero", row=1, col=1)
    fig.update_xaxes(range=[0, 1], row=1, col=2)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(
        title=DQ_CHART_TITLE, showlegend=False, height=max(360, 22 * len(labels) + 140)
    )
    return fig


def write_dq_report(
    lake, data_dir: Path, run_id: str | Sequence[str], *, name: str | None = None
) -> Path:
    """``<data>/reports/dq-<run_id>.html``: the Great Expectations results the ingest run(s)
    stored in ``dq_results``, one row per dataset/expectation/column, and the batches.

    Several run ids (the historical_ingest flow runs one ingest per file) make one page. Files
    that failed validation are quarantined and keep their results out of the lake; the page shows
    them from the quarantine directory, apart from the lake's rows and marked as such."""
    ids = [run_id] if isinstance(run_id, str) else list(run_id)
    summary = dq_summary(lake, ids)
    batches = dq_batches(lake, ids)
    q_files, q_summary = dq_quarantined(lake, ids)
    failed = summary.filter(pl.col("passed") < pl.col("batches"))
    q_failed = q_summary.filter(pl.col("passed") < pl.col("batches")) if q_summary.height else []
    origins = dq_origins(lake, ids)
    runs = ", ".join(ids) if len(ids) <= 3 else f"{ids[0]} and {len(ids) - 1} more"
    ok = failed.height == 0 and q_files.height == 0
    verdict = (
        f"<h2>{'All expectations passed' if ok else 'Failed expectations'}</h2>"
        f"<p>{summary.height} expectations over {batches.height} published batches of run(s) "
        f"{html.escape(runs)}; {failed.height} failed in at least one batch. "
        f"{q_files.height} file(s) quarantined with {len(q_failed)} failed expectation(s). "
        f"Data origin: {html.escape(', '.join(sorted(origins)) or 'unknown')}.</p>"
    )
    sections = [verdict]
    if summary.height == 0 and q_summary.height == 0:
        sections.append("<p><b>No data-quality results in the lake for this run.</b></p>")
    else:
        chart = pl.concat(
            [
                summary,
                *(
                    [q_summary.with_columns(pl.col("dataset") + " (quarantined)")]
                    if q_summary.height
                    else []
                ),
            ],
            how="vertical_relaxed",
        )
        sections.append(_fig(dq_figure(chart)))
    if summary.height:
        sections += [
            _table(summary, f"{DQ_TABLE_TITLE} ({summary.height})"),
            _table(batches, f"Batches ({batches.height})"),
        ]
    if q_files.height:
        sections += [
            "<p>Quarantined files are not in the lake: their results come from "
            "<code>quarantine/&lt;dir&gt;/dq_results.json</code>.</p>",
            _table(q_files, f"Quarantined files ({q_files.height})"),
            _table(q_summary, f"Expectations of the quarantined files ({q_summary.height})"),
        ]
    if name is None:
        name = f"dq-{ids[0]}.html" if len(ids) == 1 else f"dq-{ids[0]}-plus{len(ids) - 1}.html"
    title = f"Data quality of ingest run {runs}"
    return write_page(data_dir, name, title, "synthetic" in origins, sections)
