"""A trader's ledger into the lake: the same ``orders`` / ``fills`` / ``positions`` tables the paper
executor fills, and the broker's fees of real-money fills into the cost ledger (docs/operations.md
§Costs: commissions and exchange fees are trading costs, kept apart from data cost)."""

from __future__ import annotations

import datetime as dt

import polars as pl

from ifd_core.settings import Settings
from ifd_core.trading.paper import DayLedger
from warehouse.cost_ledger import LakeCostLedger
from warehouse.lake import Lake
from warehouse.tables import TABLES

LEDGER = ("orders", "fills", "positions")


def ledger_frames(ledger: DayLedger, day: dt.date, origin: str) -> dict[str, pl.DataFrame]:
    out = {}
    for t in LEDGER:
        rows = [{"date": day, "origin": origin, **r} for r in getattr(ledger, t)]
        schema = TABLES[t].pl_schema
        df = pl.DataFrame(rows, schema=schema) if rows else TABLES[t].empty()
        out[t] = df.select(list(TABLES[t].schema))
    return out


def write_trader_ledger(
    lake: Lake, settings: Settings, ledger: DayLedger, day: dt.date, origin: str, key: str
) -> list[dict]:
    """Publish the day's rows under ``key`` (idempotent: a rerun replaces them); returns the
    cost-ledger entries booked for real-money fills (none for paper and IB paper accounts)."""
    frames = ledger_frames(ledger, day, origin)
    for t, df in frames.items():
        lake.replace_day(t, day, df, key)
    return LakeCostLedger(lake, settings.costs).book_trading_fees(frames["fills"])
