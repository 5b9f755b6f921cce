"""The cost ledger in the lake: an append-only event table of quotes, spend and fees (§2.9).

Every quote the budget gate sees, every spend it allows and every fee is one row of the
``cost_ledger`` table; the month's spend is a query over those rows, never a counter kept in
memory, so two processes (a nightly backfill and a CLI download) read the same truth and a crash
cannot lose or double a total. Rows are never updated: a correction is a new row.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import polars as pl

from ifd_core.ops.budget import ENTRY_TYPES, SPEND_ENTRY_TYPES
from warehouse.lake import Lake
from warehouse.migrations import ensure_migrated
from warehouse.tables import TABLES

TABLE = "cost_ledger"
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_FILLED = ("date", "entry_id", "ts", "month")


def month_of(ts: dt.datetime) -> str:
    """The ledger month ("YYYY-MM") of a UTC timestamp."""
    return ts.astimezone(dt.UTC).strftime("%Y-%m")


def _check_month(month: str) -> str:
    if not _MONTH.match(month):
        raise ValueError(f"month must look like 'YYYY-MM', got {month!r}")
    return month


class LakeCostLedger:
    """``CostLedger`` over the lake's ``cost_ledger`` table (one Parquet file per append)."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        # The seed file the migration writes is what lets an empty ledger be scanned.
        ensure_migrated(lake)

    def _row(self, entry: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
        columns = TABLES[TABLE].schema
        unknown = set(entry) - set(columns)
        if unknown:
            raise ValueError(f"cost ledger entry has unknown fields {sorted(unknown)}")
        entry_type = entry.get("entry_type")
        if entry_type not in ENTRY_TYPES:
            raise ValueError(
                f"cost ledger entry_type must be one of {', '.join(ENTRY_TYPES)}; "
                f"got {entry_type!r}"
            )
        amount = entry.get("amount_usd")
        if not isinstance(amount, int | float) or isinstance(amount, bool):
            raise ValueError(f"cost ledger amount_usd must be a number, got {amount!r}")
        ts = entry.get("ts") or now
        if not isinstance(ts, dt.datetime) or ts.tzinfo is None:
            raise ValueError(f"cost ledger ts must be a timezone-aware datetime, got {ts!r}")
        ts = ts.astimezone(dt.UTC)
        month = month_of(ts)
        if entry.get("month") not in (None, month):
            raise ValueError(f"entry month {entry['month']!r} does not match its ts {ts}")
        row = {c: entry.get(c) for c in columns if c not in _FILLED}
        row.update(
            date=ts.date(),
            entry_id=entry.get("entry_id") or uuid.uuid4().hex,
            ts=ts,
            month=month,
            amount_usd=float(amount),
        )
        return row

    def append(self, entries: list[dict[str, Any]]) -> None:
        """Validate and publish ``entries`` atomically (all of them or none).

        Fills ``entry_id`` (uuid), ``ts`` (now, UTC), ``month`` and ``date`` when absent.
        """
        if not entries:
            return
        now = dt.datetime.now(dt.UTC)
        rows = [self._row(e, now) for e in entries]
        df = pl.DataFrame(rows, schema=TABLES[TABLE].pl_schema, orient="row")
        # One file per append, named by a fresh id: appends never replace each other.
        self.lake.write(TABLE, df, key=f"ledger-{uuid.uuid4().hex}")

    def entries(self, month: str | None = None) -> pl.DataFrame:
        """All ledger rows (of one month if given), oldest first."""
        lf = self.lake.scan(TABLE)
        if month is not None:
            lf = lf.filter(pl.col("month") == _check_month(month))
        return lf.sort("ts", "entry_id").collect()

    def spent_in_month(self, month: str) -> float:
        """Data spend booked in ``month``: spend entry types only (quotes and fees excluded)."""
        total = (
            self.lake.scan(TABLE)
            .filter(
                (pl.col("month") == _check_month(month))
                & pl.col("entry_type").is_in(list(SPEND_ENTRY_TYPES))
            )
            .select(pl.col("amount_usd").sum())
            .collect()
            .item()
        )
        return float(total or 0.0)
