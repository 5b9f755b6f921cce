"""Where v1's open interest comes from: Databento's statistics, or Barchart's chain as a fallback.

Databento's statistics are v1's open interest. With ``barchart.oi_fallback`` on, on a trade date
whose statistics carry no open interest for any option, v1 may use Barchart's chain of that
same date instead (jobs/oi_fallback.py decides and reads the lake; issue 21 §1). The pure parts
live here: placing Barchart's rows on instrument ids through the definitions in force, and
labelling every v1 row with the source of its open interest, so sources never mix silently.
"""

from __future__ import annotations

import logging

import polars as pl

from ifd_core.calendar import new_york_date

log = logging.getLogger(__name__)

OI_DATABENTO = "databento"
OI_BARCHART = "barchart"
# The shape of the engine's own open interest (FlowEngine._oi): one publication per row.
FALLBACK_SCHEMA = {"instrument_id": pl.UInt32, "ts_recv": pl.UInt64, "quantity": pl.Int64}
_KEYS = ["expiration", "_strike", "right"]


def _strike_key(col: str) -> pl.Expr:
    # Strikes in points; compared in hundredths so float noise cannot split a key.
    return (pl.col(col) * 100.0).round(0).cast(pl.Int64).alias("_strike")


def place_chain_oi(
    chain: pl.DataFrame, definitions: pl.DataFrame, known_from_ns: int
) -> pl.DataFrame:
    """Barchart's open interest per instrument id, known from ``known_from_ns``.

    ``chain``: ``expiration`` (New York date), ``strike`` (points), ``right`` (C/P),
    ``open_interest`` (barchart_chain rows of one date). ``definitions``: the option definitions
    in force, ``instrument_id``, ``expiration`` (ns UTC), ``strike``, ``instrument_class``. A
    key that no definition has, or that two instruments share (two roots with one expiration
    date), is left out rather than guessed; so is a row without open interest."""
    if chain.height == 0 or definitions.height == 0:
        return pl.DataFrame(schema=FALLBACK_SCHEMA)
    defs = definitions.select(
        "instrument_id",
        new_york_date("expiration").alias("expiration"),
        _strike_key("strike"),
        pl.col("instrument_class").alias("right"),
    ).unique("instrument_id", keep="last")
    shared = defs.group_by(_KEYS).len().filter(pl.col("len") > 1)
    if shared.height:
        log.warning(
            "OI fallback: %d (expiration, strike, right) keys name more than one instrument; "
            "Barchart's open interest is not used for them",
            shared.height,
        )
    rows = chain.filter(pl.col("open_interest").is_not_null()).select(
        "expiration", _strike_key("strike"), "right", "open_interest"
    )
    placed = (
        rows.unique(_KEYS, keep="none")  # one chain row per key, else it is ambiguous too
        .join(defs, on=_KEYS, how="inner")
        .join(shared.select(_KEYS), on=_KEYS, how="anti")
    )
    if placed.height < rows.height:
        log.info(
            "OI fallback: %d of Barchart's %d options placed on an instrument",
            placed.height,
            rows.height,
        )
    return placed.select(
        pl.col("instrument_id").cast(pl.UInt32),
        pl.lit(known_from_ns, pl.UInt64).alias("ts_recv"),
        pl.col("open_interest").cast(pl.Int64).alias("quantity"),
    ).sort("instrument_id")


def with_oi_source(flow: pl.DataFrame, fallback: pl.DataFrame | None) -> pl.DataFrame:
    """``flow`` (``open_interest`` as Databento published it by ``decision_ts``, null where
    nothing was) with ``oi_source``: ``databento`` where it has a value; where it has none and a
    ``fallback`` is given, the fallback's latest value known by ``decision_ts`` fills it,
    ``barchart``; null where neither knows."""
    databento = pl.col("open_interest").is_not_null()
    if fallback is None or fallback.height == 0:
        return flow.with_columns(pl.when(databento).then(pl.lit(OI_DATABENTO)).alias("oi_source"))
    out = (
        flow.sort("decision_ts")
        .join_asof(
            fallback.sort("ts_recv").select(
                "instrument_id",
                pl.col("ts_recv").cast(flow.schema["decision_ts"]).alias("_fallback_ts"),
                pl.col("quantity").alias("_fallback_oi"),
            ),
            left_on="decision_ts",
            right_on="_fallback_ts",
            by="instrument_id",
            strategy="backward",
            check_sortedness=False,
        )
        .drop("_fallback_ts")
    )
    return out.with_columns(
        pl.when(databento)
        .then(pl.lit(OI_DATABENTO))
        .when(pl.col("_fallback_oi").is_not_null())
        .then(pl.lit(OI_BARCHART))
        .alias("oi_source"),
        pl.coalesce("open_interest", "_fallback_oi").alias("open_interest"),
    ).drop("_fallback_oi")
