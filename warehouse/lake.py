"""The Parquet lake: immutable snapshots switched by one atomic rename.

A reader sees a batch, a detection run or a compaction whole or not at all, even when the writer
is killed half-way, and concurrent writers never lose each other's work: ``<data>/lake`` is a
symlink to an immutable snapshot, and a commit builds the next one beside it and switches the
symlink with one ``rename(2)``. ``files`` and ``scan`` pin one snapshot. Layout, commit, recovery
and readers: docs/lake.md §Old state or new state.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from ifd_core.failpoints import failpoint
from warehouse.tables import TABLES, conform

_KEY = re.compile(r"^[A-Za-z0-9_.=-]+$")
SEED_FILE = "_schema.parquet"
SEED_PART = "_seed"
RETENTION_S = 600.0  # how long a superseded snapshot stays readable
KEEP_SNAPSHOTS = 2  # the newest snapshots always kept, whatever their age
GC_EVERY_S = 60.0  # garbage is collected at most this often (it scans every live version)


class LakeConflict(RuntimeError):
    """A partition a transaction read changed before it committed: recompute and retry."""


def _part(day: dt.date, bucket: str | None = None) -> str:
    return f"date={day.isoformat()}" + (f"~{bucket}" if bucket else "")


def _day_of(part: str) -> dt.date | None:
    """The trade date of a partition folder (``date=D`` or a bucket of it, ``date=D~b``)."""
    if not part.startswith("date="):
        return None
    return dt.date.fromisoformat(part.removeprefix("date=").split("~", 1)[0])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class _PartOps:
    puts: dict[str, Path] = field(default_factory=dict)  # file name -> staged file
    deletes: set[str] = field(default_factory=set)


@dataclass
class Transaction:
    """Changes to several tables and partitions that become visible together, or not at all.

    Obtain one from ``Lake.transaction``; ``Lake.write``/``replace_day``/``publish``/``remove``
    called inside the ``with`` block join it. Until the commit, ``Lake.files`` and ``Lake.scan``
    in the same thread read the transaction's own changes over the snapshot it started from.
    """

    lake: Lake
    unit: str
    txn: str
    dir: Path
    parts: dict[tuple[str, str], _PartOps] = field(default_factory=dict)
    retired_keys: dict[str, set[str]] = field(default_factory=dict)  # table -> keys elsewhere
    deps: dict[tuple[str, str], str | None] = field(default_factory=dict)
    bucketed: set[tuple[str, str, str]] = field(default_factory=set)  # (table, part, name)
    staged_as: dict[Path, tuple[str, str, str]] = field(default_factory=dict)
    _lockfd: int = -1

    def ops(self, table: str, part: str) -> _PartOps:
        return self.parts.setdefault((table, part), _PartOps())

    def stage(self, df: pl.DataFrame) -> Path:
        tmp = self.dir / f"{uuid.uuid4().hex}.parquet"
        df.write_parquet(tmp, compression="zstd", statistics=True)
        failpoint("lake.staged")
        return tmp

    def put(
        self, table: str, df: pl.DataFrame, key: str, bucket: str | None = None
    ) -> list[tuple[Path, Path]]:
        """``df``'s rows become the file ``key`` in each of its trade dates' partitions (or in
        the ``bucket`` of each, see ``Lake.write``)."""
        pairs = self.lake.stage_partitions(table, df, key, tx=self, bucket=bucket)
        for staged, final in pairs:
            self.put_file(table, final.parent.name, final.name, staged)
            if bucket:  # a key lives in one bucket of its date: a rewrite elsewhere replaces it
                self.bucketed.add((table, final.parent.name, final.name))
        return pairs

    def put_file(self, table: str, part: str, name: str, staged: Path) -> None:
        ops = self.ops(table, part)
        ops.deletes.discard(name)
        ops.puts[name] = staged
        self.staged_as[staged] = (table, part, name)

    def delete(self, table: str, part: str, name: str) -> None:
        ops = self.ops(table, part)
        ops.puts.pop(name, None)
        ops.deletes.add(name)

    def retire_key(self, table: str, key: str) -> None:
        """Remove the file of ``key`` from every partition this transaction does not write it."""
        self.retired_keys.setdefault(table, set()).add(f"{key}.parquet")

    def depends_on(self, table: str, day: dt.date) -> None:
        """Fail the commit (``LakeConflict``) if this partition changes before it."""
        key = (table, _part(day))
        if key not in self.deps:
            self.deps[key] = self.lake._pv_id(self.lake._snap_dir(), table, key[1])


class Lake:
    """Paths and file operations of one data root (``IFD_WAREHOUSE__DATA_DIR``)."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir).resolve()
        self.lake = self.root / "lake"
        self.store = self.root / "lake.d"
        self.raw = self.root / "raw"
        self.staging = self.root / "staging"  # raw-file copies in progress
        self.quarantine = self.root / "quarantine"
        self.reports = self.root / "reports"
        self.catalog_path = self.root / "warehouse.duckdb"
        self._local = threading.local()

    # ------------------------------------------------------------------ layout
    def ensure_dirs(self) -> None:
        for d in (self.raw, self.staging, self.quarantine, self.reports):
            d.mkdir(parents=True, exist_ok=True)
        self._snap_dir()

    def table_dir(self, table: str) -> Path:
        if table not in TABLES:
            raise KeyError(f"unknown lake table {table!r}")
        return self.lake / table

    def table_glob(self, table: str) -> str:
        """What DuckDB views read: one level of partitions, followed through the symlinks."""
        return str(self.table_dir(table) / "*" / "*.parquet")

    def partition_path(self, table: str, day: dt.date, key: str, bucket: str | None = None) -> Path:
        for name in (key, bucket or "x"):
            if not _KEY.match(name):
                raise ValueError(f"lake file key {name!r} has characters outside [A-Za-z0-9_.=-]")
        return self.table_dir(table) / _part(day, bucket) / f"{key}.parquet"

    def _snap_dir(self) -> Path:
        """The current snapshot's folder (a stable path: pinned for as long as it is used)."""
        try:
            target = os.readlink(self.lake)
        except OSError:  # none yet, or a real folder: the layout before snapshots
            self._initialise()
            target = os.readlink(self.lake)
        return self.root / target

    def snapshot_dir(self) -> Path:
        """The current snapshot's folder: a path that stays valid (pinned) while it is read."""
        return self._snap_dir()

    def snapshot_id(self) -> int:
        return int(self._snap_dir().name)

    def _pv_id(self, snap: Path, table: str, part: str) -> str | None:
        try:
            return os.readlink(snap / table / part)
        except (FileNotFoundError, NotADirectoryError):
            return None

    # ------------------------------------------------------------------ reads
    def files(self, table: str, day: dt.date | None = None) -> list[Path]:
        """The data files of ``table`` (of ``day``) in one snapshot, or in this thread's open
        transaction over its snapshot (read-your-writes)."""
        if table not in TABLES:
            raise KeyError(f"unknown lake table {table!r}")
        snap = self._snap_dir()
        base = snap / table
        parts = set(_listdir(base))
        tx = self._tx()
        if tx is not None:
            parts |= {p for (t, p) in tx.parts if t == table}
        out: list[Path] = []
        for part in sorted(parts):
            if _day_of(part) is None or (day is not None and _day_of(part) != day):
                continue
            names = {n: base / part / n for n in _listdir(base / part) if n.endswith(".parquet")}
            if tx is not None:
                ops = tx.parts.get((table, part))
                retired = tx.retired_keys.get(table, set())
                for n in list(names):
                    if (ops and n in ops.deletes) or (n in retired and not (ops and n in ops.puts)):
                        del names[n]
                if ops:
                    names.update(ops.puts)
            out += [names[n] for n in sorted(names)]
        return out

    def days(self, table: str) -> list[dt.date]:
        """The trade dates ``table`` has files for, in the current snapshot."""
        days = {_day_of(p) for p in _listdir(self._snap_dir() / table)}
        return sorted(d for d in days if d is not None)

    def seed_file(self, table: str) -> Path:
        tx = self._tx()
        ops = tx.parts.get((table, SEED_PART)) if tx is not None else None
        if ops is not None and SEED_FILE in ops.puts:
            return ops.puts[SEED_FILE]
        return self._snap_dir() / table / SEED_PART / SEED_FILE

    def scan(self, table: str) -> pl.LazyFrame:
        """All rows of a table (the seed file guarantees the schema even when empty)."""
        files = [str(p) for p in self.files(table)] or [str(self.seed_file(table))]
        return pl.scan_parquet(files, schema=TABLES[table].pl_schema, missing_columns="insert")

    # ------------------------------------------------------------------ writes
    def _tx(self) -> Transaction | None:
        return getattr(self._local, "tx", None)

    @contextlib.contextmanager
    def transaction(self, unit: str) -> Iterator[Transaction]:
        """Everything written in the block commits as one snapshot when it ends without error.

        Nested blocks join the outer one. An exception (or a kill) discards it whole.
        """
        outer = self._tx()
        if outer is not None:
            yield outer
            return
        tx = self._begin(unit)
        self._local.tx = tx
        committed = False
        try:
            yield tx
            self._local.tx = None
            committed = self._commit(tx)
        finally:
            self._local.tx = None
            self._end(tx)
        if committed:
            failpoint("commit.cleaned")

    def _begin(self, unit: str) -> Transaction:
        self._snap_dir()  # the layout exists
        txn = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:10]
        d = self.store / "staging" / txn
        hidden = d.with_name(f".{txn}")  # recovery ignores it until it is locked and renamed
        hidden.mkdir(parents=True)
        fd = os.open(hidden / ".lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)  # held while we live: a free lock means a dead writer
        intent = {
            "txn": txn,
            "unit": unit,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": dt.datetime.now(dt.UTC).isoformat(),
            "base_snapshot": self.snapshot_id(),
        }
        (hidden / "intent.json").write_text(json.dumps(intent))
        os.rename(hidden, d)
        return Transaction(self, unit, txn, d, _lockfd=fd)

    def _end(self, tx: Transaction) -> None:
        shutil.rmtree(tx.dir, ignore_errors=True)
        if tx._lockfd >= 0:
            os.close(tx._lockfd)
            tx._lockfd = -1

    def stage_partitions(
        self,
        table: str,
        df: pl.DataFrame,
        key: str,
        tx: Transaction | None = None,
        bucket: str | None = None,
    ) -> list[tuple[Path, Path]]:
        """Write one staged file per trade date of ``df``; returns (staged, final) pairs."""
        df = conform(table, df)
        pairs: list[tuple[Path, Path]] = []
        if df.height == 0:
            return pairs
        tx = tx or self._tx()
        for (day,), part in df.group_by(["date"], maintain_order=True):
            final = self.partition_path(table, day, key, bucket)
            if tx is not None:
                staged = tx.stage(part)
            else:
                self.staging.mkdir(parents=True, exist_ok=True)
                staged = self.staging / f"{uuid.uuid4().hex}.parquet.inprogress"
                part.write_parquet(staged, compression="zstd", statistics=True)
            pairs.append((staged, final))
        return pairs

    def publish(self, pairs: list[tuple[Path, Path]], key: str | None = None) -> list[Path]:
        """Make staged files the lake's, in one commit (or in the open transaction).

        With ``key``, files of the same key in partitions the new batch no longer covers are
        retired too, so a key's rows are exactly the batch's.
        """
        with self.transaction("publish") as tx:
            for staged, final in pairs:
                table = final.parent.parent.name
                if staged.parent != tx.dir:  # staged outside the transaction: move it in
                    moved = tx.dir / f"{uuid.uuid4().hex}.parquet"
                    os.replace(staged, moved)
                    staged = moved
                tx.put_file(table, final.parent.name, final.name, staged)
                if key:
                    tx.retire_key(table, key)
        return [final for _, final in pairs]

    def write(
        self, table: str, df: pl.DataFrame, key: str, bucket: str | None = None
    ) -> list[Path]:
        """Add (or replace) the rows of ``key`` in ``df``'s dates, as one commit.

        A commit links every file of the partitions it changes, so a writer adding a file every
        few seconds (the live flush) writes into a ``bucket`` of the date (``date=D~<bucket>``,
        e.g. one per hour) to keep each commit's work small; ``files(table, day)`` reads them
        all, and compaction merges them."""
        with self.transaction(f"write {table}") as tx:
            return [final for _, final in tx.put(table, df, key, bucket)]

    def replace_day(self, table: str, day: dt.date, df: pl.DataFrame, key: str) -> list[Path]:
        """Make ``df`` the rows of ``key`` on ``day``; an empty ``df`` removes the key's file.
        Other dates' files of the same key are left alone (unlike ``publish(key=...)``)."""
        if df.height:
            dates = set(df["date"].unique().to_list())
            if dates != {day}:
                raise ValueError(f"{table}: rows for {sorted(dates)} given to replace {day}")
            return self.write(table, df, key)
        self.partition_path(table, day, key)  # validates the key
        with self.transaction(f"replace {table} {day}") as tx:
            tx.delete(table, _part(day), f"{key}.parquet")
        return []

    def remove(self, paths: Iterable[Path]) -> None:
        """Remove files (as ``files`` listed them) from the lake, as one commit."""
        with self.transaction("remove") as tx:
            for p in paths:
                p = Path(p)
                where = tx.staged_as.get(p, (p.parent.parent.name, p.parent.name, p.name))
                tx.delete(*where)

    def write_seed(self, table: str) -> None:
        """A zero-row file with the table's schema, so views work before any data lands."""
        with self.transaction(f"seed {table}") as tx:
            tx.put_file(table, SEED_PART, SEED_FILE, tx.stage(TABLES[table].empty()))

    # ------------------------------------------------------------------ commit
    @contextlib.contextmanager
    def _commit_lock(self) -> Iterator[None]:
        self.store.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.store / "commit.lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _commit(self, tx: Transaction) -> bool:
        """Publish ``tx`` as the next snapshot; False when it changes nothing."""
        if not tx.parts and not tx.retired_keys:
            return False
        with self._commit_lock():
            failpoint("commit.locked")
            snap = self._snap_dir()
            for (table, part), seen in tx.deps.items():
                if self._pv_id(snap, table, part) != seen:
                    raise LakeConflict(f"{table} {part} changed while {tx.unit} ran")
            created: list[Path] = []
            try:
                return self._apply(tx, snap, created)
            except BaseException:  # never visible: removed now rather than by the next GC
                for d in reversed(created):
                    shutil.rmtree(d, ignore_errors=True)
                raise

    def _apply(self, tx: Transaction, snap: Path, created: list[Path]) -> bool:
        n = int(snap.name) + 1
        for stale in (self.store / "snap" / str(n), self.store / "snap" / str(n + 1)):
            shutil.rmtree(stale, ignore_errors=True)  # built by a writer killed before its switch
        tag = f"{n}-{uuid.uuid4().hex[:6]}"
        touched: dict[str, dict[str, str | None]] = {}  # table -> part -> new pv link (None: gone)
        for table, part, name in tx.bucketed:
            for other in _listdir(snap / table):
                same_day = other != part and _day_of(other) == _day_of(part)
                if same_day and name in _listdir(snap / table / other):
                    tx.delete(table, other, name)
        for table, keys in tx.retired_keys.items():
            for part in _listdir(snap / table):
                if part != SEED_PART and keys & set(_listdir(snap / table / part)):
                    tx.ops(table, part)  # the retire applies to this partition
        for (table, part), ops in sorted(tx.parts.items()):
            old = snap / table / part
            names = set(_listdir(old))
            drop = ops.deletes | (tx.retired_keys.get(table, set()) - set(ops.puts))
            keep = names - drop - set(ops.puts)
            if keep == names and not ops.puts:
                continue
            if not keep and not ops.puts:
                touched.setdefault(table, {})[part] = None
                continue
            rel = Path("pv") / table / part / tag
            new = self.store / rel
            new.mkdir(parents=True)
            created.append(new)
            for name in keep:
                os.link(old / name, new / name)
            for name, staged in ops.puts.items():
                os.link(staged, new / name)
            _fsync_dir(new)
            touched.setdefault(table, {})[part] = os.path.join("..", "..", "..", str(rel))
        if not touched:
            return False
        failpoint("commit.pv")
        tables = {}
        for table, parts in touched.items():
            rel = Path("tv") / table / tag
            tv = self.store / rel
            tv.mkdir(parents=True)
            created.append(tv)
            current = {p: os.readlink(snap / table / p) for p in _listdir(snap / table)}
            for part, link in {**current, **parts}.items():
                if link is not None:
                    os.symlink(link, tv / part)
            _fsync_dir(tv)
            tables[table] = os.path.join("..", "..", str(rel))
        failpoint("commit.tv")
        new_snap = self.store / "snap" / str(n)
        tmp = self.store / "snap" / f".{tag}.tmp"
        tmp.mkdir(parents=True)
        created.append(tmp)
        for entry in _listdir(snap):
            if entry != "_commit.json" and entry not in tables:
                os.symlink(os.readlink(snap / entry), tmp / entry)
        for table, link in tables.items():
            os.symlink(link, tmp / table)
        record = {
            "snapshot": n,
            "previous": int(snap.name),
            "unit": tx.unit,
            "txn": tx.txn,
            "tables": sorted(tables),
            "committed_at": dt.datetime.now(dt.UTC).isoformat(),
            "committed_unix": time.time(),
        }
        (tmp / "_commit.json").write_text(json.dumps(record))
        _fsync_dir(tmp)
        os.rename(tmp, new_snap)
        created.append(new_snap)
        failpoint("commit.snap")
        self._switch(n)
        created.clear()  # committed: nothing to undo
        failpoint("commit.switched")
        self._gc()
        return True

    def _switch(self, n: int) -> None:
        link = self.root / f".lake-{n}-{uuid.uuid4().hex[:6]}.tmp"
        os.symlink(os.path.join("lake.d", "snap", str(n)), link)
        os.replace(link, self.lake)  # the commit point
        _fsync_dir(self.root)

    # ------------------------------------------------------------------ recovery
    def _initialise(self) -> None:
        """Create the snapshot layout: empty, or from a lake folder of the older layout."""
        with self._commit_lock():
            if os.path.islink(self.lake):
                return
            snaps = sorted(
                (int(p) for p in _listdir(self.store / "snap") if p.isdigit()), reverse=True
            )
            if snaps and not self.lake.exists():  # killed between the legacy move and the link
                self._switch(snaps[0])
                return
            for d in ("snap", "tv", "pv", "staging"):  # an older try, or a copy of a data root
                shutil.rmtree(self.store / d, ignore_errors=True)
            base = self.store / "snap" / "0"
            tmp = self.store / "snap" / f".0-{uuid.uuid4().hex[:6]}.tmp"
            tmp.mkdir(parents=True)
            legacy = self.lake if self.lake.is_dir() else None
            if legacy is not None:
                for tdir in sorted(p for p in legacy.iterdir() if p.is_dir()):
                    self._adopt_table(tdir, tmp)
            (tmp / "_commit.json").write_text(
                json.dumps({"snapshot": 0, "unit": "initialise", "committed_unix": time.time()})
            )
            shutil.rmtree(base, ignore_errors=True)
            os.rename(tmp, base)
            if legacy is not None:
                os.rename(legacy, self.store / f"legacy-{uuid.uuid4().hex[:6]}")
            self._switch(0)
            for old in _listdir(self.store):
                if old.startswith("legacy-"):
                    shutil.rmtree(self.store / old, ignore_errors=True)

    def _adopt_table(self, tdir: Path, snap_tmp: Path) -> None:
        table = tdir.name
        tv = self.store / "tv" / table / "0"
        tv.mkdir(parents=True, exist_ok=True)
        for src in [p for p in tdir.iterdir() if p.is_dir()]:
            if src.name.startswith("date=") or src.name == SEED_PART:
                self._adopt_files(table, src.name, sorted(src.glob("*.parquet")), tv)
        if (tdir / SEED_FILE).exists():
            self._adopt_files(table, SEED_PART, [tdir / SEED_FILE], tv)
        os.symlink(os.path.join("..", "..", "tv", table, "0"), snap_tmp / table)

    def _adopt_files(self, table: str, part: str, files: list[Path], tv: Path) -> None:
        if not files:
            return
        rel = Path("pv") / table / part / "0"
        pv = self.store / rel
        pv.mkdir(parents=True, exist_ok=True)
        for f in files:
            os.link(f, pv / f.name)
        os.symlink(os.path.join("..", "..", "..", str(rel)), tv / part)

    def recover(self) -> list[dict]:
        """Roll back every transaction whose writer is dead and collect garbage; returns the
        intents of the units rolled back (``ifd repair`` reports them)."""
        self._snap_dir()
        rolled: list[dict] = []
        for d in _listdir(self.store / "staging"):
            path = self.store / "staging" / d
            if d.startswith(".") and _age(path) < 3600:
                continue  # a writer between mkdir and its lock, or one killed there: later
            intent = _dead_intent(path)
            if intent is not None:
                shutil.rmtree(path, ignore_errors=True)
                rolled.append(intent)
        for p in _listdir(self.root):
            if p.startswith(".lake-") and p.endswith(".tmp"):
                (self.root / p).unlink(missing_ok=True)  # a switch killed before its rename
        with self._commit_lock():
            self._gc(force=bool(rolled))
        return rolled

    def clean_staging(self, older_than_s: float = 3600) -> int:
        """Remove raw-file copies a crashed writer left in ``staging/`` (never visible to
        readers: raw files are published by rename) and roll back dead lake transactions."""
        n = len(self.recover())
        if self.staging.exists():
            for p in self.staging.iterdir():
                if _age(p) > older_than_s:
                    shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
                    n += 1
        return n

    def _gc(self, force: bool = False) -> None:
        """Remove snapshots superseded more than ``RETENTION_S`` ago (the newest
        ``KEEP_SNAPSHOTS`` always stay) and the versions no remaining snapshot references.
        Called under the commit lock."""
        snapdir = self.store / "snap"
        entries = _listdir(snapdir)
        ids = sorted(int(p) for p in entries if p.isdigit())
        current = int(self._snap_dir().name)
        stale_tmp = [p for p in entries if p.startswith(".")]
        now = time.time()
        drop = []
        for older, newer in zip(ids, ids[1:], strict=False):
            if older >= current or older in ids[-KEEP_SNAPSHOTS:]:
                continue
            superseded = _commit_time(snapdir / str(newer))
            if now - superseded <= RETENTION_S:
                break  # commits are in time order: every later snapshot is younger still
            drop.append(older)
        beyond = [i for i in ids if i > current]  # built by a writer killed before its switch
        if not (drop or beyond or stale_tmp or force):
            return
        stamp = self.store / "gc.stamp"
        if not force and not beyond and _age(stamp) < GC_EVERY_S:
            return
        stamp.touch()
        failpoint("gc")
        for i in [*drop, *beyond]:
            shutil.rmtree(snapdir / str(i), ignore_errors=True)
        for p in stale_tmp:
            shutil.rmtree(snapdir / p, ignore_errors=True)
        keep = [snapdir / str(i) for i in ids if i not in drop and i not in beyond]
        live_tv: set[str] = set()
        for s in keep:
            for entry in _listdir(s):
                if entry != "_commit.json":
                    live_tv.add(os.path.normpath(os.path.join(s, os.readlink(s / entry))))
        live_pv: set[str] = set()
        for tv in live_tv:
            for part in _listdir(Path(tv)):
                live_pv.add(os.path.normpath(os.path.join(tv, os.readlink(Path(tv) / part))))
        for kind, live in (("tv", live_tv), ("pv", live_pv)):
            depth = 2 if kind == "tv" else 3
            for leaf in _leaves(self.store / kind, depth):
                if str(leaf) not in live:
                    shutil.rmtree(leaf, ignore_errors=True)


def _listdir(path: Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _leaves(base: Path, depth: int) -> list[Path]:
    level = [base]
    for _ in range(depth):
        level = [p / n for p in level for n in _listdir(p)]
    return level


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")


def _commit_time(snap: Path) -> float:
    try:
        return float(json.loads((snap / "_commit.json").read_text()).get("committed_unix", 0))
    except (OSError, ValueError):
        return 0.0


def _dead_intent(path: Path) -> dict | None:
    """The intent of a staging folder whose writer is gone (its lock is free), else None."""
    try:
        fd = os.open(path / ".lock", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = -1  # killed before it took the lock
    except OSError:
        return None
    try:
        if fd >= 0:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None
        try:
            return json.loads((path / "intent.json").read_text())
        except (OSError, ValueError):
            return {"txn": path.name, "unit": "unknown (no intent recorded)"}
    finally:
        if fd >= 0:
            os.close(fd)
