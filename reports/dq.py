"""The data-quality report of ingest runs: the Great Expectations results stored in
``dq_results``, per expectation and batch, and what was quarantined outside the lake."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path

import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from expectations.data_docs import DATA_DOCS_DIR, data_docs_index
from reports.kit import figure_html, table_html, write_page
from warehouse.lake import Lake
from warehouse.sql import query
from warehouse.tables import MARKET_TABLES

DQ_TABLE_TITLE = "Expectations"
DQ_CHART_TITLE = "Unexpected rows and batch pass rate per expectation"


def dq_summary(lake: Lake, run_ids: str | Sequence[str]) -> pl.DataFrame:
    """``dq_results`` of the ingest run(s) per dataset, expectation and column: batches
    validated, batches passed, rows checked, unexpected rows and the pass rate."""
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


def dq_batches(lake: Lake, run_ids: str | Sequence[str]) -> pl.DataFrame:
    """One row per validated batch (file and dataset) of the run(s), from ``dq_summary``."""
    ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
    return query(
        lake,
        """
        SELECT run_id, dataset, source_file, batch_success, expectations, failed, validated_at
        FROM dq_summary WHERE list_contains(?, run_id) ORDER BY validated_at, source_file""",
        [ids],
    )


def dq_origins(lake: Lake, run_ids: Sequence[str]) -> set[str]:
    """Origins of the rows the run(s) published: the ingest log's file hashes, looked up in the
    market tables (``source_sha`` is the first 16 hex digits of the raw file's sha256)."""
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


def dq_quarantined(lake: Lake, run_ids: Sequence[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
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
        rows=1,
        cols=2,
        shared_yaxes=True,
        horizontal_spacing=0.03,
        subplot_titles=("Unexpected rows (sum over batches)", "Batches passed (fraction)"),
    )
    failed = [p < 1 for p in summary["pass_rate"].to_list()]
    colour = ["#b00" if f else "#4575b4" for f in failed]
    fig.add_trace(
        go.Bar(
            y=labels,
            x=summary["unexpected"].to_list(),
            orientation="h",
            marker_color=colour,
            name="unexpected rows",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Bar(
            y=labels,
            x=summary["pass_rate"].to_list(),
            orientation="h",
            marker_color=colour,
            name="pass rate",
        ),
        row=1,
        col=2,
    )
    fig.update_xaxes(rangemode="tozero", row=1, col=1)
    fig.update_xaxes(range=[0, 1], row=1, col=2)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(
        title=DQ_CHART_TITLE, showlegend=False, height=max(360, 22 * len(labels) + 140)
    )
    return fig


def data_docs_paragraph(data_dir: Path) -> str:
    """A link to the Great Expectations Data Docs of ``<data>/reports/data-docs/`` (relative:
    it opens from the file and over HTTP alike), or why there is none yet."""
    index = data_docs_index(data_dir)
    rel = f"{DATA_DOCS_DIR}/index.html"
    if index.exists():
        return (
            f'<p class="data-docs">Every validation, page by page, in the Great Expectations '
            f'<a href="{rel}">Data Docs</a> (<code>{html.escape(str(index))}</code>).</p>'
        )
    return (
        '<p class="data-docs">No Great Expectations Data Docs yet: they are built by the '
        f"historical_ingest flow into <code>{html.escape(str(index))}</code>.</p>"
    )


def write_dq_report(
    lake: Lake, data_dir: Path, run_id: str | Sequence[str], *, name: str | None = None
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
    sections = [verdict, data_docs_paragraph(data_dir)]
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
        sections.append(figure_html(dq_figure(chart)))
    if summary.height:
        sections += [
            table_html(summary, f"{DQ_TABLE_TITLE} ({summary.height})"),
            table_html(batches, f"Batches ({batches.height})"),
        ]
    if q_files.height:
        sections += [
            "<p>Quarantined files are not in the lake: their results come from "
            "<code>quarantine/&lt;dir&gt;/dq_results.json</code>.</p>",
            table_html(q_files, f"Quarantined files ({q_files.height})"),
            table_html(q_summary, f"Expectations of the quarantined files ({q_summary.height})"),
        ]
    if name is None:
        name = f"dq-{ids[0]}.html" if len(ids) == 1 else f"dq-{ids[0]}-plus{len(ids) - 1}.html"
    title = f"Data quality of ingest run {runs}"
    return write_page(data_dir, name, title, "synthetic" in origins, sections)
