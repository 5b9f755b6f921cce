"""The file replay source: one ts_recv-ordered stream, definitions first, any batch size."""

from __future__ import annotations

import numpy as np
import pytest

from ifd_core.marketdata.record_source import FileReplaySource
from ifd_core.simulator.market import simulate_market


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    return simulate_market(out, 1, 5, scale=0.1).files


@pytest.mark.parametrize("batch_records", [1_000, 37_777, 10_000_000])
def test_stream_is_ordered_complete_and_defines_before_use(day, batch_records):
    batches = list(FileReplaySource(day, batch_records=batch_records).batches())
    assert all(len(b) <= batch_records for b in batches)
    ts = np.concatenate([b.records["ts_recv"] for b in batches])
    assert np.all(np.diff(ts.astype(np.int64)) >= 0)
    counts = {}
    for b in batches:
        counts[b.schema] = counts.get(b.schema, 0) + len(b)
    from ifd_core.marketdata.dbn_files import read_dbn

    expected = {}
    for p in day:
        for s, a in read_dbn(p).arrays.items():
            expected[s] = expected.get(s, 0) + len(a)
    assert counts == expected
    defined: set[int] = set()
    for b in batches:
        ids = set(np.unique(b.records["instrument_id"]).tolist())
        if b.schema == "definition":
            defined |= ids
        else:
            assert ids <= defined


def test_same_records_whatever_the_batch_size(day):
    def flat(n):
        return [
            (b.schema, b.records.tobytes())
            for b in FileReplaySource(day, batch_records=n).batches()
        ]

    small = b"".join(r for s, r in flat(5_000) if s == "mbo")
    large = b"".join(r for s, r in flat(1_000_000) if s == "mbo")
    assert small == large
