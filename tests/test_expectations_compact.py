"""GX on distinct values (expectations/compact.py) is as strict as GX on every row.

For every expectation of every suite, one bad row among valid ones is caught with the exact
count and the row's value as the sample; the same value on several rows counts every row; and
the dq rows equal what GX reports when it runs the suite over the full rows.
"""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import polars as pl
import pytest

from expectations.compact import compact, require_per_value
from expectations.runner import _definition, validate_checked
from expectations.suites import SUITES

N = 60
CASES = [(ds, i) for ds, rules in SUITES.items() for i in range(len(rules))]


def _good(rule: tuple[str, dict], n: int) -> list:
    """Valid values for one rule's column, varied, with nulls where a rule ignores them."""
    name, kw = rule
    if name == "ExpectColumnValuesToNotBeNull":
        return [f"S{i % 7}" if kw["column"] == "raw_symbol" else 5000 + i % 9 for i in range(n)]
    if name == "ExpectColumnValuesToBeBetween":
        return [kw["min_value"] + i % 5 for i in range(n)]
    allowed = kw["value_set"]
    if allowed in ([True], [False]):  # a chk_* column: null = the rule does not apply
        return [None if i % 4 == 3 else allowed[0] for i in range(n)]
    return [allowed[i % len(allowed)] for i in range(n)]


def _bad(rule: tuple[str, dict]):
    name, kw = rule
    if name == "ExpectColumnValuesToNotBeNull":
        return None
    if name == "ExpectColumnValuesToBeBetween":
        return kw["min_value"] - 1
    allowed = kw["value_set"]
    if allowed in ([True], [False]):
        return not allowed[0]
    return "Z" if isinstance(allowed[0], str) else max(allowed) + 1


def _batch(dataset: str, bad_rows: dict[int, tuple[str, object]] | None = None) -> pl.DataFrame:
    rules = SUITES[dataset]
    cols = {kw["column"]: _good((name, kw), N) for name, kw in rules}
    for row, (column, value) in (bad_rows or {}).items():
        cols[column][row] = value
    frame = pl.DataFrame(cols, strict=False)
    day = pl.lit(dt.date(2026, 3, 2)).alias("date")
    if "instrument_id" not in frame.columns:
        frame = frame.with_columns(pl.lit(5001).alias("instrument_id"))
    return frame.with_columns(day)


def _rows(validation) -> dict[tuple[str, str], dict]:
    return {(r["expectation"], r["column"]): r for r in validation.rows}


@pytest.mark.parametrize(("dataset", "i"), CASES, ids=[f"{d}-{i}" for d, i in CASES])
def test_one_bad_row_of_each_rule_is_caught_with_its_exact_count(dataset, i):
    rule = SUITES[dataset][i]
    column, bad = rule[1]["column"], _bad(rule)
    v = validate_checked(dataset, _batch(dataset, {17: (column, bad)}), "t-one", "f")
    assert not v.success
    failed = [r for r in v.rows if not r["success"]]
    assert [r["column"] for r in failed] == [column]  # every other rule still passes
    (row,) = failed
    assert row["element_count"] == N and row["unexpected_count"] == 1
    assert json.loads(row["partial_unexpected"]) == [bad]
    # the quarantine reason names the exact count
    assert v.reason.startswith((f"{dataset}: 1 ", f"1 {dataset} records")), v.reason


@pytest.mark.parametrize(("dataset", "i"), CASES, ids=[f"{d}-{i}" for d, i in CASES])
def test_counts_are_rows_not_distinct_values(dataset, i):
    """The same bad value on four rows is four unexpected rows, sampled in row order."""
    rule = SUITES[dataset][i]
    column, bad = rule[1]["column"], _bad(rule)
    rows = {r: (column, bad) for r in (3, 11, 40, 59)}
    row = _rows(validate_checked(dataset, _batch(dataset, rows), "t-many", "f"))[
        (_snake(rule[0]), column)
    ]
    assert not row["success"] and row["unexpected_count"] == 4
    assert json.loads(row["partial_unexpected"]) == [bad] * 4


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


@pytest.mark.parametrize("dataset", list(SUITES))
def test_dq_rows_equal_gx_run_over_every_row(dataset):
    """Reference: GX's own SUMMARY over the full rows (what the runner did before)."""
    rules = SUITES[dataset]
    bad_rows = {}
    for k, rule in enumerate(rules):  # several rules broken at once, some twice
        bad_rows[(7 * k + 2) % N] = (rule[1]["column"], _bad(rule))
        if k % 2:
            bad_rows[(7 * k + 30) % N] = (rule[1]["column"], _bad(rule))
    checked = _batch(dataset, bad_rows)
    ours = _rows(validate_checked(dataset, checked, "t-ref", "f"))
    needed = sorted({kw["column"] for _, kw in rules})
    full = _definition(dataset).run(
        batch_parameters={"dataframe": checked.select(needed).to_pandas()},
        result_format="SUMMARY",
    )
    assert len(full.results) == len(ours) == len(rules)
    for r in full.results:
        mine = ours[(r.expectation_config.type, r.expectation_config.kwargs["column"])]
        res = r.result
        assert mine["success"] == r.success
        assert mine["element_count"] == res["element_count"] == N
        assert mine["unexpected_count"] == res["unexpected_count"]
        assert mine["unexpected_percent"] == pytest.approx(res["unexpected_percent"])
        theirs = [None if pd.isna(x) else x for x in res["partial_unexpected_list"][:10]]
        assert json.loads(mine["partial_unexpected"]) == theirs


def test_gx_sees_distinct_values_not_rows():
    frame = pl.DataFrame({"a": ["x", "y", "x", None, "y"], "b": [True] * 5})
    values = compact(frame)
    assert values.frame.height == 3  # x, y, null
    assert values.frame["a"].to_list() == ["x", "y", None]
    assert values.frame["b"].to_list() == [True, True, True]  # padded with its own value
    assert values.distinct["a"]["__count"].to_list() == [2, 2, 1]
    assert values.rows_of("a", [1])[1] == 2 and values.nulls("a") == 1
    assert values.rows_of("b", [2])[1] == 5  # a padding row folds onto the value it repeats


def test_a_rule_that_is_not_per_value_is_refused():
    with pytest.raises(ValueError, match="not a per-value rule"):
        require_per_value("mbo", [("ExpectColumnValuesToBeIncreasing", {"column": "ts_recv"})])
    for dataset, rules in SUITES.items():
        require_per_value(dataset, rules)  # every shipped suite compacts exactly


def test_stored_result_for_the_data_docs_carries_the_row_counts():
    from expectations.runner import _context

    rule = SUITES["mbo"][0]
    rows = {r: (rule[1]["column"], _bad(rule)) for r in (5, 6, 7)}
    validate_checked("mbo", _batch("mbo", rows), "t-docs-counts", "f")
    store = _context()[0].validation_results_store
    (key,) = [k for k in store.list_keys() if k.run_id.run_name == "t-docs-counts"]
    stored = {r.expectation_config.kwargs["column"]: r.result for r in store.get(key).results}
    assert all(r["element_count"] == N for r in stored.values())
    assert stored[rule[1]["column"]]["unexpected_count"] == 3
    assert stored[rule[1]["column"]]["partial_unexpected_index_list"] == [5, 6, 7]
    assert "unexpected_index_list" not in stored[rule[1]["column"]]  # no positions of the compact
    store.remove_key(key)
