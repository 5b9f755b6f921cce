"""Barchart's chain as v1's open interest on a date without Databento's (issue 21 §1).

Off by default (``barchart.oi_fallback``). On, for a trade date D whose lake holds no Databento
open interest for any option in force, v1 gets Barchart's chain of D (``barchart_chain``, root
``barchart.root``), placed on instrument ids by (expiration, strike, right) through the
definitions in force on D, and each v1 signal says so (``oi_source`` = ``barchart``). A chain of
any other date is never read. A date with Databento's open interest never uses Barchart's.

Point in time: the chain of D is the one the cross-check pairs with Databento's publication on D,
the open interest at the close of the session before, which the exchange publishes before D's
regular session. It is made visible from D's regular-hours open (09:30 New York), the first
instant at which it is surely public, never earlier; v1 decisions before then have no open
interest on a fallback date. The live run does not use the fallback: Barchart's chain of D is
fetched after D's close.
"""

from __future__ import annotations

import datetime as dt
import logging

import polars as pl

from ifd_core.analysis.oi_fallback import place_chain_oi
from ifd_core.calendar import RTH_OPEN_ET, et_to_ns
from ifd_core.settings import Settings
from warehouse.lake import Lake
from warehouse.tables import TABLES

log = logging.getLogger(__name__)


def known_from_ns(day: dt.date) -> int:
    """When the fallback open interest of ``day`` becomes visible to v1: 09:30 New York."""
    return et_to_ns(day, *RTH_OPEN_ET)


def option_definitions(lake: Lake, day: dt.date) -> pl.DataFrame:
    """The option definitions in force on ``day`` (latest on or before it per instrument)."""
    return (
        lake.scan("instruments")
        .filter((pl.col("date") <= day) & pl.col("instrument_class").is_in(["C", "P"]))
        .sort("date", "ts_recv")
        .collect()
        .unique("instrument_id", keep="last", maintain_order=True)
        .select("instrument_id", "expiration", "strike", "instrument_class")
    )


def databento_oi_present(lake: Lake, day: dt.date, definitions: pl.DataFrame) -> bool:
    """Whether the lake holds Databento open interest published on ``day`` for an option."""
    found = (
        lake.scan("open_interest")
        .filter(pl.col("date") == day)
        .select("instrument_id")
        .unique()
        .collect()
        .join(definitions.select("instrument_id"), on="instrument_id", how="semi")
    )
    return found.height > 0


def choose_fallback(
    settings: Settings,
    day: dt.date,
    databento_present: bool,
    chain: pl.DataFrame,
    definitions: pl.DataFrame,
) -> pl.DataFrame | None:
    """v1's fallback open interest for ``day`` (``instrument_id, ts_recv, quantity``), or None
    when the setting is off or Databento's is there. ``chain``: barchart_chain rows; rows of
    another date or root are refused here too, whoever read them."""
    if not settings.barchart.oi_fallback or databento_present:
        return None
    mine = chain.filter((pl.col("date") == day) & (pl.col("root") == settings.barchart.root))
    placed = place_chain_oi(mine, definitions, known_from_ns(day))
    log.warning(
        "%s: no Databento open interest for any option; v1 uses Barchart's chain of %s "
        "(%d options placed) as its open interest source (barchart.oi_fallback)",
        day,
        day,
        placed.height,
    )
    return placed


def fallback_for_day(lake: Lake, day: dt.date, settings: Settings) -> pl.DataFrame | None:
    """:func:`choose_fallback` over the lake: nothing is read while the setting is off."""
    if not settings.barchart.oi_fallback:
        return None
    definitions = option_definitions(lake, day)
    present = databento_oi_present(lake, day, definitions)
    chain = (
        pl.DataFrame(schema=TABLES["barchart_chain"].pl_schema)
        if present
        else lake.scan("barchart_chain").filter(pl.col("date") == day).collect()
    )
    return choose_fallback(settings, day, present, chain, definitions)
