"""`ifd cost advise`: read what the lake received and produced, quote the alternatives, advise.

The lake reads (records per date, schema, origin, instrument and New York hour of the mbo,
trades and instruments tables; the signals and their episodes) and the quoting live here; the
advice itself is ``ifd_core.ops.cost_advice`` (pure). Bytes are records times the DBN record
size of the schema as the official ``databento_dbn`` library states it (``size_hint``), which is
how Databento counts billable bytes. Alternatives are quoted through the Historical client
(``quote_request``: breakers, retries) when an API key is configured, and each quote is booked in
the cost ledger as a ``historical_quote`` row, once per request and day (docs/operations.md
§Costs).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable

import databento_dbn
import polars as pl

from ifd_core.marketdata.historical import HistoricalError, Quote, make_client, quote_request
from ifd_core.ops.cost_advice import (
    SIGNAL_COLUMNS,
    USAGE_COLUMNS,
    AdviceParams,
    AdviceReport,
    AltRequest,
    advise,
    apply_quotes,
)
from ifd_core.settings import Settings
from warehouse.cost_ledger import LakeCostLedger
from warehouse.lake import Lake

log = logging.getLogger(__name__)

NY = "America/New_York"
RECORD_BYTES: dict[str, int] = {
    "mbo": databento_dbn.MBOMsg.size_hint,
    "trades": databento_dbn.TradeMsg.size_hint,
    "definition": databento_dbn.InstrumentDefMsg.size_hint,
}
"""Bytes of one record per schema (DBN, from the official library)."""
OPTION_CLASSES = ("C", "P")
QUOTE_CATEGORY = "cost_advice"


def _scan(lake: Lake, table: str, start: dt.date, end: dt.date) -> pl.LazyFrame:
    """Only the files of the period's dates (a month is read, not the whole lake)."""
    from warehouse.tables import TABLES

    files = [str(f) for d in lake.days(table) if start <= d <= end for f in lake.files(table, d)]
    if not files:
        return TABLES[table].empty().lazy()
    return pl.scan_parquet(files, schema=TABLES[table].pl_schema, missing_columns="insert")


def _hour(col: str) -> pl.Expr:
    return (
        pl.from_epoch(pl.col(col).cast(pl.Int64), time_unit="ns")
        .dt.replace_time_zone("UTC")
        .dt.convert_time_zone(NY)
        .dt.hour()
        .cast(pl.Int32)
        .alias("hour")
    )


def usage(lake: Lake, start: dt.date, end: dt.date) -> pl.DataFrame:
    """Records and bytes per (date, schema, origin, instrument, New York hour) actually received,
    with each instrument's root and strike and the underlying's median trade price that day."""
    parts = []
    for schema, table, keep in (
        ("mbo", "mbo", None),
        ("trades", "trades", pl.col("schema") == "trades"),  # mbo-derived trades are in mbo
        ("definition", "instruments", None),
    ):
        lf = _scan(lake, table, start, end).filter(pl.col("date").is_between(start, end))
        if keep is not None:
            lf = lf.filter(keep)
        parts.append(
            lf.group_by("date", "origin", "instrument_id", _hour("ts_recv"))
            .agg(pl.len().cast(pl.Int64).alias("records"))
            .with_columns(
                pl.lit(schema).alias("schema"),
                (pl.col("records") * RECORD_BYTES[schema]).alias("bytes"),
            )
            .collect()
        )
    counts = pl.concat(parts, how="diagonal_relaxed")
    defs = (
        _scan(lake, "instruments", start, end)
        .filter(pl.col("date").is_between(start, end))
        .sort("ts_recv")
        .group_by("date", "instrument_id")
        .agg(pl.all().last())
        .select(
            "date",
            "instrument_id",
            "raw_symbol",
            pl.col("asset").alias("root"),
            pl.when(pl.col("instrument_class").is_in(OPTION_CLASSES))
            .then(pl.col("strike"))
            .alias("strike"),
            "underlying_id",
        )
        .collect()
    )
    under = (
        _scan(lake, "trades", start, end)
        .filter(pl.col("date").is_between(start, end))
        .join(
            defs.lazy().select("date", pl.col("underlying_id").alias("instrument_id")).unique(),
            on=["date", "instrument_id"],
        )
        .group_by("date", "instrument_id")
        .agg((pl.col("price").median() * 1e-9).alias("underlying_price"))
        .rename({"instrument_id": "underlying_id"})
        .collect()
    )
    out = (
        counts.join(defs, on=["date", "instrument_id"], how="left")
        .join(under, on=["date", "underlying_id"], how="left")
        .with_columns(
            pl.when(pl.col("strike").is_not_null())
            .then(pl.col("underlying_price"))
            .alias("underlying_price")
        )
    )
    return out.select([pl.col(c).cast(t) for c, t in USAGE_COLUMNS.items()]).sort(
        "date", "schema", "origin", "instrument_id", "hour"
    )


def signals(lake: Lake, start: dt.date, end: dt.date) -> pl.DataFrame:
    """The period's signals with their episode, strike, underlying price and the New York hour
    of the window that produced them."""
    return (
        _scan(lake, "signals", start, end)
        .filter(pl.col("date").is_between(start, end))
        .with_columns(_hour("window_start"))
        .select([pl.col(c).cast(t) for c, t in SIGNAL_COLUMNS.items()])
        .unique("signal_id", keep="first", maintain_order=True)
        .sort("date", "signal_id")
        .collect()
    )


Quoter = Callable[[AltRequest], Quote]


def _entry_id(req: AltRequest, day: dt.date) -> str:
    text = repr((req.dataset, req.schema, req.symbols, req.start, req.end, req.stype_in))
    return f"advq-{day.isoformat()}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def quote_alternatives(
    report: AdviceReport,
    quoter: Quoter,
    ledger: LakeCostLedger,
    today: dt.date,
) -> AdviceReport:
    """Quote every alternative request once, book each quote as a ``historical_quote`` row
    (deterministic id per request and day: rerunning the advice books nothing new), and price
    the advice with them."""
    reqs = sorted({r for a in report.advice for r in a.alternatives}, key=repr)
    booked = set(ledger.entries()["entry_id"].to_list()) if reqs else set()
    quotes: dict[AltRequest, float] = {}
    errors: dict[AltRequest, str] = {}
    rows = []
    for req in reqs:
        try:
            q = quoter(req)
        except HistoricalError as exc:
            errors[req] = str(exc)
            log.warning("cost advice: could not quote %s: %s", req, exc)
            continue
        quotes[req] = q.cost_usd
        eid = _entry_id(req, today)
        if eid in booked:
            continue
        rows.append(
            {
                "entry_id": eid,
                "entry_type": "historical_quote",
                "category": QUOTE_CATEGORY,
                "amount_usd": q.cost_usd,
                "status": "quoted",
                "reason": "alternative request quoted for cost advice; nothing was downloaded",
                "dataset": req.dataset,
                "schema": req.schema,
                "symbols": ",".join(req.symbols),
                "stype_in": req.stype_in,
                "range_start": req.start,
                "range_end": req.end,
                "record_count": q.record_count,
                "billable_bytes": q.billable_bytes,
                "request_id": eid,
            }
        )
    ledger.append(rows)
    return apply_quotes(report, quotes, errors)


def cost_advice(
    lake: Lake,
    settings: Settings,
    start: dt.date,
    end: dt.date,
    *,
    quote: bool = True,
    today: dt.date | None = None,
) -> AdviceReport:
    """The advice of [start, end] (trade dates); alternatives quoted when ``quote`` and a
    Databento key is configured, else their savings stay None and say so."""
    ledger = LakeCostLedger(lake)
    report = advise(
        usage(lake, start, end),
        signals(lake, start, end),
        ledger.entries(),
        AdviceParams.from_settings(settings.costs),
        start,
        end,
        settings.databento.dataset,
    )
    if not any(a.alternatives for a in report.advice):
        return report
    if not quote or not settings.databento.api_key.get_secret_value().strip():
        why = "not quoted: no Databento API key" if quote else "not quoted (--no-quote)"
        reqs = {r: why for a in report.advice for r in a.alternatives}
        return apply_quotes(report, {}, reqs)
    client = make_client(settings)

    def quoter(req: AltRequest) -> Quote:
        return quote_request(
            client,
            dataset=req.dataset,
            start=req.start,
            end=req.end,
            schema=req.schema,
            symbols=list(req.symbols),
            stype_in=req.stype_in,
            settings=settings,
        )

    return quote_alternatives(report, quoter, ledger, today or dt.datetime.now(dt.UTC).date())


def advice_lines(report: AdviceReport) -> list[str]:
    """The advice in markdown lines (CLI, flow artifact)."""

    def usd(v: float | None) -> str:
        return "n/a" if v is None else f"${v:,.2f}"

    head = (
        f"Cost advice {report.start} to {report.end}: {report.sessions} sessions, "
        f"{report.records:,} records, {report.bytes:,} bytes received; far band beyond "
        f"±{report.params.strike_band_pct:g} %, quiet = no signal in the last "
        f"{report.params.quiet_sessions} sessions."
    )
    notes = [f"- Note: {n}." for n in report.notes]
    if not report.advice:
        return [head, *notes, "- No advice: nothing qualifies."]
    lines = [head, *notes]
    for a in report.advice:
        saving = usd(a.saving_usd)
        if a.alternatives:
            alt = usd(a.alternative_usd) if a.alternative_usd is not None else a.quote_error
            saving += f" (avoided {usd(a.avoided_usd)} less alternative {alt})"
        lines.append(
            f"- [{a.kind}] {a.action} Saving {saving}; {a.bytes:,} bytes"
            + (f" ({a.share_of_bytes:.1%} of flow bytes)" if a.share_of_bytes is not None else "")
            + f"; would have cost {a.signals_lost} signals in {a.episodes_lost} episodes. "
            f"Basis: {a.basis}."
        )
    return lines
