"""The compact batch Great Expectations evaluates: each checked column's distinct values.

Every expectation of the suites (expectations/suites.py) is a *per-value* rule: set membership,
not null, between, and the boolean ``chk_*`` columns derive.py computes over every row. A row's
verdict depends on its own value only, so a rule fails on the batch exactly when it fails on one
of the column's distinct values, and the rows it fails on are exactly the rows holding those
values. polars finds each column's distinct values and counts them over every row (one pass,
exact); GX then runs the whole suite on a frame of those values (thousands of rows instead of
millions, docs/lake.md "Validation"), and the runner turns GX's unexpected values back into
exact row counts and the batch's own first unexpected rows. Nothing is sampled.

Rules that are not per-value (uniqueness, monotonic order, aggregates) would not survive the
compaction: :func:`require_per_value` refuses them, so such a rule is written as a ``chk_*``
column in derive.py instead (as ``chk_sorted`` and ``chk_duplicate`` are).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

# GX expectations whose verdict on a row depends on that row's value alone.
PER_VALUE = frozenset(
    {
        "ExpectColumnValuesToBeInSet",
        "ExpectColumnValuesToNotBeInSet",
        "ExpectColumnValuesToNotBeNull",
        "ExpectColumnValuesToBeNull",
        "ExpectColumnValuesToBeBetween",
    }
)
COUNT = "__count"
SAMPLE = 20  # rows kept as GX's partial_unexpected_list (its SUMMARY format keeps 20)


def require_per_value(dataset: str, rules: list[tuple[str, dict]]) -> None:
    """Refuse a suite holding a rule the compaction would not evaluate exactly."""
    other = sorted({name for name, _ in rules if name not in PER_VALUE})
    if other:
        raise ValueError(
            f"suite {dataset!r}: {', '.join(other)} is not a per-value rule and cannot be "
            "validated on distinct values; compute it over the rows as a chk_* column "
            "(expectations/derive.py) and check that column with ExpectColumnValuesToBeInSet"
        )


@dataclass(frozen=True)
class Compact:
    """Distinct values per column with their exact row counts, and the
    frame GX sees: every column padded to a common length by repeating its first value, which
    no per-value rule can change the verdict of."""

    height: int  # rows of the batch
    distinct: dict[str, pl.DataFrame]  # column -> [column, __count]
    frame: pl.DataFrame

    def rows_of(self, column: str, positions: list[int]) -> tuple[pl.DataFrame, int]:
        """The distinct values at ``positions`` of the GX frame (padding rows fold onto the
        value they repeat) and the exact number of batch rows holding them."""
        d = self.distinct[column]
        picked = sorted({p if p < d.height else 0 for p in positions})
        values = d[picked] if picked else d.clear()
        return values, int(values[COUNT].sum()) if picked else 0

    def nulls(self, column: str) -> int:
        d = self.distinct[column]
        return int(d.filter(pl.col(column).is_null())[COUNT].sum())


def compact(frame: pl.DataFrame) -> Compact:
    """Each column's distinct values and row counts, sorted by value (a stable frame for the
    Data Docs). Boolean columns (the ``chk_*`` facts) are counted with three sums in one pass;
    the others with one group-by each, run together (polars spreads them over the cores)."""
    flags = [c for c, t in frame.schema.items() if t == pl.Boolean]
    others = [c for c in frame.columns if c not in flags]
    distinct = {}
    if flags:
        sums = frame.select(
            *[pl.col(c).sum().alias(f"{c}:t") for c in flags],
            *[pl.col(c).null_count().alias(f"{c}:n") for c in flags],
        ).row(0, named=True)
        for c in flags:
            n_true, n_null = int(sums[f"{c}:t"]), int(sums[f"{c}:n"])
            counts = {False: frame.height - n_true - n_null, True: n_true, None: n_null}
            kept = [(v, k) for v, k in counts.items() if k]
            distinct[c] = pl.DataFrame(
                {c: [v for v, _ in kept], COUNT: [k for _, k in kept]},
                schema={c: pl.Boolean, COUNT: pl.Int64},
            )
    plans = [
        frame.lazy().group_by(c).agg(pl.len().cast(pl.Int64).alias(COUNT)).sort(c, nulls_last=True)
        for c in others
    ]
    distinct |= dict(zip(others, pl.collect_all(plans), strict=True))
    distinct = {c: distinct[c] for c in frame.columns}
    length = max((d.height for d in distinct.values()), default=0)
    columns = []
    for c, d in distinct.items():
        values = d[c]
        if 0 < values.len() < length:
            values = values.append(values.gather([0] * (length - d.height)))
        columns.append(values)
    return Compact(frame.height, distinct, pl.DataFrame(columns) if columns else frame.clear())
