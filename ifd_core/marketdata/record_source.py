"""Record sources: batches of DBN records in ts_recv order, whatever the feed.

docs/architecture.md §One engine, three feeds: the FlowEngine consumes ``RecordBatch``es and never
knows whether they came from files, a Historical download or the Live client. ``FileReplaySource``
is the file feed: it merges the records of several DBN files (a day's definition, statistics and
mbo, say) into one ts_recv-ordered stream, cut into batches of at most ``batch_records``. Ties on
ts_recv keep definitions before statistics before market data, and each file's own order, so an
instrument is always defined before its first record.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ifd_core.marketdata.dbn_files import read_dbn
from ifd_core.marketdata.record_union import union_records

# Lower runs first on equal ts_recv.
SCHEMA_PRIORITY = {"definition": 0, "statistics": 1, "status": 2}
DEFAULT_PRIORITY = 3


@dataclass(frozen=True)
class RecordBatch:
    """Consecutive records of one schema, in ts_recv order; ``origin`` travels with them."""

    schema: str
    records: np.ndarray
    origin: str

    def __len__(self) -> int:
        return len(self.records)


class RecordSource(Protocol):
    def batches(self) -> Iterator[RecordBatch]: ...


class FileReplaySource:
    """Replays DBN files as one merged, ts_recv-ordered stream of batches; a record that
    several files hold is replayed as often as in the one that holds it most (never twice)."""

    def __init__(
        self, paths: list[Path | str], batch_records: int = 100_000, origin: str = "replay"
    ):
        if batch_records < 1:
            raise ValueError("batch_records must be at least 1")
        self.paths = [Path(p) for p in paths]
        self.batch_records = batch_records
        self.origin = origin

    def batches(self) -> Iterator[RecordBatch]:
        by_schema: dict[str, list[np.ndarray]] = {}
        for path in self.paths:
            batch = read_dbn(path)
            for schema, arr in batch.arrays.items():
                if len(arr):
                    by_schema.setdefault(schema, []).append(arr)
        # Files that overlap (two pulls, a capture and a download) hold some records twice:
        # replay their multiset union, as the lake holds it (record_union).
        arrays: list[tuple[str, np.ndarray]] = [
            (schema, arr)
            for schema, arrs in by_schema.items()
            for arr in union_records(arrs)
            if len(arr)
        ]
        if not arrays:
            return
        ts = np.concatenate(
            [a["ts_recv"] if "ts_recv" in a.dtype.names else a["ts_event"] for _, a in arrays]
        )
        prio = np.concatenate(
            [np.full(len(a), SCHEMA_PRIORITY.get(s, DEFAULT_PRIORITY), np.int8) for s, a in arrays]
        )
        src = np.concatenate([np.full(len(a), i, np.int32) for i, (_, a) in enumerate(arrays)])
        idx = np.concatenate([np.arange(len(a), dtype=np.int64) for _, a in arrays])
        # lexsort sorts by the last key first: ts_recv, then priority, then source, then position.
        order = np.lexsort((idx, src, prio, ts))
        src, idx = src[order], idx[order]
        # Cut into runs of one source array, each run at most batch_records long.
        breaks = np.flatnonzero(np.diff(src)) + 1
        starts = np.concatenate([[0], breaks])
        ends = np.concatenate([breaks, [len(src)]])
        for s, e in zip(starts, ends, strict=True):
            schema, arr = arrays[src[s]]
            run = idx[s:e]
            for k in range(0, len(run), self.batch_records):
                yield RecordBatch(schema, arr[run[k : k + self.batch_records]], self.origin)
