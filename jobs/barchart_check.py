"""The daily cross-check of Databento's open interest and settlements against Barchart's chain.

Databento's statistics are IFD's source of open interest and settlements; Barchart OnDemand
(optional, ``IFD_BARCHART__API_KEY``) is a second opinion. For one trade date this job fetches
Barchart's chain of ``barchart.root`` (a bad answer raises ``BarchartError`` before anything is
written), joins it per (expiration, strike, right) with what the lake's ``open_interest`` and
``settlements`` published that date, validates the joined frame with the ``barchart_check``
suite (expectations/suites.py) and commits the chain (``barchart_chain``, replacing the day's
file of the root) and the suite's ``dq_results`` rows in one lake transaction. An alert
(``barchart.disagreements``, subject the root) fires when the disagreeing options exceed
``alerts.barchart_disagreements_warning``. No Prefect here: flows/barchart_check.py wraps it.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass, field

import polars as pl

from ifd_core.calendar import new_york_date
from ifd_core.marketdata.barchart import BarchartClient, make_client
from ifd_core.ops.alerts import AlertEvent
from ifd_core.settings import Settings
from ifd_core.units import FIXED, UNDEF_PRICE
from warehouse.lake import Lake
from warehouse.migrations import ensure_migrated
from warehouse.ops_events import AlertStore
from warehouse.tables import TABLES, conform

log = logging.getLogger(__name__)

TABLE = "barchart_chain"
DATASET = "barchart_check"
ALERT_RULE = "barchart.disagreements"


class NothingToCheck(RuntimeError):
    """The lake holds no Databento open interest or settlement for the date: the chain is kept,
    nothing is compared, no data-quality row is written."""


@dataclass
class CrossCheck:
    """What one day's cross-check compared and found."""

    day: dt.date
    root: str
    run_id: str
    chain_rows: int
    compared: int  # options of the expirations both sides list
    disagreements: int  # options failing at least one rule
    failed: dict[str, int]  # chk column -> options failing it
    success: bool
    reason: str
    dq_rows: list[dict] = field(default_factory=list)
    alerts: list[AlertEvent] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "date": self.day.isoformat(),
            "root": self.root,
            "run_id": self.run_id,
            "chain_rows": self.chain_rows,
            "compared": self.compared,
            "disagreements": self.disagreements,
            "failed": self.failed,
            "success": self.success,
            "reason": self.reason,
            "alerts": [f"{e.state} {e.severity}: {e.detail}" for e in self.alerts],
        }


def databento_chain(lake: Lake, day: dt.date) -> pl.DataFrame:
    """Databento's options of ``day``: per option instrument the latest open interest and
    settlement published that trade date (a final settlement supersedes the preliminary one by
    ``ts_recv``), placed by the definition in force (latest on or before ``day``).

    Columns: instrument_id, expiration (New York date), strike, right, open_interest,
    settlement (points). Statistics of instruments without a definition cannot be placed and
    are left out (logged)."""
    oi = (
        lake.scan("open_interest")
        .filter(pl.col("date") == day)
        .sort("ts_recv")
        .group_by("instrument_id")
        .agg(pl.col("quantity").last().alias("open_interest"))
        .collect()
    )
    settle = (
        lake.scan("settlements")
        .filter((pl.col("date") == day) & (pl.col("price") != UNDEF_PRICE))
        .sort("ts_recv")
        .group_by("instrument_id")
        .agg((pl.col("price").last() / FIXED).alias("settlement"))
        .collect()
    )
    stats = oi.join(settle, on="instrument_id", how="full", coalesce=True)
    if stats.is_empty():
        return stats.with_columns(
            pl.lit(None, pl.Date).alias("expiration"),
            pl.lit(None, pl.Float64).alias("strike"),
            pl.lit(None, pl.Utf8).alias("right"),
        )
    defs = (
        lake.scan("instruments")
        .filter((pl.col("date") <= day) & pl.col("instrument_class").is_in(["C", "P"]))
        .sort("date", "ts_recv")
        .collect()
        .unique("instrument_id", keep="last")
        .select(
            "instrument_id",
            new_york_date("expiration").alias("expiration"),
            "strike",
            pl.col("instrument_class").alias("right"),
        )
    )
    placed = stats.join(defs, on="instrument_id", how="inner")
    if placed.height < stats.height:
        log.warning(
            "barchart check %s: %d instruments with statistics but no option definition are "
            "left out",
            day,
            stats.height - placed.height,
        )
    keys = ["expiration", "strike", "right"]
    unique = placed.sort("instrument_id").unique(keys, keep="first", maintain_order=True)
    if unique.height < placed.height:
        log.warning(
            "barchart check %s: %d options share an (expiration, strike, right) with another "
            "root; the lowest instrument id is compared",
            day,
            placed.height - unique.height,
        )
    return unique.select("instrument_id", *keys, "open_interest", "settlement").sort(keys)


def chain_frame(chain: pl.DataFrame) -> pl.DataFrame:
    """Barchart's chain as rows of ``barchart_chain``."""
    return conform(TABLE, chain.select(list(TABLES[TABLE].schema)))


def run_check(
    settings: Settings,
    day: dt.date,
    *,
    lake: Lake | None = None,
    client: BarchartClient | None = None,
    run_id: str | None = None,
    now: dt.datetime | None = None,
) -> CrossCheck:
    """Fetch, compare, store and alert for ``day``; see the module docstring.

    Raises ``BarchartError`` (nothing written) when Barchart cannot serve the chain, and
    ``NothingToCheck`` (the chain kept) when the lake has no Databento statistics for ``day``.
    """
    from expectations.derive import CROSS_CHECKS, cross_check, disagreements
    from expectations.runner import validate_checked

    lake = lake or Lake(settings.data_dir)
    ensure_migrated(lake)
    client = client or make_client(settings)
    run_id = run_id or f"barchart-{day.isoformat()}-{uuid.uuid4().hex[:8]}"
    chain = client.chain(day)  # every bad answer raises here: nothing is written
    rows = chain_frame(chain)
    databento = databento_chain(lake, day)
    b = settings.barchart
    checked = cross_check(databento, chain, b.oi_tolerance, b.settlement_tolerance)
    root = client.root
    source = f"barchart:{root}:{day.isoformat()}"
    if databento.is_empty() or checked.is_empty():
        lake.replace_day(TABLE, day, rows, key=root)
        raise NothingToCheck(
            f"no Databento open interest or settlement on {day} "
            + ("in the lake" if databento.is_empty() else "for the expirations Barchart lists")
            + f"; Barchart's chain of {root} ({rows.height} options) is kept in {TABLE}, "
            "nothing was compared; ingest that day's statistics and run the check again"
        )
    validation = validate_checked(DATASET, checked, run_id, source)
    validated_at = now or dt.datetime.now(dt.UTC)
    dq = pl.DataFrame(
        [r | {"validated_at": validated_at} for r in validation.rows],
        schema={c: t for c, t in TABLES["dq_results"].schema.items() if c != "date"},
        orient="row",
    ).with_columns(pl.lit(validated_at.date()).alias("date"))
    # The chain and its data-quality rows become visible together, or not at all.
    with lake.transaction(f"barchart check {root} {day}") as tx:
        lake.replace_day(TABLE, day, rows, key=root)
        tx.put("dq_results", conform("dq_results", dq), f"{run_id}-{DATASET}-{root}")
    failed = {c: int(checked[c].not_().fill_null(False).sum()) for c in CROSS_CHECKS}
    found = disagreements(checked)
    result = CrossCheck(
        day=day,
        root=root,
        run_id=run_id,
        chain_rows=rows.height,
        compared=checked.height,
        disagreements=found,
        failed=failed,
        success=validation.success,
        reason=validation.reason,
        dq_rows=validation.rows,
    )
    detail = f"{day}: " + (validation.reason or "all options agree")
    result.alerts = AlertStore(lake, settings, run_id).observe(
        [(ALERT_RULE, root, float(found), detail)], ts=validated_at
    )
    log.info(
        "barchart check %s %s: %d options compared, %d disagree", root, day, checked.height, found
    )
    return result
