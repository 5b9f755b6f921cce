"""Artifacts shared by the trading flows: the metrics table, a markdown summary that starts with
the data's origin (SYNTHETIC said first), and a link to the static HTML report."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.report_links import publish_report_link
from ifd_core.settings import get_settings


def _cell(v: object) -> object:
    if isinstance(v, float):
        return round(v, 4)
    if isinstance(v, dt.date | dt.datetime):
        return v.isoformat()
    return v


def artifact_rows(df: pl.DataFrame) -> list[dict]:
    return [{k: _cell(v) for k, v in r.items()} for r in df.to_dicts()]


def publish(
    key: str, title: str, synthetic: bool, lines: list[str], table: pl.DataFrame, report: Path
) -> None:
    origin = (
        "**SYNTHETIC data (simulated market): nothing here is evidence about real markets.**"
        if synthetic
        else "Real market data."
    )
    create_table_artifact(key=f"{key}-metrics", table=artifact_rows(table), description=title)
    md = [f"# {title}", "", origin, "", *lines, "", f"Report: `{report}`"]
    create_markdown_artifact(key=f"{key}-summary", markdown="\n".join(md), description=title)
    publish_report_link(f"{key}-report", report, title, get_settings())
