"""Each record once: overlapping files load as the multiset union of their records.

A record appears in a table as many times as it appears in any one raw file, never more: copies
inside one file stay (CME repeats identical fills in a packet), copies across files go.
"""

from __future__ import annotations

import json

import databento as db
import numpy as np
import polars as pl
import pytest

from ifd_core.marketdata.record_source import FileReplaySource
from ifd_core.marketdata.record_union import multiset_delta, union_records
from tests.conftest import NT
from tests.helpers import recut
from warehouse.ingest import ingest_files
from warehouse.sql import query

MBO = (
    NT
    / "order_book_deltas_catalog/databento/orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst"
)  # noqa: E501
DEFS = NT / "order_book_deltas_catalog/databento/orderbooks_definition.dbn.zst"
DISTINCT, TRADES, CONTRACTS = 13_796, 5, 6  # the sample: all its records are distinct


@pytest.fixture(scope="module")
def records():
    return db.DBNStore.from_file(MBO).to_ndarray()


@pytest.fixture
def loaded(lake):
    assert ingest_files([DEFS], lake).ok
    return lake


def counts(lake) -> tuple[int, int, int]:
    mbo = query(lake, "SELECT count(*) FROM mbo").item()
    t = query(lake, "SELECT count(*) AS n, sum(size) AS c FROM trades").row(0)
    return mbo, t[0], t[1]


def test_the_second_half_after_the_whole_file_adds_nothing(loaded, tmp_path, records):
    """The hostile tester's case: 20,694 rows and 10 trades / 12 contracts before."""
    half = recut(MBO, tmp_path / "second-half.mbo.dbn", records[len(records) // 2 :])
    report = ingest_files([MBO, half], loaded)
    assert report.ok
    assert counts(loaded) == (DISTINCT, TRADES, CONTRACTS)
    assert report.files[1].rows == {"mbo": 0, "trades": 0}
    assert report.files[1].duplicates["mbo"] == len(records) - len(records) // 2
    log = loaded.scan("ingest_log").filter(pl.col("schema") == "mbo").collect()
    assert sum(json.loads(r)["mbo"] for r in log["rows"]) == DISTINCT


def test_halves_thirds_and_the_file_again_under_another_name(loaded, tmp_path, records):
    n = len(records)
    pieces = [
        recut(MBO, tmp_path / "a.mbo.dbn", records[: n // 2]),
        recut(MBO, tmp_path / "b.mbo.dbn", records[n // 3 : 2 * n // 3]),  # overlaps a and c
        recut(MBO, tmp_path / "c.mbo.dbn", records[n // 2 :]),
        recut(MBO, tmp_path / "renamed.mbo.dbn", records),
    ]
    for i, p in enumerate(pieces):
        assert ingest_files([p], loaded).ok
        if i == 2:  # a and c tile the file: complete before the whole arrives
            assert counts(loaded) == (DISTINCT, TRADES, CONTRACTS)
    assert counts(loaded) == (DISTINCT, TRADES, CONTRACTS)
    assert ingest_files([MBO], loaded).files[0].rows == {"mbo": 0, "trades": 0}


def test_three_way_overlap_in_one_run(loaded, tmp_path, records):
    n = len(records)
    files = [
        recut(MBO, tmp_path / "x.mbo.dbn", records[: 2 * n // 3]),
        recut(MBO, tmp_path / "y.mbo.dbn", records[n // 3 :]),
        recut(MBO, tmp_path / "z.mbo.dbn", records[n // 4 : 3 * n // 4]),
    ]
    assert ingest_files(files, loaded).ok
    assert counts(loaded) == (DISTINCT, TRADES, CONTRACTS)


def test_copies_inside_one_file_stay_copies_across_files_go(loaded, tmp_path, records):
    """A file repeating a fill twice (as CME does in a packet) keeps both; another file holding it
    once adds nothing; a third holding it three times adds exactly one."""
    trade = records[np.flatnonzero(records["action"] == b"T")[0]]
    rest = records[records["action"] != b"T"][:100]
    two = recut(MBO, tmp_path / "two.mbo.dbn", np.concatenate([rest, [trade, trade]]))
    one = recut(MBO, tmp_path / "one.mbo.dbn", np.concatenate([rest[:10], [trade]]))
    three = recut(MBO, tmp_path / "three.mbo.dbn", np.array([trade, trade, trade]))
    assert ingest_files([two], loaded).ok
    assert counts(loaded)[:2] == (102, 2)
    assert ingest_files([one], loaded).files[0].rows == {"mbo": 0, "trades": 0}
    assert ingest_files([three], loaded).files[0].rows == {"mbo": 1, "trades": 1}
    assert counts(loaded)[:2] == (103, 3)


def test_the_replay_of_overlapping_files_is_their_union(tmp_path, records):
    n = len(records)
    a = recut(MBO, tmp_path / "a.mbo.dbn", records[: 2 * n // 3])
    b = recut(MBO, tmp_path / "b.mbo.dbn", records[n // 3 :])
    replayed = np.concatenate([b.records for b in FileReplaySource([a, b]).batches()])
    whole = np.concatenate([b.records for b in FileReplaySource([MBO]).batches()])
    assert len(replayed) == n
    assert replayed.tobytes() == whole.tobytes()


def test_union_and_delta_count_copies():
    dt = np.dtype([("a", "<u8"), ("b", "<i4")])
    x = np.array([(1, 2), (1, 2), (5, 6)], dtype=dt)
    y = np.array([(1, 2), (9, 9), (5, 6), (5, 6)], dtype=dt)
    ux, uy = union_records([x, y])
    assert ux.tolist() == [(1, 2), (1, 2), (5, 6)] and uy.tolist() == [(9, 9), (5, 6)]
    new = pl.DataFrame({"k": [1, 1, 1, 2, None], "v": ["a", "a", "a", "b", None]})
    old = pl.DataFrame({"k": [1, 2, None, 3], "v": ["a", "b", None, "c"]})
    assert multiset_delta(new, old, ["k", "v"]).rows() == [(1, "a"), (1, "a")]


def test_a_lake_of_the_older_layout_is_adopted_whole(loaded, tmp_path):
    """A data root copied with its links followed (or written before snapshots) has a real
    `lake/` folder: the first use turns it into snapshot 0 without losing a row."""
    import os
    import shutil

    from warehouse.lake import Lake

    assert ingest_files([MBO], loaded).ok
    before = counts(loaded)
    copy = tmp_path / "copy"
    shutil.copytree(loaded.root, copy, symlinks=False)  # follows every link: real folders
    assert (copy / "lake").is_dir() and not (copy / "lake").is_symlink()
    moved = Lake(copy)
    assert counts(moved) == before
    assert os.path.islink(copy / "lake") and moved.snapshot_id() == 0
    assert ingest_files([MBO], moved).files[0].rows == {"mbo": 0, "trades": 0}
