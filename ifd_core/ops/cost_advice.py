"""Data-cost advice from measured usage: pure functions, no I/O (docs/operations.md §Costs).

The inputs are what IFD actually received (records and bytes per date, schema, origin,
instrument and New York hour, read from the lake by ``jobs.cost_advice``), the signals and
episodes it produced, and the cost ledger. The output is a list of concrete changes, each with
the data it would have avoided, what that data cost and what it would have cost in signals.

Money comes from two places only, never from a price written in code:

* the ledger: the $ per billable byte of the spend rows that bought the data (historical spend
  and backfill per schema, live usage per run), times the bytes the change avoids; a repeated
  pull's own spend row;
* Databento's ``metadata.get_cost`` for the alternative request a change needs (trades instead
  of mbo for far strikes, the part of a repeated pull that was new): the caller quotes
  ``Advice.alternatives`` and hands the figures to ``apply_quotes``. Unquoted, the saving of such
  advice is None, not a guess.

The savings of different pieces of advice overlap (a far strike's bytes in an idle hour are in
both), so they are not additive.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

__all__ = [
    "FLOW_SCHEMAS",
    "MBO_ALGOS",
    "Advice",
    "AdviceParams",
    "AdviceReport",
    "AltRequest",
    "advise",
    "apply_quotes",
    "ledger_rates",
]

FLOW_SCHEMAS: tuple[str, ...] = ("mbo", "trades")
"""Per-strike order-flow schemas: the data a strike band or an hour can do without."""
MBO_ALGOS: tuple[str, ...] = ("v3",)
"""Algorithms that need the order book (v1 reads trades only; see ``costs.allocate``)."""
SPEND_PULLS: tuple[str, ...] = ("historical_spend", "backfill")
FROM_MBO: tuple[str, ...] = ("trades", "tbbo", "mbp-1")
"""Schemas IFD derives from mbo of the same instruments (trades are its T records; the top of
book is its order book): a pull of one of them where mbo was pulled too is paid twice."""
USAGE_COLUMNS = {
    "date": pl.Date,
    "schema": pl.String,
    "origin": pl.String,
    "instrument_id": pl.UInt32,
    "raw_symbol": pl.String,
    "root": pl.String,
    "strike": pl.Float64,
    "underlying_price": pl.Float64,
    "hour": pl.Int32,
    "records": pl.Int64,
    "bytes": pl.Int64,
}
SIGNAL_COLUMNS = {
    "date": pl.Date,
    "algo": pl.String,
    "signal_id": pl.String,
    "episode_id": pl.String,
    "strike": pl.Float64,
    "underlying_price": pl.Float64,
    "hour": pl.Int32,
}


@dataclass(frozen=True)
class AdviceParams:
    """The thresholds of the advice (``settings.costs.advice_*``)."""

    strike_band_pct: float = 5.0
    quiet_sessions: int = 10

    @classmethod
    def from_settings(cls, costs: Any) -> AdviceParams:
        return cls(
            strike_band_pct=float(costs.advice_strike_band_pct),
            quiet_sessions=int(costs.advice_quiet_sessions),
        )


@dataclass(frozen=True)
class AltRequest:
    """A Historical request to quote with ``metadata.get_cost`` (end-exclusive ISO range)."""

    dataset: str
    schema: str
    symbols: tuple[str, ...]
    start: str
    end: str
    stype_in: str = "raw_symbol"

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "symbols": list(self.symbols)}


@dataclass(frozen=True)
class Rate:
    """USD per billable byte of some ledger rows, and which rows."""

    amount_usd: float
    billable_bytes: int
    entries: int

    @property
    def per_byte(self) -> float:
        return self.amount_usd / self.billable_bytes


@dataclass(frozen=True)
class Advice:
    """One recommended change with its measured effect."""

    kind: str
    """far_strikes | far_strikes_trades | idle_hours | repeated_pull | redundant_schema"""
    action: str
    records: int
    bytes: int
    share_of_bytes: float | None
    """Of all the flow bytes received in the period (None for a pull: its bytes are the
    ledger's, not the lake's)."""
    avoided_usd: float | None
    """What the avoided data cost, from the ledger (None: no ledger row prices it)."""
    basis: str
    """Where ``avoided_usd`` comes from, in words."""
    signals_lost: int
    episodes_lost: int
    unpriced_bytes: int = 0
    """Avoided bytes no ledger row prices (synthetic, replayed, or bought without a byte count)."""
    alternatives: tuple[AltRequest, ...] = ()
    alternative_usd: float | None = None
    """``metadata.get_cost`` of the alternatives, summed (None until quoted)."""
    quote_error: str | None = None

    @property
    def saving_usd(self) -> float | None:
        """Avoided cost, less what the alternative request costs; None when either is unknown."""
        if self.avoided_usd is None:
            return None
        if not self.alternatives:
            return self.avoided_usd
        if self.alternative_usd is None:
            return None
        return self.avoided_usd - self.alternative_usd

    def to_dict(self) -> dict[str, Any]:
        r = 6
        return {
            "kind": self.kind,
            "action": self.action,
            "records": self.records,
            "bytes": self.bytes,
            "share_of_bytes": _round(self.share_of_bytes, r),
            "avoided_usd": _round(self.avoided_usd, r),
            "alternative_usd": _round(self.alternative_usd, r),
            "saving_usd": _round(self.saving_usd, r),
            "basis": self.basis,
            "signals_lost": self.signals_lost,
            "episodes_lost": self.episodes_lost,
            "unpriced_bytes": self.unpriced_bytes,
            "alternatives": [a.to_dict() for a in self.alternatives],
            "quote_error": self.quote_error,
        }


@dataclass(frozen=True)
class AdviceReport:
    """The period's usage and the advice drawn from it."""

    start: dt.date
    end: dt.date
    params: AdviceParams
    sessions: int
    records: int
    bytes: int
    by_band: pl.DataFrame = field(repr=False)
    """Records and bytes per schema, root and strike band."""
    by_hour: pl.DataFrame = field(repr=False)
    """Records, bytes and signals per New York hour."""
    rates: dict[str, Rate]
    advice: list[Advice]
    notes: list[str] = field(default_factory=list)
    """Why some advice could not be given (e.g. no signals to weigh the data against)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "strike_band_pct": self.params.strike_band_pct,
            "quiet_sessions": self.params.quiet_sessions,
            "sessions": self.sessions,
            "records": self.records,
            "bytes": self.bytes,
            "rates": {
                k: {
                    "usd_per_gb": round(v.per_byte * 1e9, 6),
                    "amount_usd": round(v.amount_usd, 6),
                    "billable_bytes": v.billable_bytes,
                    "entries": v.entries,
                }
                for k, v in sorted(self.rates.items())
            },
            "by_band": self.by_band.to_dicts(),
            "by_hour": self.by_hour.to_dicts(),
            "advice": [a.to_dict() for a in self.advice],
            "notes": self.notes,
        }


def _round(v: float | None, digits: int) -> float | None:
    return None if v is None else round(v, digits)


def _conform(df: pl.DataFrame, columns: dict[str, pl.DataType], what: str) -> pl.DataFrame:
    missing = set(columns) - set(df.columns)
    if missing:
        raise ValueError(f"{what} frame lacks columns {sorted(missing)}")
    return df.select([pl.col(c).cast(t) for c, t in columns.items()])


def _utc(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    ts = dt.datetime.fromisoformat(value)
    return ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts.astimezone(dt.UTC)


def _day_bounds(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    return (
        dt.datetime.combine(start, dt.time(0), dt.UTC),
        dt.datetime.combine(end + dt.timedelta(days=1), dt.time(0), dt.UTC),
    )


# ------------------------------------------------------------------------------ ledger rates
def ledger_rates(ledger: pl.DataFrame, start: dt.date, end: dt.date) -> dict[str, Rate]:
    """$ per billable byte from the spend rows that bought the period's data.

    ``historical:<schema>``: historical spend and backfill rows of that schema whose request
    range overlaps the period (by ledger date when a row has no range); ``live``: live usage
    rows dated in the period. Rows without billable bytes cannot give a rate and are left out.
    """
    lo, hi = _day_bounds(start, end)
    sums: dict[str, list[float]] = {}
    for row in ledger.iter_rows(named=True):
        nbytes = row.get("billable_bytes") or 0
        if nbytes <= 0 or row.get("status") == "failed":
            continue
        if row["entry_type"] == "live_usage":
            if not start <= row["date"] <= end:
                continue
            key = "live"
        elif row["entry_type"] in SPEND_PULLS and row.get("schema"):
            r0, r1 = _utc(row.get("range_start")), _utc(row.get("range_end"))
            if r0 is not None and r1 is not None:
                if not (r0 < hi and r1 > lo):
                    continue
            elif not start <= row["date"] <= end:
                continue
            key = f"historical:{row['schema']}"
        else:
            continue
        s = sums.setdefault(key, [0.0, 0, 0])
        s[0] += float(row["amount_usd"])
        s[1] += int(nbytes)
        s[2] += 1
    return {k: Rate(a, int(b), int(n)) for k, (a, b, n) in sums.items()}


def _rate_key(origin: str | None, schema: str) -> str | None:
    if origin == "live":
        return "live"
    if origin in ("historical", "backfill"):
        return f"historical:{schema}"
    return None  # synthetic and replayed data were never bought


def _price(rows: pl.DataFrame, rates: Mapping[str, Rate]) -> tuple[float | None, int, str]:
    """Ledger cost of ``rows``' bytes: (USD or None, unpriced bytes, the basis in words)."""
    total, unpriced, used = 0.0, 0, []
    priced_any = False
    grouped = rows.group_by("origin", "schema").agg(pl.col("bytes").sum()).sort("origin", "schema")
    for origin, schema, nbytes in grouped.iter_rows():
        key = _rate_key(origin, schema)
        rate = rates.get(key) if key else None
        if rate is None:
            unpriced += int(nbytes)
            continue
        priced_any = True
        total += nbytes * rate.per_byte
        used.append(
            f"{nbytes:,} {origin} {schema} bytes x ${rate.per_byte * 1e9:,.4f}/GB "
            f"({key}: ${rate.amount_usd:,.2f} over {rate.billable_bytes:,} bytes in "
            f"{rate.entries} ledger rows)"
        )
    if not priced_any:
        return None, unpriced, "no ledger spend row prices these bytes"
    basis = "ledger: " + "; ".join(used)
    if unpriced:
        basis += f"; {unpriced:,} bytes unpriced"
    return total, unpriced, basis


# ------------------------------------------------------------------------------ the advice
def _moneyness() -> pl.Expr:
    return ((pl.col("strike") / pl.col("underlying_price") - 1.0).abs() * 100.0).alias("away_pct")


def _lost(signals: pl.DataFrame) -> tuple[int, int]:
    if signals.height == 0:
        return 0, 0
    eps = signals.select(pl.coalesce("episode_id", "signal_id").n_unique()).item()
    return signals["signal_id"].n_unique(), int(eps)


def _band_label(pct: float) -> str:
    return f"far (> {pct:g} %)"


def advise(
    usage: pl.DataFrame,
    signals: pl.DataFrame,
    ledger: pl.DataFrame,
    params: AdviceParams,
    start: dt.date,
    end: dt.date,
    dataset: str,
) -> AdviceReport:
    """The period's advice (savings of advice with alternatives stay None until quoted)."""
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    usage = _conform(usage, USAGE_COLUMNS, "usage").filter(pl.col("date").is_between(start, end))
    signals = _conform(signals, SIGNAL_COLUMNS, "signals").filter(
        pl.col("date").is_between(start, end)
    )
    x = params.strike_band_pct
    usage = usage.with_columns(_moneyness())
    signals = signals.with_columns(_moneyness())
    far_u = pl.col("away_pct") > x
    band = (
        pl.when(pl.col("away_pct").is_null())
        .then(pl.lit("n/a"))
        .when(far_u)
        .then(pl.lit(_band_label(x)))
        .otherwise(pl.lit(f"near (<= {x:g} %)"))
        .alias("band")
    )
    flow = usage.filter(pl.col("schema").is_in(list(FLOW_SCHEMAS)))
    flow_bytes = int(flow["bytes"].sum() or 0)
    dates = sorted(usage["date"].unique().to_list())
    recent = dates[-params.quiet_sessions :]
    recent_sig = signals.filter(pl.col("date").is_in(recent))
    rates = ledger_rates(ledger, start, end)

    def share(n: int) -> float:
        return n / flow_bytes if flow_bytes else 0.0

    advice: list[Advice] = []
    notes: list[str] = []
    # Without any signal in the period the detectors probably did not run over it: advising to
    # drop every strike and hour would read an absence of output as an absence of value.
    weigh = signals.height > 0
    if not weigh and flow.height:
        notes.append(
            "no signals in the period (has `ifd detect` run over it?): no strike-band or hour "
            "advice, which weighs data against the signals it produced"
        )
    far = flow.filter(far_u)
    far_sig = signals.filter(pl.col("away_pct") > x)
    recent_far = recent_sig.filter(pl.col("away_pct") > x)
    if weigh and far.height and recent:
        roots = ", ".join(sorted(r for r in far["root"].unique().to_list() if r)) or "option"
        n_ins = far["instrument_id"].n_unique()
        if recent_far.height == 0:
            usd, unpriced, basis = _price(far, rates)
            nb = int(far["bytes"].sum())
            lost = _lost(far_sig)
            advice.append(
                Advice(
                    kind="far_strikes",
                    action=(
                        f"Stop receiving mbo/trades for {roots} strikes beyond ±{x:g} % of the "
                        f"underlying ({n_ins} instruments): none produced a signal in the last "
                        f"{len(recent)} sessions."
                    ),
                    records=int(far["records"].sum()),
                    bytes=nb,
                    share_of_bytes=share(nb),
                    avoided_usd=usd,
                    basis=basis,
                    signals_lost=lost[0],
                    episodes_lost=lost[1],
                    unpriced_bytes=unpriced,
                )
            )
        elif recent_far.filter(pl.col("algo").is_in(list(MBO_ALGOS))).height == 0:
            bought = far.filter(
                (pl.col("schema") == "mbo") & pl.col("origin").is_in(["historical", "backfill"])
            )
            if bought.height:
                usd, unpriced, basis = _price(bought, rates)
                nb = int(bought["bytes"].sum())
                lost = _lost(far_sig.filter(pl.col("algo").is_in(list(MBO_ALGOS))))
                symbols = tuple(sorted(s for s in bought["raw_symbol"].unique().to_list() if s))
                lo, hi = _day_bounds(bought["date"].min(), bought["date"].max())
                alt = AltRequest(dataset, "trades", symbols, lo.isoformat(), hi.isoformat())
                advice.append(
                    Advice(
                        kind="far_strikes_trades",
                        action=(
                            f"Pull trades instead of mbo for {roots} strikes beyond ±{x:g} % of "
                            f"the underlying ({len(symbols)} instruments): no "
                            f"{'/'.join(MBO_ALGOS)} signal (which needs the book) came from "
                            f"them in the last {len(recent)} sessions."
                        ),
                        records=int(bought["records"].sum()),
                        bytes=nb,
                        share_of_bytes=share(nb),
                        avoided_usd=usd,
                        basis=basis + "; less get_cost of the trades request",
                        signals_lost=lost[0],
                        episodes_lost=lost[1],
                        unpriced_bytes=unpriced,
                        alternatives=(alt,),
                    )
                )

    active_hours = set(recent_sig["hour"].drop_nulls().to_list())
    idle = flow.filter(~pl.col("hour").is_in(sorted(active_hours)))
    if weigh and idle.height and recent:
        hours = sorted(idle["hour"].unique().to_list())
        usd, unpriced, basis = _price(idle, rates)
        nb = int(idle["bytes"].sum())
        lost = _lost(signals.filter(pl.col("hour").is_in(hours)))
        advice.append(
            Advice(
                kind="idle_hours",
                action=(
                    f"Stop receiving mbo/trades in New York hours {_hours(hours)}: no signal "
                    f"came from them in the last {len(recent)} sessions."
                ),
                records=int(idle["records"].sum()),
                bytes=nb,
                share_of_bytes=share(nb),
                avoided_usd=usd,
                basis=basis,
                signals_lost=lost[0],
                episodes_lost=lost[1],
                unpriced_bytes=unpriced,
            )
        )

    advice += _repeated_pulls(ledger, start, end)
    advice += _redundant_schemas(ledger, start, end)
    advice.sort(key=_order)

    by_band = (
        usage.with_columns(band)
        .group_by("schema", "root", "band")
        .agg(pl.col("records").sum(), pl.col("bytes").sum())
        .sort("schema", "root", "band", nulls_last=True)
    )
    sig_hour = signals.group_by("hour").agg(pl.col("signal_id").n_unique().alias("signals"))
    by_hour = (
        flow.group_by("hour")
        .agg(pl.col("records").sum(), pl.col("bytes").sum())
        .join(sig_hour, on="hour", how="full", coalesce=True)
        .with_columns(pl.col("records", "bytes", "signals").fill_null(0))
        .sort("hour")
    )
    return AdviceReport(
        start=start,
        end=end,
        params=params,
        sessions=len(dates),
        records=int(usage["records"].sum() or 0),
        bytes=int(usage["bytes"].sum() or 0),
        by_band=by_band,
        by_hour=by_hour,
        rates=rates,
        advice=advice,
        notes=notes,
    )


def _hours(hours: list[int]) -> str:
    return ", ".join(f"{h:02d}:00" for h in hours)


def _order(a: Advice) -> tuple:
    s = a.saving_usd
    return (s is None, -(s or 0.0), a.kind, a.action)


def _uncovered(
    r0: dt.datetime, r1: dt.datetime, covered: list[tuple[dt.datetime, dt.datetime]]
) -> list[tuple[dt.datetime, dt.datetime]]:
    """The parts of [r0, r1) outside every interval of ``covered``."""
    gaps, cur = [], r0
    for c0, c1 in sorted(covered):
        if c1 <= cur or c0 >= r1:
            continue
        if c0 > cur:
            gaps.append((cur, c0))
        cur = max(cur, c1)
        if cur >= r1:
            break
    if cur < r1:
        gaps.append((cur, r1))
    return gaps


def _repeated_pulls(ledger: pl.DataFrame, start: dt.date, end: dt.date) -> list[Advice]:
    """Historical pulls spent in the period that fetched, wholly or partly, the same dataset,
    schema and symbols over a time range an earlier pull had already bought."""
    out: list[Advice] = []
    seen: list[dict[str, Any]] = []
    for row in _pull_rows(ledger):
        r0, r1, symbols = row["r0"], row["r1"], row["symbol_set"]
        same = [
            p
            for p in seen
            if (p["dataset"], p["schema"], p["stype_in"])
            == (row["dataset"], row["schema"], row["stype_in"])
            and symbols <= p["symbol_set"]
        ]
        seen.append(row)
        if not same or not start <= row["date"] <= end:
            continue
        gaps = _uncovered(r0, r1, [(p["r0"], p["r1"]) for p in same])
        if gaps == [(r0, r1)]:
            continue
        earlier = ", ".join(sorted({str(p["date"]) for p in same if p["r0"] < r1 and p["r1"] > r0}))
        part = "all of it" if not gaps else "part of it"
        action = (
            f"The pull of {_what(row)} on {row['date']} repeated {part}, already bought on "
            f"{earlier}: read the lake instead" + (" and pull only the new range." if gaps else ".")
        )
        out.append(_pull_advice(row, "repeated_pull", action, gaps, "the new range"))
    return out


def _what(row: dict[str, Any]) -> str:
    return f"{row['dataset']} {row['schema']} {_short(row['symbols'])} [{row['r0']}, {row['r1']})"


def _pull_advice(row: dict[str, Any], kind: str, action: str, gaps: list, new_part: str) -> Advice:
    """Advice against one ledger pull: it saves its own spend row, less (when ``gaps``) what
    ``metadata.get_cost`` quotes for pulling only ``gaps`` (``new_part`` says which part)."""
    alts = tuple(
        AltRequest(
            row["dataset"],
            row["schema"],
            tuple(sorted(row["symbol_set"])),
            g0.isoformat(),
            g1.isoformat(),
            row["stype_in"] or "raw_symbol",
        )
        for g0, g1 in gaps
    )
    return Advice(
        kind=kind,
        action=action,
        records=int(row.get("record_count") or 0),
        bytes=int(row.get("billable_bytes") or 0),
        share_of_bytes=None,
        avoided_usd=float(row["amount_usd"]),
        basis=f"ledger: spend row {row['entry_id']} ${row['amount_usd']:,.2f}"
        + (f"; less get_cost of {new_part}" if gaps else ""),
        signals_lost=0,
        episodes_lost=0,
        alternatives=alts,
    )


def _pull_rows(ledger: pl.DataFrame) -> list[dict[str, Any]]:
    pulls = ledger.filter(
        pl.col("entry_type").is_in(list(SPEND_PULLS))
        & (pl.col("status") == "spent")
        & pl.col("range_start").is_not_null()
        & pl.col("range_end").is_not_null()
    ).sort("ts", "entry_id")
    return [
        {
            **row,
            "symbol_set": set((row.get("symbols") or "").split(",")),
            "r0": _utc(row["range_start"]),
            "r1": _utc(row["range_end"]),
        }
        for row in pulls.iter_rows(named=True)
    ]


def _redundant_schemas(ledger: pl.DataFrame, start: dt.date, end: dt.date) -> list[Advice]:
    """Pulls spent in the period of a schema IFD derives from mbo (``FROM_MBO``) over symbols
    and a time range that mbo pulls of the same dataset bought too (before or after)."""
    rows = _pull_rows(ledger)
    out: list[Advice] = []
    for row in rows:
        if row["schema"] not in FROM_MBO or not start <= row["date"] <= end:
            continue
        mbo = [
            p
            for p in rows
            if p["schema"] == "mbo"
            and (p["dataset"], p["stype_in"]) == (row["dataset"], row["stype_in"])
            and row["symbol_set"] <= p["symbol_set"]
        ]
        r0, r1 = row["r0"], row["r1"]
        gaps = _uncovered(r0, r1, [(p["r0"], p["r1"]) for p in mbo])
        if not mbo or gaps == [(r0, r1)]:
            continue
        action = (
            f"The pull of {_what(row)} on {row['date']} bought {row['schema']} that the mbo "
            f"of the same symbols already carries ({'all' if not gaps else 'part'} of "
            "its range): derive it from mbo"
            + (" and pull only the range mbo does not cover." if gaps else ".")
        )
        out.append(
            _pull_advice(row, "redundant_schema", action, gaps, "the range mbo does not cover")
        )
    return out


def _short(symbols: str | None) -> str:
    parts = (symbols or "").split(",")
    return ",".join(parts[:3]) + (f",… ({len(parts)} symbols)" if len(parts) > 3 else "")


def apply_quotes(
    report: AdviceReport,
    quotes: Mapping[AltRequest, float],
    errors: Mapping[AltRequest, str] | None = None,
) -> AdviceReport:
    """The report with each advice's alternatives priced from ``quotes`` (get_cost figures);
    advice whose alternatives are not all quoted keeps a None saving and says why."""
    errors = errors or {}
    out = []
    for a in report.advice:
        if not a.alternatives:
            out.append(a)
            continue
        if all(r in quotes for r in a.alternatives):
            total = sum(float(quotes[r]) for r in a.alternatives)
            out.append(dataclasses.replace(a, alternative_usd=total, quote_error=None))
        else:
            why = "; ".join(errors[r] for r in a.alternatives if r in errors) or "not quoted"
            out.append(dataclasses.replace(a, alternative_usd=None, quote_error=why))
    out.sort(key=_order)
    return dataclasses.replace(report, advice=out)
