"""Each data-quality rule catches its violation and quarantines the whole batch."""

from __future__ import annotations

import json

import pytest

from tests.fixtures import dbn_factory as f
from tests.helpers import lake_fingerprint
from warehouse.ingest import ingest_files

SYM = {"NQM6 C21000": 5001}


@pytest.fixture
def defined(tmp_path, lake):
    d = f.definition_file(tmp_path / "def.dbn.zst", {"NQM6 C21000": (5001, 21000.0)})
    assert ingest_files([d], lake).ok
    return lake_fingerprint(lake.root)


def run(tmp_path, lake, rows):
    p = f.mbo_file(tmp_path / "day.mbo.dbn.zst", rows, SYM)
    report = ingest_files([p], lake)
    return report.files[0]


def failed_columns(result) -> set[str]:
    return {r["column"] for r in result.dq if not r["success"]}


def test_valid_batch_passes_every_rule(tmp_path, lake, defined):
    result = run(tmp_path, lake, f.simple_book_rows(5001))
    assert result.ok and result.dq and all(r["success"] for r in result.dq)


@pytest.mark.parametrize(
    ("price", "ok"),
    [(12.25, True), (12.10, False), (5.00, True), (4.95, True), (4.93, False), (5.05, False)],
)
def test_option_tick_grid(tmp_path, lake, defined, price, ok):
    rows = f.simple_book_rows(5001)
    rows[0]["price"] = price
    result = run(tmp_path, lake, rows)
    assert result.ok is ok
    assert ("chk_on_grid" in failed_columns(result)) is not ok


def test_trade_with_zero_size(tmp_path, lake, defined):
    rows = f.simple_book_rows(5001)
    rows[3]["size"] = 0
    assert "chk_trade_size" in failed_columns(run(tmp_path, lake, rows))


def test_bad_action_and_side(tmp_path, lake, defined):
    rows = f.simple_book_rows(5001)
    rows[0]["action"] = "X"
    rows[1]["side"] = "Q"
    result = run(tmp_path, lake, rows)
    assert {"action", "side"} <= failed_columns(result)
    assert any(json.loads(r["partial_unexpected"]) == ["X"] for r in result.dq)


def test_ts_recv_before_ts_event(tmp_path, lake, defined):
    rows = f.simple_book_rows(5001)
    rows[2]["ts_recv"] = f.T0 - 10  # before its own ts_event, still sorted
    rows[0]["ts_recv"] = rows[1]["ts_recv"] = f.T0 - 20
    assert "chk_ts_recv_ge_event" in failed_columns(run(tmp_path, lake, rows))


def test_records_out_of_order(tmp_path, lake, defined):
    rows = f.simple_book_rows(5001)
    rows[1]["ts"], rows[2]["ts"] = 50_000, 40_000
    assert "chk_sorted" in failed_columns(run(tmp_path, lake, rows))


def test_duplicate_book_record(tmp_path, lake, defined):
    rows = f.simple_book_rows(5001)
    for i, r in enumerate(rows):
        r["ts"], r["seq"] = (i + 1) * 1000, i + 1
    rows.insert(1, dict(rows[0]))  # the same add delivered twice (e.g. at a replay seam)
    result = run(tmp_path, lake, rows)
    assert "chk_duplicate" in failed_columns(result)


def test_repeated_fill_in_one_event_is_not_a_duplicate(tmp_path, lake, defined):
    rows = f.simple_book_rows(5001)
    for i, r in enumerate(rows):
        r["ts"], r["seq"] = (i + 1) * 1000, i + 1
    rows.insert(5, dict(rows[4]))  # one resting order filled twice in a packet, as in real ESH4
    assert run(tmp_path, lake, rows).ok


def test_failure_quarantines_whole_batch_and_lake_is_unchanged(tmp_path, lake, defined):
    rows = f.simple_book_rows(5001)
    rows[0]["price"] = 12.10
    result = run(tmp_path, lake, rows)
    assert result.status == "quarantined"
    assert lake_fingerprint(lake.root) == defined
    saved = json.loads((result.quarantine_dir / "dq_results.json").read_text())
    assert any(not r["success"] and r["column"] == "chk_on_grid" for r in saved)
