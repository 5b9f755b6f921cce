"""Validate batches with Great Expectations (pandas frames: GX's DuckDB path is broken upstream).

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
    checked = with_checks(dataset, df, ticks)
    needed = {kw["column"] for _, kw in SUITES[dataset] if "column" in kw}
    # GX's increasing check diffs the column: on uint64 a decrease wraps to a huge positive step
    # and passes (seen with GX 1.24 + pandas 3), so unsigned columns are checked as int64.
    frame = checked.select(sorted(needed))
    unsigned = (pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)
    frame = frame.with_columns(
        pl.col(c).cast(pl.Int64) for c, t in frame.schema.items() if t in unsigned
    ).with_columns(  # enums as pandas categoricals: set membership on codes, not on strings
        pl.col(c).cast(pl.Categorical) for c, t in frame.schema.items() if t == pl.String
    )
    pdf = frame.to_pandas()
    now = dt.datetime.now(dt.UTC)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from great_expectations.core.run_identifier import RunIdentifier

        result = _definition(dataset).run(
            batch_parameters={"dataframe": pdf},
            result_format="SUMMARY",
            # IFD's run id names the run in the Data Docs (expectations/data_docs.py), the
            # same id dq_results carries.
            run_id=RunIdentifier(run_name=run_id, run_time=now),
        )
    rows, problems = [], []
    for r in result.results:
        cfg = r.expectation_config
        res = r.result or {}
        column = cfg.kwargs.get("column", "")
        partial = res.get("partial_unexpected_list") or []
        row = {
            "run_id": run_id,
            "validated_at": now,
            "dataset": dataset,
            "source_file": source_file,
            "suite": f"ifd_{dataset}",
            "expectation": cfg.type,
            "column": column,
            "success": bool(r.success),
            "element_count": int(res.get("element_count") or len(pdf)),
            "unexpected_count": int(res.get("unexpected_count") or 0),
            "unexpected_percent": float(res.get("unexpected_percent") or 0.0),
            "partial_unexpected": json.dumps(partial[:10], default=str),
            "batch_success": bool(result.success),
        }
        rows.append(row)
        if not r.success:
            problems.append(_describe(dataset, row, checked))
    return Validation(dataset, bool(result.success), rows, "; ".join(problems))


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
    }.get(col, f"unexpected values in {col}")
    detail = f" (e.g. {row['partial_unexpected']})" if not col.startswith("chk_") else ""
    return f"{dataset}: {n} {what}{detail} [{row['expectation']}]"
