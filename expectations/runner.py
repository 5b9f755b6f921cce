"""Validate batches with Great Expectations (pandas frames: GX's DuckDB path is broken upstream).

GX evaluates each suite on the batch's distinct values per checked column, counted exactly over
every row by polars (expectations/compact.py): the same verdicts, counts and samples as GX on the
rows, at a fraction of the cost.

One ephemeral GX context per process, built on first use; each dataset's suite is registered
once. ``validate`` returns plain rows for the ``dq_results`` table and a one-line reason for the
first failures, so callers never touch GX objects.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import warnings
from dataclasses import dataclass
from functools import cache, lru_cache

import polars as pl

from expectations.compact import COUNT, SAMPLE, Compact, compact, require_per_value
from expectations.derive import with_checks
from expectations.suites import SUITES

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


@dataclass
class Validation:
    dataset: str
    success: bool
    rows: list[dict]
    reason: str  # empty on success

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if not r["success"]]


@lru_cache(maxsize=1)
def _context():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import great_expectations as gx

        ctx = gx.get_context(mode="ephemeral")
        # GX draws a tqdm bar per validation; IFD reports progress itself.
        ctx.variables.progress_bars = {"globally": False, "metric_calculations": False}
        ds = ctx.data_sources.add_pandas(name="ifd_batches")
    return ctx, ds


def prepare() -> None:
    """Start GX now (its import and context take seconds, ~10-20 s on a busy machine), so that
    a caller can say so rather than seem stuck on its first file; later calls cost nothing."""
    _context()


@cache
def _definition(dataset: str):
    import great_expectations as gx

    from expectations.suites import build_suite

    ctx, ds = _context()
    asset = ds.add_dataframe_asset(name=dataset)
    batch_def = asset.add_batch_definition_whole_dataframe(f"{dataset}_batch")
    suite = ctx.suites.add(build_suite(dataset))
    return ctx.validation_definitions.add(
        gx.ValidationDefinition(name=f"{dataset}_validation", data=batch_def, suite=suite)
    )


def validate(
    dataset: str, df: pl.DataFrame, ticks: pl.DataFrame, run_id: str, source_file: str
) -> Validation:
    """Validate every row of ``df`` with the dataset's suite.

    The row-level work is polars' (derive.py's ``chk_*`` columns, then each checked column's
    distinct values with exact counts, expectations/compact.py); GX runs every expectation of
    the suite on those distinct values, and its result is completed with the batch's exact
    counts and first unexpected rows before it is returned and stored for the Data Docs."""
    return validate_checked(dataset, with_checks(dataset, df, ticks), run_id, source_file)


def validate_checked(dataset: str, checked: pl.DataFrame, run_id: str, source_file: str):
    """:func:`validate` on a batch whose ``chk_*`` columns are computed already."""
    rules = SUITES[dataset]
    require_per_value(dataset, rules)
    needed = {kw["column"] for _, kw in rules if "column" in kw}
    # Unsigned columns as int64: pandas' uint64 arithmetic wraps (seen with GX 1.24 + pandas 3).
    frame = checked.select(sorted(needed))
    unsigned = (pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)
    frame = frame.with_columns(
        pl.col(c).cast(pl.Int64) for c, t in frame.schema.items() if t in unsigned
    )
    values = compact(frame)
    now = dt.datetime.now(dt.UTC)
    # IFD's run id names the run in the Data Docs (expectations/data_docs.py), the same id
    # dq_results carries.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from great_expectations.core.run_identifier import RunIdentifier

        run = RunIdentifier(run_name=run_id, run_time=now)
        result = _definition(dataset).run(
            batch_parameters={"dataframe": values.frame.to_pandas()},
            result_format="COMPLETE",  # every unexpected distinct value, by position
            run_id=run,
        )
    rows, problems = [], []
    for r in result.results:
        cfg = r.expectation_config
        column = cfg.kwargs.get("column", "")
        res = _exact(cfg.type, column, r.result or {}, values, frame)
        r.result = res
        row = {
            "run_id": run_id,
            "validated_at": now,
            "dataset": dataset,
            "source_file": source_file,
            "suite": f"ifd_{dataset}",
            "expectation": cfg.type,
            "column": column,
            "success": bool(r.success),
            "element_count": res["element_count"],
            "unexpected_count": res["unexpected_count"],
            "unexpected_percent": float(res["unexpected_percent"] or 0.0),
            "partial_unexpected": json.dumps(res["partial_unexpected_list"][:10], default=str),
            "batch_success": bool(result.success),
        }
        rows.append(row)
        if not r.success:
            problems.append(_describe(dataset, row, checked))
    _restore(dataset, run, result)
    return Validation(dataset, bool(result.success), rows, "; ".join(problems))


def _exact(kind: str, column: str, res: dict, values: Compact, frame: pl.DataFrame) -> dict:
    """GX's SUMMARY result over the whole batch, from its COMPLETE result on the distinct
    values: the unexpected values GX found, counted over every row by polars, and the batch's
    first unexpected rows as the sample (what GX itself reports when it runs on the rows)."""
    bad, unexpected = values.rows_of(column, res.get("unexpected_index_list") or [])
    n = values.height
    sample, index = [], []
    if unexpected:
        hit = pl.col(column).is_in(bad[column].drop_nulls().implode())
        if bad[column].null_count():
            hit = hit | pl.col(column).is_null()
        first = frame.select(column).with_row_index("i").filter(hit).head(SAMPLE)
        sample, index = first[column].to_list(), first["i"].to_list()
    counts = sorted(zip(bad[column].to_list(), bad[COUNT].to_list(), strict=True), key=_by_count)
    out = {
        "element_count": n,
        "unexpected_count": unexpected,
        "unexpected_percent": 100.0 * unexpected / n if n else None,
        "partial_unexpected_list": sample,
        "partial_unexpected_counts": [{"value": v, "count": c} for v, c in counts[:SAMPLE]],
        "partial_unexpected_index_list": index,
    }
    if kind not in ("expect_column_values_to_not_be_null", "expect_column_values_to_be_null"):
        # GX leaves nulls out of other rules: percent of the non-null rows, as GX reports it
        missing = values.nulls(column)
        nonmissing = n - missing
        pct = 100.0 * unexpected / nonmissing if nonmissing else None
        out |= {
            "unexpected_percent": pct,
            "missing_count": missing,
            "missing_percent": 100.0 * missing / n if n else None,
            "unexpected_percent_total": 100.0 * unexpected / n if n else None,
            "unexpected_percent_nonmissing": pct,
        }
    return out


def _by_count(item: tuple) -> tuple:
    value, count = item
    return (-count, value is None, str(value) if value is not None else "")


def _restore(dataset: str, run, result) -> None:
    """Store the completed result in place of the one GX stored on the distinct values, so the
    Data Docs show the batch's exact counts."""
    ctx, _ = _context()
    store = ctx.validation_results_store
    suite = f"ifd_{dataset}"
    for key in store.list_keys():
        if key.run_id == run and key.expectation_suite_identifier.name == suite:
            store.set(key, result)


def _describe(dataset: str, row: dict, checked: pl.DataFrame) -> str:
    col, n = row["column"], row["unexpected_count"]
    if col == "chk_known":
        ids = checked.filter(~pl.col("chk_known"))
        days = sorted({str(d) for d in ids["date"].unique().to_list()})
        sample = sorted(ids["instrument_id"].unique().to_list())[:5]
        return (
            f"{n} {dataset} records for instrument ids {sample} with no definition on "
            f"{', '.join(days[:3])}; ingest that day's definition file first"
        )
    what = {
        "chk_on_grid": "prices off the instrument's tick grid",
        "chk_duplicate": "duplicate records",
        "chk_ts_recv_ge_event": "records with ts_recv before ts_event",
        "chk_trade_size": "trades or fills with size 0",
        "chk_sorted": "records out of ts_recv order",
        "chk_bar_order": "bars out of ts_event order",
        "chk_oi_agrees": "options whose open interest differs from Barchart's beyond "
        "barchart.oi_tolerance",
        "chk_settlement_agrees": "options whose settlement differs from Barchart's beyond "
        "barchart.settlement_tolerance",
        "chk_in_databento": "of Barchart's options missing from Databento's statistics",
        "chk_in_barchart": "of Databento's options missing from Barchart's chain",
    }.get(col, f"unexpected values in {col}")
    detail = f" (e.g. {row['partial_unexpected']})" if not col.startswith("chk_") else ""
    return f"{dataset}: {n} {what}{detail} [{row['expectation']}]"
