"""The multiset union of market-data records from overlapping files.

Two Historical pulls that overlap, a re-cut file, a live capture and a later download of the same
day: the same record arrives in several files. CME also repeats identical fill records inside one
packet, so a record repeated *within* a file is real and stays. The rule (docs/lake.md): a record
appears as many times as it appears in any one file, never more — the multiset union, where each
distinct record's count is the maximum of its counts in the files.

Both functions number the copies of each distinct record in order (its *occurrence*: 0, 1, ...)
and compare (record, occurrence) pairs, so the union is a plain set operation in polars: fast,
vectorised, and exact for any count.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from numpy.lib import recfunctions

_OCC = "__occurrence"
_SRC = "__source"
_ROW = "__row"


def _numbered(df: pl.DataFrame, on: list[str]) -> pl.DataFrame:
    """``df`` with each row's occurrence among identical rows (0 for the first copy). Only the
    repeated rows are numbered by group: grouping every row is several times slower, and in
    market data almost every record is unique."""
    repeated = df.select(on).is_duplicated().to_numpy()
    occ = np.zeros(df.height, dtype=np.uint32)
    if repeated.any():
        at = np.flatnonzero(repeated)
        dup = df.select(on)[at].with_columns(
            pl.int_range(pl.len(), dtype=pl.UInt32).over(on).alias(_OCC)
        )
        occ[at] = dup[_OCC].to_numpy()
    return df.with_columns(pl.Series(_OCC, occ))


def _words(arr: np.ndarray, fields: list[str]) -> pl.DataFrame:
    """The records' ``fields`` as fixed-width unsigned words: equal words, equal records."""
    packed = recfunctions.repack_fields(np.ascontiguousarray(arr[fields]))
    size = packed.dtype.itemsize
    raw = packed.view(np.uint8).reshape(len(packed), size)
    if size % 8:
        raw = np.pad(raw, ((0, 0), (0, 8 - size % 8)))
    words = raw.view("<u8")
    return pl.DataFrame({f"w{i}": words[:, i] for i in range(words.shape[1])})


def union_records(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each array with the copies already given by an earlier array removed, so that together
    they hold the multiset union of records. Records are compared on the fields all the arrays
    share (DBN versions differ in some schemas' layouts); order within each array is kept."""
    if len(arrays) < 2:
        return list(arrays)
    fields = [n for n in arrays[0].dtype.names if all(n in a.dtype.names for a in arrays[1:])]
    frames = []
    for i, arr in enumerate(arrays):
        w = _words(arr, fields)
        frames.append(
            _numbered(w, w.columns).with_columns(
                pl.lit(i, dtype=pl.UInt32).alias(_SRC),
                pl.int_range(pl.len(), dtype=pl.UInt64).alias(_ROW),
            )
        )
    both = pl.concat(frames, how="vertical")
    kept = both.unique(subset=[*frames[0].columns[:-2]], keep="first", maintain_order=True)
    out = []
    for i, arr in enumerate(arrays):
        rows = kept.filter(pl.col(_SRC) == i)[_ROW].to_numpy()
        out.append(arr[np.sort(rows)])
    return out


def multiset_delta(new: pl.DataFrame, prior: pl.DataFrame, on: Sequence[str]) -> pl.DataFrame:
    """The rows of ``new`` beyond those ``prior`` already holds, compared on the ``on`` columns:
    a row present k times in ``new`` and j times in ``prior`` comes out max(0, k - j) times, so
    ``prior`` plus the result is the multiset union. Order of ``new`` is kept."""
    on = list(on)
    if prior.height == 0 or new.height == 0:
        return new
    numbered = _numbered(new, on)
    seen = _numbered(prior.select(on), on)
    return numbered.join(
        seen, on=[*on, _OCC], how="anti", nulls_equal=True, maintain_order="left"
    ).drop(_OCC)
