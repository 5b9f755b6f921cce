"""Lake compaction: many small files of the append-only tables become one file per date.

Append-only writers add one small Parquet file per write (a live day adds hundreds), and every
query opens every file. Only tables whose file names carry no meaning are compacted, partitions a
live run may still write are left alone, and the merge is one lake commit, so readers see the
partition before or after, never both: docs/operations.md §Recovery.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import polars as pl

from ifd_core.failpoints import failpoint
from warehouse.lake import Lake
from warehouse.tables import TABLES

COMPACTABLE = (
    "dq_results",
    "incidents",
    "alerts",
    "cost_ledger",
    "rollout_events",
    "signal_latency",
    "gaps",
)
PREFIX = "compacted-"


@dataclass(frozen=True)
class Compacted:
    table: str
    day: dt.date
    files_before: int
    rows: int


def _busy_dates(lake: Lake) -> set[dt.date]:
    """Dates a live run has not finished (its checkpoint says so): their files may be rewritten."""
    out = set()
    for p in (lake.root / "live").glob("checkpoint-*.json"):
        try:
            ck = json.loads(p.read_text())
        except (OSError, ValueError):
            out.add(dt.date.fromisoformat(p.stem.removeprefix("checkpoint-")))
            continue
        if not ck.get("finalized"):
            out.add(dt.date.fromisoformat(ck["day"]))
    return out


def _partitions(lake: Lake, table: str) -> list[dt.date]:
    return lake.days(table)


def compact_lake(
    lake: Lake,
    *,
    tables: Sequence[str] = COMPACTABLE,
    min_files: int = 8,
    min_age_days: int = 2,
    today: dt.date | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Compacted]:
    """Merge each eligible partition of ``tables`` with at least ``min_files`` files."""
    for t in tables:
        if t not in COMPACTABLE:
            raise ValueError(f"{t} is keyed by source and must not be compacted")
    today = today or dt.datetime.now(dt.UTC).date()
    newest = today - dt.timedelta(days=min_age_days)
    busy = _busy_dates(lake)
    done: list[Compacted] = []
    for table in tables:
        for day in _partitions(lake, table):
            if day > newest or day in busy:
                continue
            files = lake.files(table, day)
            if len(files) < min_files:
                continue
            done.append(_compact(lake, table, day, files))
            if progress:
                c = done[-1]
                progress(f"{table} {day}: {c.files_before} files -> 1 ({c.rows:,} rows)")
    return done


def _compact(lake: Lake, table: str, day: dt.date, files: list) -> Compacted:
    schema = TABLES[table].pl_schema
    df = pl.read_parquet([str(f) for f in files], schema=schema, missing_columns="insert")
    digest = hashlib.sha256("\n".join(sorted(f.name for f in files)).encode()).hexdigest()[:16]
    key = f"{PREFIX}{digest}"
    # One commit: the merged file appears as the originals disappear, never both, never neither.
    with lake.transaction(f"compact {table} {day}") as tx:
        staged = tx.put(table, df, key)
        failpoint("compaction.merged")
        back = (
            pl.scan_parquet([str(p) for p, _ in staged]).select(pl.len()).collect().item()
            if staged
            else 0
        )
        if back != df.height:  # never remove the originals unless every row is in the new file
            raise RuntimeError(
                f"{table} {day}: compacted file holds {back} rows, expected {df.height}"
            )
        keep = {final.name for _, final in staged}
        for f in files:
            if f.name not in keep:
                tx.delete(table, f.parent.name, f.name)
    return Compacted(table, day, len(files), df.height)
