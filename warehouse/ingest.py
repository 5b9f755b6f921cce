"""Ingestion: DBN files → validated batches → the lake, all or nothing per file.

Each file is one batch. It is decoded (``ifd_core.marketdata``), turned into the frames of every
table it feeds, validated with the dataset's Great Expectations suite, and only then published:
the raw file is kept under ``raw/``, every partition file is renamed into place, and the data
quality results and an ingest log row are appended. A batch that fails validation is quarantined
whole under ``quarantine/`` with its reason and never touches the lake; a file that cannot be read
is refused with a one-line reason. Partition files are keyed by schema and the raw file's sha256,
so ingesting the same file again replaces exactly the same rows.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from ifd_core.marketdata.dbn_files import DbnBatch, DbnFileError, read_dbn
from ifd_core.marketdata.frames import tables_of
from warehouse.lake import Lake
from warehouse.migrations import ensure_migrated
from warehouse.tables import ORIGINS, conform

SIM_MANIFEST = "IFD_SYNTHETIC.json"
_ORDER = {"definition": 0, "statistics": 1}


@dataclass
class FileResult:
    path: Path
    status: str  # loaded | quarantined | refused
    reason: str = ""
    schema: str | None = None
    origin: str | None = None
    sha256: str = ""
    rows: dict[str, int] = field(default_factory=dict)
    dates: list[str] = field(default_factory=list)
    dq: list[dict] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    quarantine_dir: Path | None = None

    @property
    def ok(self) -> bool:
        return self.status == "loaded"


@dataclass
class IngestReport:
    run_id: str
    files: list[FileResult]

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.files)

    def rows(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for f in self.files:
            for t, n in f.rows.items():
                total[t] = total.get(t, 0) + n
        return total


def ingest_order(paths: Iterable[Path | str]) -> list[Path]:
    """Definitions first, then statistics, then market data: what is defined loads first."""
    return sorted((Path(p) for p in paths), key=lambda p: _ORDER.get(_peek_schema(p), 2))


def _peek_schema(path: Path) -> str:
    try:
        import databento as db

        return str(db.DBNStore.from_file(path).schema)
    except Exception:
        return "unknown"


def _origin_of(batch: DbnBatch, explicit: str | None) -> str:
    if explicit:
        if explicit not in ORIGINS:
            raise ValueError(f"origin must be one of {', '.join(ORIGINS)}, not {explicit!r}")
        if batch.synthetic and explicit != "synthetic":
            raise DbnFileError(
                f"{batch.path.name}: the file is marked synthetic (IFD.SYNTHETIC); it cannot be "
                f"ingested as {explicit}"
            )
        return explicit
    if batch.synthetic:
        return "synthetic"
    manifest = batch.path.parent / SIM_MANIFEST
    if manifest.exists():
        files = json.loads(manifest.read_text()).get("files", {})
        if batch.sha256 in files.values():
            return "synthetic"
    return "historical"


class _Known:
    """Definitions known to this run: the lake's plus those loaded earlier in the run."""

    def __init__(self, lake: Lake) -> None:
        cols = ["instrument_id", "date", "security_type", "min_price_increment"]
        self.frame = lake.scan("instruments").select(cols).unique().collect()

    def add(self, instruments: pl.DataFrame) -> None:
        self.frame = pl.concat([self.frame, instruments.select(self.frame.columns)]).unique()

    def ticks(self, extra: pl.DataFrame | None = None) -> pl.DataFrame:
        from expectations.derive import tick_table

        frame = self.frame
        if extra is not None:
            frame = pl.concat([frame, extra.select(frame.columns)]).unique()
        return tick_table(frame)


def ingest_files(
    paths: Iterable[Path | str],
    lake: Lake,
    *,
    origin: str | None = None,
    progress: Callable[[FileResult], None] | None = None,
) -> IngestReport:
    """Ingest files in dependency order (definitions, statistics, then market data)."""
    from expectations.runner import validate

    if origin is not None and origin not in ORIGINS:
        raise ValueError(f"origin must be one of {', '.join(ORIGINS)}, not {origin!r}")
    ensure_migrated(lake)
    lake.clean_staging()  # files a crashed writer left behind (older than an hour)
    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    known = _Known(lake)
    results = []
    for path in ingest_order(paths):
        try:
            result = _ingest_one(path, lake, run_id, origin, known, validate)
        except Exception as exc:  # never a traceback mid-run: this file fails, the others go on
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            reason = f"{path.name}: could not be ingested ({type(exc).__name__}: {first})"
            result = FileResult(path, "refused", reason)
        results.append(result)
        if progress:
            progress(result)
    return IngestReport(run_id, results)


def _ingest_one(path: Path, lake: Lake, run_id: str, origin, known: _Known, validate) -> FileResult:
    try:
        batch = read_dbn(path)
        batch_origin = _origin_of(batch, origin)
    except DbnFileError as exc:
        return FileResult(path, "refused", str(exc))
    result = FileResult(
        path,
        "loaded",
        schema=batch.schema or "mixed",
        origin=batch_origin,
        sha256=batch.sha256,
        skipped=dict(batch.skipped),
    )
    if batch.record_count == 0:
        return FileResult(
            path,
            "refused",
            f"{path.name}: holds no records; nothing to ingest",
            sha256=batch.sha256,
        )

    frames: dict[str, list[pl.DataFrame]] = {}
    for schema, arr in batch.arrays.items():
        for table, df in tables_of(schema, arr).items():
            df = df.with_columns(
                pl.lit(batch_origin).alias("origin"), pl.lit(batch.sha256[:16]).alias("source_sha")
            )
            frames.setdefault(table, []).append(conform(table, df))
    # A live capture feeds one table from several schemas: merge them back into stream order.
    tables = {
        t: dfs[0]
        if len(dfs) == 1
        else pl.concat(dfs).sort(
            "ts_recv" if "ts_recv" in dfs[0].columns else "ts_event", maintain_order=True
        )
        for t, dfs in frames.items()
    }

    # Definitions in this very file count as known for its own records (live captures).
    ticks = known.ticks(extra=tables.get("instruments"))

    # Parquet is written to staging (outside every table's glob) while GX validates: polars
    # releases the GIL, so the two overlap on two cores; staged files are discarded on failure.
    # Keyed by the decoded records, not the file's bytes: the same data as .dbn or .dbn.zst, in
    # DBN v1, v2 or v3, or downloaded again, replaces itself instead of loading twice.
    key = f"{(batch.schema or 'mixed')}-{batch.content_key()}"
    with ThreadPoolExecutor(max_workers=1) as pool:
        staging = pool.submit(_stage_all, lake, tables, key)
        try:
            checks = _validate_all(tables, batch, ticks, run_id, path.name, validate)
        except BaseException:
            if staging.exception() is None:
                lake.discard(staging.result())
            raise
        staged = staging.result()
    result.dq = [row for v in checks for row in v.rows]
    failures = [v for v in checks if not v.success]
    if failures:
        lake.discard(staged)
        result.status = "quarantined"
        result.reason = f"{path.name}: failed validation: " + "; ".join(v.reason for v in failures)
        result.quarantine_dir = _quarantine(lake, path, batch.sha256, result)
        return result
    raw_path = _keep_raw(lake, path, batch)
    lake.publish(staged, key=key)
    known.add(tables["instruments"]) if "instruments" in tables else None
    result.rows = {t: df.height for t, df in tables.items()}
    result.dates = sorted({str(d) for df in tables.values() for d in df["date"].unique().to_list()})
    today = dt.datetime.now(dt.UTC).date()
    if result.dq:
        lake.write(
            "dq_results",
            pl.DataFrame(result.dq).with_columns(pl.lit(today).alias("date")),
            key=f"{run_id}-{batch.sha256[:16]}",
        )
    log = {
        "date": today,
        "run_id": run_id,
        "ingested_at": dt.datetime.now(dt.UTC),
        "source_file": str(path),
        "raw_path": str(raw_path),
        "sha256": batch.sha256,
        "dataset": batch.dataset,
        "schema": batch.schema or "mixed",
        "dbn_version": batch.version,
        "status": "loaded",
        "reason": json.dumps(batch.skipped) if batch.skipped else "",
        "rows": json.dumps(result.rows),
        "dates": json.dumps(result.dates),
    }
    lake.write("ingest_log", pl.DataFrame([log]), key=f"{run_id}-{batch.sha256[:16]}")
    return result


def _stage_all(lake: Lake, tables: dict[str, pl.DataFrame], key: str) -> list:
    staged: list = []
    try:
        for table, df in tables.items():
            staged += lake.stage_partitions(table, df, key)
    except Exception:
        lake.discard(staged)
        raise
    return staged


def _validate_all(tables, batch: DbnBatch, ticks, run_id: str, name: str, validate) -> list:
    from expectations.suites import SUITES

    checks = []
    for table, df in tables.items():
        # trades derived from mbo are the T records already checked in the mbo suite
        derived_trades = table == "trades" and batch.schema == "mbo"
        if table in SUITES and not derived_trades and df.height:
            checks.append(validate(table, df, ticks, run_id, name))
    return checks


def _keep_raw(lake: Lake, path: Path, batch: DbnBatch) -> Path:
    """Raw files are immutable: the same content is stored once, under its hash."""
    target = (
        lake.raw / batch.dataset / (batch.schema or "mixed") / f"{batch.sha256[:16]}-{path.name}"
    )
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = lake.staging / f"{uuid.uuid4().hex}.raw.inprogress"
        lake.staging.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, tmp)
        tmp.replace(target)
    return target


def _quarantine(lake: Lake, path: Path, sha: str, result: FileResult) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    qdir = lake.quarantine / f"{stamp}-{sha[:16]}-{path.name}"
    qdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, qdir / path.name)
    (qdir / "reason.txt").write_text(result.reason + "\n")
    (qdir / "dq_results.json").write_text(json.dumps(result.dq, default=str, indent=1))
    return qdir
