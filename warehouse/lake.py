"""The Parquet lake: layout, atomic publication and reads.

Writers never open a DuckDB file. A file is written under ``<data>/staging/`` (outside every
table's glob, on the same filesystem) and published with ``os.replace``, so a reader sees a whole
file or none of it. A partition file's name is its *key*: re-publishing the same key (re-ingesting
the same raw file) atomically replaces that file, which is what makes ingestion idempotent.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from warehouse.tables import TABLES, conform

_KEY = re.compile(r"^[A-Za-z0-9_.=-]+$")
SEED_FILE = "_schema.parquet"


class Lake:
    """Paths and file operations of one data root (``IFD_WAREHOUSE__DATA_DIR``)."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir).resolve()
        self.lake = self.root / "lake"
        self.raw = self.root / "raw"
        self.staging = self.root / "staging"
        self.quarantine = self.root / "quarantine"
        self.reports = self.root / "reports"
        self.catalog_path = self.root / "warehouse.duckdb"

    def ensure_dirs(self) -> None:
        for d in (self.lake, self.raw, self.staging, self.quarantine, self.reports):
            d.mkdir(parents=True, exist_ok=True)

    def table_dir(self, table: str) -> Path:
        if table not in TABLES:
            raise KeyError(f"unknown lake table {table!r}")
        return self.lake / table

    def table_glob(self, table: str) -> str:
        return str(self.table_dir(table) / "**" / "*.parquet")

    def partition_path(self, table: str, day: dt.date, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError(f"lake file key {key!r} has characters outside [A-Za-z0-9_.=-]")
        return self.table_dir(table) / f"date={day.isoformat()}" / f"{key}.parquet"

    def _stage(self, df: pl.DataFrame) -> Path:
        self.staging.mkdir(parents=True, exist_ok=True)
        tmp = self.staging / f"{uuid.uuid4().hex}.parquet.inprogress"
        df.write_parquet(tmp, compression="zstd", statistics=True)
        return tmp

    def write_seed(self, table: str) -> Path:
        """A zero-row file with the table's schema, so views work before any data lands."""
        target = self.table_dir(table) / SEED_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._stage(TABLES[table].empty()), target)
        return target

    def stage_partitions(self, table: str, df: pl.DataFrame, key: str) -> list[tuple[Path, Path]]:
        """Write one staged file per trade date of ``df``; returns (staged, final) pairs.

        Staging everything of a batch first and publishing after validation keeps a failed
        batch out of the lake entirely.
        """
        df = conform(table, df)
        pairs: list[tuple[Path, Path]] = []
        if df.height == 0:
            return pairs
        for (day,), part in df.group_by(["date"], maintain_order=True):
            pairs.append((self._stage(part), self.partition_path(table, day, key)))
        return pairs

    def publish(self, pairs: list[tuple[Path, Path]], key: str | None = None) -> list[Path]:
        """Rename staged files into place; on any error, put every replaced file back.

        With ``key``, files of the same key in partitions the new batch no longer covers (a
        re-ingest whose dates changed) are retired too, so a key's rows are exactly the batch's.
        """
        finals = {final for _, final in pairs}
        stale = []
        if key:
            tables = {final.parent.parent for _, final in pairs}
            stale = [p for t in tables for p in t.glob(f"date=*/{key}.parquet") if p not in finals]
        backups: list[tuple[Path, Path]] = []  # (backup, original place)
        published: list[Path] = []
        try:
            for old in [*(f for f in finals if f.exists()), *stale]:
                backup = self.staging / f"{uuid.uuid4().hex}.parquet.replaced"
                os.replace(old, backup)
                backups.append((backup, old))
            for staged, final in pairs:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, final)
                published.append(final)
        except BaseException:
            for final in published:
                final.unlink(missing_ok=True)
            for backup, original in backups:
                os.replace(backup, original)
            self.discard(pairs)
            raise
        for backup, _ in backups:
            backup.unlink(missing_ok=True)
        return published

    @staticmethod
    def discard(pairs: Iterable[tuple[Path, Path]]) -> None:
        for staged, _ in pairs:
            if staged.exists():
                staged.unlink()

    def write(self, table: str, df: pl.DataFrame, key: str) -> list[Path]:
        """Stage and publish at once: for append-only tables such as dq_results or cost_ledger."""
        return self.publish(self.stage_partitions(table, df, key))

    def replace_day(self, table: str, day: dt.date, df: pl.DataFrame, key: str) -> list[Path]:
        """Make ``df`` the rows of ``key`` on ``day``: published atomically, or — when ``df`` is
        empty — the key's file removed, so an empty result replaces an old non-empty one. Other
        dates' files of the same key are left alone (unlike ``publish(key=...)``)."""
        if df.height:
            dates = set(df["date"].unique().to_list())
            if dates != {day}:
                raise ValueError(f"{table}: rows for {sorted(dates)} given to replace {day}")
            return self.publish(self.stage_partitions(table, df, key))
        self.partition_path(table, day, key).unlink(missing_ok=True)
        return []

    def files(self, table: str, day: dt.date | None = None) -> list[Path]:
        base = self.table_dir(table)
        pattern = f"date={day.isoformat()}/*.parquet" if day else "date=*/*.parquet"
        return sorted(base.glob(pattern))

    def scan(self, table: str) -> pl.LazyFrame:
        """All rows of a table (the seed file guarantees the schema even when empty)."""
        files = [str(p) for p in self.files(table)] or [str(self.table_dir(table) / SEED_FILE)]
        return pl.scan_parquet(files, schema=TABLES[table].pl_schema, missing_columns="insert")

    def clean_staging(self, older_than_s: float = 3600) -> int:
        """Remove staged files a crashed writer left behind."""
        import time

        n = 0
        if self.staging.exists():
            for p in self.staging.iterdir():
                if time.time() - p.stat().st_mtime > older_than_s:
                    shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
                    n += 1
        return n
