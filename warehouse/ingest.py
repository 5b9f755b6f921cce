"""Ingestion: DBN files → validated batches → the lake, all or nothing per file.

Each file is one batch. It is decoded (``ifd_core.marketdata``, with bounded memory), turned
into the frames of every table it feeds, and validated whole with the dataset's Great
Expectations suite. Only the records the lake does not hold yet are added (the multiset union of
overlapping files: a record counts as often as the one file holding it most, see
docs/lake.md), and the batch's rows in every table, its data-quality results and its ingest log
row commit as one lake transaction: all visible or none, even when the process is killed. A
batch that fails validation is quarantined whole under ``quarantine/`` with its reason and never
touches the lake; a file that cannot be read is refused with a one-line reason. Ingesting the
same file again adds nothing and logs that it did (``rows`` 0, ``duplicates`` all).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import polars as pl

from ifd_core.failpoints import failpoint
from ifd_core.marketdata.dbn_files import DbnBatch, DbnFileError, DecodeLimits, read_dbn
from ifd_core.marketdata.frames import tables_of
from ifd_core.marketdata.record_union import multiset_delta
from warehouse.lake import Lake, LakeConflict
from warehouse.migrations import ensure_migrated
from warehouse.tables import ORIGINS, PROVENANCE, TABLES, conform

SIM_MANIFEST = "IFD_SYNTHETIC.json"
_ORDER = {"definition": 0, "statistics": 1}
_CONFLICT_ATTEMPTS = 5
_ROW = "__row"


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
    duplicates: dict[str, int] = field(default_factory=dict)  # rows the lake already held
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


class KnownInstruments:
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


# The shape of jobs/fanout.py's mappers (warehouse may not import jobs: docs/architecture.md).
# ``done(index, result)`` is told of each file as it finishes, in the order of completion.
class FileMapper(Protocol):
    def __call__(
        self,
        fn: Callable[[FileJob], FileResult],
        items: Sequence[FileJob],
        /,
        done: Callable[[int, FileResult], None] | None = None,
    ) -> list[FileResult]: ...


@dataclass(frozen=True)
class FileJob:
    """One file of a run, as a worker (another process or machine) gets it: plain values only,
    the worker opens its own Lake from ``data_dir`` (the same path on every machine)."""

    path: Path
    data_dir: Path
    run_id: str
    origin: str | None
    limits: DecodeLimits | None

    def __str__(self) -> str:  # names the Prefect task run: ingest-file-job-<file name>
        return self.path.name


def ingest_files(
    paths: Iterable[Path | str],
    lake: Lake,
    *,
    origin: str | None = None,
    progress: Callable[[FileResult], None] | None = None,
    limits: DecodeLimits | None = None,
    stage: Callable[[str], None] | None = None,
    mapper: FileMapper | None = None,
) -> IngestReport:
    """Ingest files in dependency order (definitions, statistics, then market data).

    ``limits`` bound how far a file may expand in memory while it is decoded
    (``DecodeLimits.from_settings``; the defaults of the settings when None). ``stage`` is told
    what the run is doing before each file and during the setup before the first one (the
    warehouse schema, then Great Expectations, whose start takes most of it); ``progress``
    gets each file's result.

    ``mapper`` (jobs/fanout.py: a process pool, Dask, or Prefect tasks) runs the files side by
    side: the definition files first (side by side), then mixed files, which may hold some,
    one after another, since their instruments are what the other files are checked against;
    then every other file at once, each worker opening its own Lake. One run id for the run,
    the same lake rows as a sequential run: concurrent commits of one date are serialised by
    the lake (docs/lake.md, "Several writers"). Without ``mapper`` the files run here one
    after another, as they always did."""
    say = stage or (lambda _what: None)
    if origin is not None and origin not in ORIGINS:
        raise ValueError(f"origin must be one of {', '.join(ORIGINS)}, not {origin!r}")
    say("setup: checking the warehouse schema")
    ensure_migrated(lake)
    lake.clean_staging()  # transactions of a dead writer are rolled back
    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    say("setup: reading the files' schemas (definitions load first)")
    unique = dict.fromkeys(Path(p) for p in paths)  # a file named twice is ingested once
    peeked = [(p, _peek_schema(p)) for p in unique]
    peeked.sort(key=lambda ps: _ORDER.get(ps[1], 2))  # stable: as ingest_order sorts
    ordered = [p for p, _ in peeked]
    if mapper is None:
        return IngestReport(
            run_id, _sequential(ordered, lake, run_id, origin, limits, say, progress)
        )
    jobs = [(FileJob(p, lake.root, run_id, origin, limits), schema) for p, schema in peeked]
    definitions = [j for j, schema in jobs if schema == "definition"]
    mixed = [j for j, schema in jobs if schema == "None"]
    rest = [j for j, schema in jobs if schema not in _FIRST]
    results: list[FileResult] = []
    told = (lambda _i, r: progress(r)) if progress else None  # as each file finishes
    if definitions:
        # Definition files depend on nothing: side by side, which also starts every worker
        # (its imports and Great Expectations) before the large files arrive.
        say(f"{len(definitions)} definition files side by side")
        results += mapper(ingest_file_job, definitions, done=told)
    for job in mixed:  # its market records may need the definitions of the one before
        say(f"{job.path.name}")
        results += mapper(ingest_file_job, [job], done=told)
    if rest:
        say(f"{len(rest)} files side by side")
        results += mapper(ingest_file_job, rest, done=told)
    return IngestReport(run_id, results)


# Files whose instruments the others are checked against, ingested before them: definition
# files side by side, then mixed files (schema None, a live capture) one at a time.
_FIRST = {"definition", "None"}


def _sequential(ordered, lake, run_id, origin, limits, say, progress) -> list[FileResult]:
    from expectations.runner import prepare, validate

    known = KnownInstruments(lake)
    if ordered:
        say("setup: starting Great Expectations (the validation engine, once per process)")
        prepare()
    results = []
    # Read-ahead: the next file is decompressed and hashed on another thread while this one is
    # validated and written (zstd and hashlib release the GIL), filling the core that the
    # commit leaves idle. It only reads the file, so the order of commits is unchanged; at most
    # two files are in memory, each within ``limits``.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ifd-read-ahead") as reader:
        ahead = [reader.submit(read_dbn, p, limits=limits) for p in ordered[:1]]
        for i, path in enumerate(ordered):
            current = ahead.pop()
            if i + 1 < len(ordered):
                ahead.append(reader.submit(read_dbn, ordered[i + 1], limits=limits))
            say(f"{path.name}")
            result = _guarded(path, lake, run_id, origin, known, validate, limits, current.result)
            del current  # the batch is freed with its frames, not kept until the next file ends
            results.append(result)
            if progress:
                progress(result)
    return results


def _guarded(path, lake, run_id, origin, known, validate, limits, read=None) -> FileResult:
    try:
        return _ingest_one(path, lake, run_id, origin, known, validate, limits, read)
    except Exception as exc:  # never a traceback mid-run: this file fails, the others go on
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        reason = f"{path.name}: could not be ingested ({type(exc).__name__}: {first})"
        return FileResult(path, "refused", reason)


def ingest_file_job(job: FileJob) -> FileResult:
    """A worker's part of a run: one file into the lake at ``job.data_dir``.

    The instruments known are the lake's (the run's definitions committed before this file was
    handed out). The Great Expectations results go to the Data Docs' store on disk, where the
    run's ``publish_data_docs`` finds them (they would die with this worker's memory)."""
    from expectations.data_docs import stash_results
    from expectations.runner import prepare, validate

    lake = Lake(job.data_dir)
    prepare()
    result = _guarded(
        job.path, lake, job.run_id, job.origin, KnownInstruments(lake), validate, job.limits
    )
    stash_results(job.data_dir)
    return result


def _ingest_one(
    path: Path,
    lake: Lake,
    run_id: str,
    origin,
    known: KnownInstruments,
    validate,
    limits,
    read: Callable[[], DbnBatch] | None = None,
) -> FileResult:
    """``read`` gives the decoded file when it was read ahead (``_sequential``)."""
    try:
        batch = read() if read else read_dbn(path, limits=limits)
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
    committed = _committed_in_run(lake, run_id, batch.sha256, result)
    if committed is not None:
        return committed
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Keyed by the decoded records, not the file's bytes: the same data as .dbn or .dbn.zst,
        # in DBN v1, v2 or v3, or downloaded again, is one key. The hash (hashlib releases the
        # GIL) runs on the other core while the frames are built.
        content = pool.submit(batch.content_key)
        per_schema = {s: _frames(s, a, batch, batch_origin) for s, a in batch.arrays.items()}
        tables = _merge(per_schema)
        # Definitions in this very file count as known for its own records (live captures).
        ticks = known.ticks(extra=tables.get("instruments"))
        key = f"{(batch.schema or 'mixed')}-{content.result()}"
    for attempt in range(_CONFLICT_ATTEMPTS):
        try:
            result = _commit_batch(
                lake, path, batch, per_schema, tables, ticks, key, result, run_id, validate
            )
            if result.ok and "instruments" in tables:
                known.add(tables["instruments"])
            return result
        except LakeConflict:  # a concurrent ingest changed a date this file covers: recompute
            if attempt == _CONFLICT_ATTEMPTS - 1:
                raise
    raise AssertionError  # unreachable


def _committed_in_run(lake: Lake, run_id: str, sha256: str, result: FileResult):
    """This file's result when this run already committed it, else None.

    A file job retried within a run (a Dask worker killed after the commit but before it
    returned, a Prefect task retry) must report what the first attempt added: ingesting again
    would find every row present and log "0 rows" under the same key, erasing the record of
    what was added. Reads the run's log row and its data-quality rows back from the lake."""
    log = (
        lake.scan("ingest_log")
        .filter(pl.col("run_id") == run_id, pl.col("sha256") == sha256)
        .filter(pl.col("source_file") == str(result.path), pl.col("status") == "loaded")
        .collect()
    )
    if log.is_empty():
        return None
    row = log.row(0, named=True)
    result.rows = json.loads(row["rows"])
    result.duplicates = json.loads(row["duplicates"])
    result.dates = json.loads(row["dates"])
    dq = lake.scan("dq_results").filter(
        pl.col("run_id") == run_id, pl.col("source_file") == result.path.name
    )
    result.dq = dq.drop("date").collect().to_dicts()
    return result


class _Quarantined(Exception):
    pass


def _commit_batch(
    lake, path, batch, per_schema, tables, ticks, key, result, run_id, validate
) -> FileResult:
    """The whole file is validated; only what the lake does not hold yet (its delta, see
    ``_delta``) is added; the rows, the data-quality results and the log row commit together."""
    try:
        with lake.transaction(f"ingest {path.name}") as tx:
            # The delta is computed and staged while GX validates the whole file: polars
            # releases the GIL, so the two overlap on two cores.
            with ThreadPoolExecutor(max_workers=1) as pool:
                staging = pool.submit(_stage_delta, lake, tx, batch, result.origin, per_schema, key)
                checks = _validate_all(tables, batch, ticks, run_id, path.name, validate)
                added = staging.result()
            result.dq = [row for v in checks for row in v.rows]
            failures = [v for v in checks if not v.success]
            if failures:
                result.status = "quarantined"
                result.reason = f"{path.name}: failed validation: " + "; ".join(
                    v.reason for v in failures
                )
                raise _Quarantined
            failpoint("ingest.validated")
            raw_path = _keep_raw(lake, path, batch)
            failpoint("ingest.raw_kept")
            result.duplicates = {t: df.height - added.get(t, 0) for t, df in tables.items()}
            result.rows = {t: added.get(t, 0) for t in tables}
            result.dates = sorted(
                {str(d) for df in tables.values() for d in df["date"].unique().to_list()}
            )
            today = dt.datetime.now(dt.UTC).date()
            # one log row per file of the run: two copies of one file are two rows
            where = hashlib.sha256(str(path).encode()).hexdigest()[:8]
            log_key = f"{run_id}-{batch.sha256[:16]}-{where}"
            if result.dq:
                dq = pl.DataFrame(result.dq).with_columns(pl.lit(today).alias("date"))
                tx.put("dq_results", dq, log_key)
            tx.put("ingest_log", pl.DataFrame([_log_row(result, batch, run_id, raw_path)]), log_key)
    except _Quarantined:
        result.quarantine_dir = _quarantine(lake, path, batch.sha256, result)
    return result


def _log_row(result: FileResult, batch: DbnBatch, run_id: str, raw_path: Path) -> dict:
    return {
        "date": dt.datetime.now(dt.UTC).date(),
        "run_id": run_id,
        "ingested_at": dt.datetime.now(dt.UTC),
        "source_file": str(result.path),
        "raw_path": str(raw_path),
        "sha256": batch.sha256,
        "dataset": batch.dataset,
        "schema": batch.schema or "mixed",
        "dbn_version": batch.version,
        "status": "loaded",
        "reason": json.dumps(batch.skipped) if batch.skipped else "",
        "rows": json.dumps(result.rows),
        "duplicates": json.dumps(result.duplicates),
        "dates": json.dumps(result.dates),
    }


def _frames(schema: str, arr, batch: DbnBatch, origin: str) -> dict[str, pl.DataFrame]:
    return {
        table: conform(
            table,
            df.with_columns(
                pl.lit(origin).alias("origin"), pl.lit(batch.sha256[:16]).alias("source_sha")
            ),
        )
        for table, df in tables_of(schema, arr).items()
    }


def _merge(per_schema: dict[str, dict[str, pl.DataFrame]]) -> dict[str, pl.DataFrame]:
    """One frame per table; a live capture feeds one table from several schemas: merged back
    into stream order."""
    frames: dict[str, list[pl.DataFrame]] = {}
    for tables in per_schema.values():
        for table, df in tables.items():
            frames.setdefault(table, []).append(df)
    return {
        t: dfs[0]
        if len(dfs) == 1
        else pl.concat(dfs).sort(
            "ts_recv" if "ts_recv" in dfs[0].columns else "ts_event", maintain_order=True
        )
        for t, dfs in frames.items()
    }


# The table whose rows stand for a schema's records, one row per record (instruments: per
# distinct definition), and the column that tells schemas apart in tables several feed.
_PRIMARY = {"mbo": "mbo", "trades": "trades", "statistics": "statistics", "status": "status"}
_PRIMARY_SHARED = {"tbbo": "bbo", "mbp-1": "bbo", "bbo-1s": "bbo", "bbo-1m": "bbo"}


def _primary(schema: str) -> str:
    if schema.startswith("ohlcv"):
        return "ohlcv"
    if schema == "definition":
        return "instruments"
    return _PRIMARY.get(schema) or _PRIMARY_SHARED[schema]


def _stage_delta(lake: Lake, tx, batch: DbnBatch, origin: str, per_schema, key: str) -> dict:
    """Stage the rows of this file the lake does not hold yet; returns rows added per table.

    A table's rows on a date are the multiset union of the records of every file covering it
    (record_union): the file's records are compared with the rows already in the lake for its
    dates, and only the surplus copies are added; tables derived from a record (trades from
    mbo, open interest from statistics) are derived from the surplus records. The partitions
    read are recorded, so a concurrent ingest of the same dates makes the commit retry.
    """
    delta: dict[str, dict[str, pl.DataFrame]] = {}
    for schema, frames in per_schema.items():
        primary = _primary(schema)
        rows = _surplus(lake, tx, primary, frames[primary])
        if rows is None:  # nothing in the lake on these dates: every record is new
            delta[schema] = frames
        elif schema == "definition":  # one row per distinct definition, not per record
            delta[schema] = {primary: frames[primary][rows]}
        else:
            delta[schema] = _frames(schema, batch.arrays[schema][rows], batch, origin)
    merged = _merge(delta)
    for table, df in merged.items():
        if df.height:
            tx.put(table, df, key)
    return {t: merged[t].height for t in merged}


def _surplus(lake: Lake, tx, table: str, frame: pl.DataFrame):
    """Positions of ``frame``'s rows beyond the copies ``table`` already holds on their dates
    (None when it holds nothing there)."""
    days = frame["date"].unique().to_list()
    for d in days:
        tx.depends_on(table, d)
    files = [str(f) for d in days for f in lake.files(table, d)]
    if not files:
        return None
    on = [c for c in TABLES[table].schema if c not in PROVENANCE]
    prior = pl.scan_parquet(files, schema=TABLES[table].pl_schema, missing_columns="insert")
    prior = prior.select(on).collect()
    new = multiset_delta(frame.select(on).with_row_index(_ROW), prior, on)
    return new[_ROW].to_numpy()


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
    name = _fits(f"{batch.sha256[:16]}-{path.name}")
    target = lake.raw / batch.dataset / (batch.schema or "mixed") / name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = lake.staging / f"{uuid.uuid4().hex}.raw.inprogress"
        lake.staging.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, tmp)
        tmp.replace(target)
    return target


_NAME_MAX = 200  # bytes; file systems allow 255, and a prefix is added


def _fits(name: str) -> str:
    """``name`` shortened in its middle to fit a file system's name limit; the start (the date,
    the dataset) and the end (the schema, the extension) stay readable."""
    raw = name.encode()
    if len(raw) <= _NAME_MAX:
        return name
    head = raw[: _NAME_MAX - 61].decode(errors="ignore")
    tail = raw[-60:].decode(errors="ignore")
    return f"{head}~{tail}"


def _quarantine(lake: Lake, path: Path, sha: str, result: FileResult) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    qdir = lake.quarantine / _fits(f"{stamp}-{sha[:16]}-{path.name}")
    qdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, qdir / _fits(path.name))
    (qdir / "reason.txt").write_text(result.reason + "\n")
    (qdir / "dq_results.json").write_text(json.dumps(result.dq, default=str, indent=1))
    return qdir
