"""Prefect flow `lake_compaction`: the append-only tables' small files merged per date (see
warehouse/compaction.py for which tables and why only those), plus staging files a crashed writer
left behind. Weekly, when nothing trades."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.run_names import run_name
from flows.settings import flow_settings


@flow(
    name="lake_compaction",
    log_prints=True,
    flow_run_name=run_name(
        lambda p: f"compaction-{p['min_files']}-files-{p['min_age_days']}-days-old"
    ),
)
def lake_compaction(min_files: int = 8, min_age_days: int = 2) -> dict:
    """Merge each partition of the append-only tables that has at least `min_files` files and is
    at least `min_age_days` old (never a date a live run has not finished).

    Args:
        min_files: A date's partition is merged when it holds at least this many files.
        min_age_days: Only dates at least this many days old are merged.
    """
    from warehouse.compaction import compact_lake
    from warehouse.lake import Lake
    from warehouse.migrations import ensure_migrated

    log = get_run_logger()
    lake = Lake(flow_settings().data_dir)
    ensure_migrated(lake)
    stale = lake.clean_staging()
    done = compact_lake(lake, min_files=min_files, min_age_days=min_age_days, progress=log.info)
    rows = [
        {
            "table": c.table,
            "date": c.day.isoformat(),
            "files_before": c.files_before,
            "rows": c.rows,
        }
        for c in done
    ]
    if rows:
        create_table_artifact(key="lake-compaction", table=rows, description="Partitions merged")
    before = sum(c.files_before for c in done)
    md = (
        f"# Lake compaction\n\n{len(done)} partitions merged: {before:,} files became "
        f"{len(done):,}; {stale} abandoned staging files removed."
    )
    create_markdown_artifact(key="lake-compaction-summary", markdown=md)
    return {"partitions": len(done), "files_before": before, "staging_removed": stale}
