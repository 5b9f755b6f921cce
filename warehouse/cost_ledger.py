"""The cost ledger in the lake: an append-only event table of quotes, spend and fees.

Every quote the budget gate sees, every spend it allows and every fee is one ``cost_ledger`` row;
the month's spend is a query, never a counter, so processes share one truth and a crash cannot lose
or double a total. Rows are never updated (a correction is a new row), and booked costs carry
deterministic entry ids under file keys derived from them, so booking twice writes nothing new
(docs/operations.md §Costs).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from typing import Any

import polars as pl

from ifd_core.ops.budget import ENTRY_TYPES, SPEND_ENTRY_TYPES
from ifd_core.ops.costs import live_usage_entry, subscription_entries, trading_fee_entries
from ifd_core.settings import CostSettings, price_on
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

    def __init__(self, lake: Lake, costs: CostSettings | None = None) -> None:
        self.lake = lake
        self.costs = costs
        """Prices for the ``book_*`` methods (``settings.costs``); plain appends need none."""
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
        # One file per append, named by a fresh id: appends never replace each other.
        self._write(entries, key=f"ledger-{uuid.uuid4().hex}")

    def _write(self, entries: list[dict[str, Any]], key: str) -> None:
        if not entries:
            return
        now = dt.datetime.now(dt.UTC)
        rows = [self._row(e, now) for e in entries]
        df = pl.DataFrame(rows, schema=TABLES[TABLE].pl_schema, orient="row")
        self.lake.write(TABLE, df, key=key)

    def entries(self, month: str | None = None) -> pl.DataFrame:
        """All ledger rows (of one month if given), oldest first."""
        lf = self.lake.scan(TABLE)
        if month is not None:
            lf = lf.filter(pl.col("month") == _check_month(month))
        return (
            lf.sort("ts", "entry_id")
            .unique(subset="entry_id", keep="first", maintain_order=True)
            .collect()
        )

    def spent_in_month(self, month: str) -> float:
        """Data spend booked in ``month``: spend entry types only (quotes and fees excluded)."""
        total = (
            self.lake.scan(TABLE)
            .filter(
                (pl.col("month") == _check_month(month))
                & pl.col("entry_type").is_in(list(SPEND_ENTRY_TYPES))
            )
            .unique(subset="entry_id", keep="first")
            .select(pl.col("amount_usd").sum())
            .collect()
            .item()
        )
        return float(total or 0.0)

    # ---------------------------------------------------------------- booking from prices
    def _prices(self) -> CostSettings:
        if self.costs is None:
            raise ValueError(
                "this ledger was opened without prices: use LakeCostLedger(lake, settings.costs)"
            )
        return self.costs

    def _existing(self) -> pl.DataFrame:
        return (
            self.lake.scan(TABLE)
            .select("entry_id", "entry_type", "date", "request_id", "billable_bytes")
            .collect()
        )

    def book_subscriptions(
        self, through: dt.date, since: dt.date | None = None
    ) -> list[dict[str, Any]]:
        """Book the prorated subscription fees of every calendar day up to ``through``.

        Starts at the first of ``through``'s month, or earlier when the last booked day is
        earlier (a scheduler that was down for a week catches up), or at ``since`` when given;
        never before the first configured price period. Days already booked are skipped, so
        calling it twice leaves the same rows. Returns the entries written (empty without
        prices: nothing is invented).
        """
        costs = self._prices()
        if not costs.prices:
            return []
        existing = self._existing()
        subs = existing.filter(pl.col("entry_type") == "subscription_fee")
        start = since or through.replace(day=1)
        if since is None and subs.height:
            last = subs["date"].max()
            if last is not None and last + dt.timedelta(days=1) < start:
                start = last + dt.timedelta(days=1)
        start = max(start, costs.prices[0].effective_from)
        ids = set(existing["entry_id"].to_list())
        booked: list[dict[str, Any]] = []
        day = start
        while day <= through:
            rows = [
                r
                for r in subscription_entries(price_on(costs, day), day)
                if r["entry_id"] not in ids
            ]
            # One file per day, named by its entries: a concurrent booking of the same day
            # publishes the same name (identical rows), a later addition a different one.
            self._write(rows, key=f"sub-{day.isoformat()}-{_digest(r['entry_id'] for r in rows)}")
            booked += rows
            day += dt.timedelta(days=1)
        return booked

    def book_live_usage(self, run_id: str, day: dt.date, total_bytes: int) -> dict | None:
        """Book a live run's data received on ``day`` (its cumulative byte count) at the per-GB
        rate in force; only the increase over what is booked for that run and day is a new
        entry. None when nothing is booked (flat-rate live, no prices, no increase)."""
        costs = self._prices()
        existing = self._existing().filter(
            (pl.col("entry_type") == "live_usage")
            & (pl.col("request_id") == run_id)
            & (pl.col("date") == day)
        )
        booked_bytes = int(existing["billable_bytes"].fill_null(0).sum())
        entry = live_usage_entry(price_on(costs, day), run_id, day, total_bytes, booked_bytes)
        if entry is None or entry["entry_id"] in set(existing["entry_id"].to_list()):
            return None
        self._write([entry], key=f"live-{_digest([entry['entry_id']])}")
        return entry

    def book_trading_fees(self, fills: pl.DataFrame) -> list[dict[str, Any]]:
        """Book broker commission and exchange fee (two entries) of each real-money fill not
        booked yet; paper, shadow and backtest fills are ignored (simulated fees)."""
        costs = self._prices()
        rows = trading_fee_entries(fills, lambda d: price_on(costs, d))
        ids = set(self._existing()["entry_id"].to_list())
        rows = [r for r in rows if r["entry_id"] not in ids]
        self._write(rows, key=f"fees-{_digest(r['entry_id'] for r in rows)}")
        return rows


def _digest(ids) -> str:
    """A short stable name for a set of entry ids (lake file keys allow [A-Za-z0-9_.=-] only)."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]
