"""Row-level facts the expectations check, computed with polars before GX sees the batch.

Some rules need context GX does not have (the instrument's tick rule from its definition, the set
of instruments defined as of the record's date, flags that exempt a record) or are far cheaper
vectorised in polars (duplicate detection over all columns). Each becomes a boolean column that a
named GX expectation then checks, so the rule, its result and its unexpected rows stay in GX's
report.
"""

from __future__ import annotations

import polars as pl

from ifd_core.units import UNDEF_PRICE

F_BAD_TS_RECV = 8
FIXED = 1_000_000_000
# CME equity-index options (NQ, ES): 0.05 at or below a premium of 5.00, 0.25 above.
OPT_SMALL_TICK, OPT_LARGE_TICK, OPT_TICK_SWITCH = 50_000_000, 250_000_000, 5 * FIXED
PRICED_ACTIONS = ("A", "M", "T", "F")


def tick_table(instruments: pl.DataFrame) -> pl.DataFrame:
    """Per instrument and definition date: the tick rule to apply (variable or fixed)."""
    return instruments.select(
        "instrument_id",
        pl.col("date").alias("def_date"),
        (
            (pl.col("security_type") == "OOF")
            & (
                pl.col("min_price_increment").is_null()
                | (pl.col("min_price_increment") == OPT_SMALL_TICK)
            )
        ).alias("variable_tick"),
        pl.col("min_price_increment").alias("tick"),
    )


def _asof(df: pl.DataFrame, ticks: pl.DataFrame) -> pl.DataFrame:
    """Attach the definition in force on each row's date (latest def_date ≤ date).

    The as-of join runs on the few distinct (date, instrument) pairs, packed into one int64 key
    (days << 32 | instrument id); each row then finds its pair by that one key and takes the
    pair's columns by position: millions of rows never go through a sort or a two-column join.
    """
    cols = {"def_date": pl.Date, "variable_tick": pl.Boolean, "tick": pl.Int64}
    key = df.select(
        (pl.col("date").cast(pl.Int64) * _ID_SPAN + pl.col("instrument_id").cast(pl.Int64)).alias(
            _KEY
        )
    ).to_series()
    first = key.arg_unique()
    pairs = df.select("date", "instrument_id")[first].with_columns(key.gather(first))
    if ticks.height == 0:
        found = pairs.with_columns(pl.lit(None, t).alias(c) for c, t in cols.items())
    else:
        ticks = ticks.unique(["instrument_id", "def_date"], keep="last").sort("def_date")
        found = pairs.sort("date").join_asof(
            ticks.with_columns(pl.col("instrument_id").cast(df.schema["instrument_id"])),
            left_on="date",
            right_on="def_date",
            by="instrument_id",
            strategy="backward",
            check_sortedness=False,
        )
    position = pl.int_range(pl.len(), dtype=pl.UInt32).alias("__pos")
    at = key.to_frame().join(
        found.select(_KEY, position), on=_KEY, how="left", maintain_order="left"
    )["__pos"]
    return df.with_columns(found[c].gather(at).cast(t) for c, t in cols.items())


_ID_SPAN = 1 << 32  # instrument ids are uint32
_KEY = "__date_instrument"


def on_grid(price: pl.Expr) -> pl.Expr:
    variable = (
        pl.when(price > OPT_TICK_SWITCH)
        .then(price % OPT_LARGE_TICK == 0)
        .otherwise(price % OPT_SMALL_TICK == 0)
    )
    fixed = pl.when(pl.col("tick").is_not_null() & (pl.col("tick") > 0)).then(
        price % pl.col("tick") == 0
    )
    return pl.when(pl.col("variable_tick")).then(variable).otherwise(fixed)


def _duplicates(df: pl.DataFrame, dataset: str) -> pl.Series:
    """Rows identical to another row in every record column.

    A 64-bit row hash finds candidates cheaply: the sorted hashes show in one pass whether any
    value repeats (usually none, and then nothing else is done; a sort is cheaper than a hash
    table over millions of rows). Only candidates are compared column by column, so a hash
    collision can never report a false duplicate.
    """
    record_cols = [c for c in df.columns if c not in ("origin", "source_sha")]
    keys = [
        c
        for c in ("ts_recv", "ts_event", "order_id", "sequence", "instrument_id")
        if c in df.columns
    ]
    # market records: a cheap key narrows the candidates
    hashed = df.select(pl.struct(keys if len(keys) >= 3 else record_cols).hash()).to_series()
    ordered = hashed.sort()
    repeated = ordered.filter(ordered == ordered.shift(1))
    dup = pl.repeat(False, df.height, dtype=pl.Boolean, eager=True).alias("chk_duplicate")
    if not repeated.len():
        return dup
    candidates = hashed.is_in(repeated.unique().implode())
    idx = candidates.arg_true()
    exact = df[idx].select(pl.struct(record_cols).is_duplicated()).to_series()
    dup = dup.scatter(idx, exact)
    if dataset == "mbo":
        # Identical T/F records inside one event are separate matches (the real ESH4 sample fills
        # one resting order twice in a packet), so only book actions can be true duplicates.
        dup = dup & ~df["action"].is_in(["T", "F"])
    return dup


def with_checks(dataset: str, df: pl.DataFrame, ticks: pl.DataFrame) -> pl.DataFrame:
    """The batch plus boolean check columns named ``chk_*`` (null = rule does not apply)."""
    out = df.with_columns(_duplicates(df, dataset).alias("chk_duplicate"))
    if dataset == "instruments":
        return out.with_columns(
            pl.when(pl.col("instrument_class").is_in(["C", "P"]))
            .then(pl.col("strike_price").is_not_null() & (pl.col("expiration") > 0))
            .alias("chk_option_fields"),
        )
    out = _asof(out, ticks).with_columns(pl.col("def_date").is_not_null().alias("chk_known"))
    if "ts_recv" in out.columns:
        # Sorted by ts_recv: each record not before the previous one (GX's own increasing check
        # is a pandas diff that costs seconds on millions of rows).
        prev = pl.col("ts_recv").shift(1)
        out = out.with_columns((prev.is_null() | (pl.col("ts_recv") >= prev)).alias("chk_sorted"))
    if "ts_recv" in out.columns:
        ok = pl.col("ts_recv") >= pl.col("ts_event")
        if "flags" in out.columns:
            ok = ok | ((pl.col("flags") & F_BAD_TS_RECV) > 0)
        out = out.with_columns(ok.alias("chk_ts_recv_ge_event"))
    if dataset in ("mbo", "trades"):
        priced = pl.col("price") != UNDEF_PRICE
        if dataset == "mbo":
            priced = priced & pl.col("action").is_in(PRICED_ACTIONS)
        out = out.with_columns(pl.when(priced).then(on_grid(pl.col("price"))).alias("chk_on_grid"))
    if dataset == "mbo":
        out = out.with_columns(
            pl.when(pl.col("action").is_in(["T", "F"]))
            .then(pl.col("size") > 0)
            .alias("chk_trade_size")
        )
    if dataset == "ohlcv":
        # A bar carries its interval's start as ts_event and is sent at its end, so a stream of
        # mixed intervals is ordered only per (interval, instrument).
        prev = pl.col("ts_event").shift(1).over(["schema", "instrument_id"])
        out = out.with_columns(
            (prev.is_null() | (pl.col("ts_event") >= prev)).alias("chk_bar_order")
        )
    if dataset == "statistics":
        out = out.with_columns(
            pl.when(pl.col("stat_type") == 9)
            .then(pl.col("quantity") >= 0)
            .alias("chk_oi_nonnegative")
        )
    return out.drop("def_date", "variable_tick", "tick")


# ------------------------------------------------------------- Databento against Barchart
KEYS = ("expiration", "strike", "right")
CROSS_CHECKS = ("chk_oi_agrees", "chk_settlement_agrees", "chk_in_databento", "chk_in_barchart")
_EPS = 1e-9  # a float settlement equal to the tolerance agrees


def cross_check(
    databento: pl.DataFrame,
    barchart: pl.DataFrame,
    oi_tolerance: int,
    settlement_tolerance: float,
) -> pl.DataFrame:
    """Databento's and Barchart's options of one date joined per (expiration, strike, right),
    with the ``chk_*`` columns of the ``barchart_check`` suite.

    Both frames carry ``expiration`` (date), ``strike``, ``right``, ``open_interest`` and
    ``settlement`` (points). Only expirations both sides list are compared: each side may carry
    roots the other does not ask for (Barchart one root, the lake every root ingested), and
    an expiration absent on one side says which roots were fetched, not that strikes are missing.
    A rule is null where it does not apply (a value one side does not give, a strike one side
    lacks), so it is neither passed nor failed there.
    """
    common = set(databento["expiration"].to_list()) & set(barchart["expiration"].to_list())
    scope = pl.col("expiration").is_in(sorted(common))
    d = databento.filter(scope).select(
        *KEYS,
        pl.lit(True).alias("_in_d"),
        pl.col("open_interest").cast(pl.Int64).alias("oi_databento"),
        pl.col("settlement").cast(pl.Float64).alias("settlement_databento"),
    )
    b = barchart.filter(scope).select(
        *KEYS,
        pl.lit(True).alias("_in_b"),
        "symbol",
        pl.col("open_interest").cast(pl.Int64).alias("oi_barchart"),
        pl.col("settlement").cast(pl.Float64).alias("settlement_barchart"),
    )
    joined = d.join(b, on=list(KEYS), how="full", coalesce=True)
    in_d = pl.col("_in_d").fill_null(False)
    in_b = pl.col("_in_b").fill_null(False)
    oi_gap = (pl.col("oi_databento") - pl.col("oi_barchart")).abs()
    px_gap = (pl.col("settlement_databento") - pl.col("settlement_barchart")).abs()
    return (
        joined.with_columns(
            (pl.when(oi_gap.is_not_null()).then(oi_gap <= oi_tolerance)).alias("chk_oi_agrees"),
            (pl.when(px_gap.is_not_null()).then(px_gap <= settlement_tolerance + _EPS)).alias(
                "chk_settlement_agrees"
            ),
            pl.when(in_b).then(in_d).alias("chk_in_databento"),
            pl.when(in_d).then(in_b).alias("chk_in_barchart"),
        )
        .drop("_in_d", "_in_b")
        .sort(*KEYS)
    )


def disagreements(checked: pl.DataFrame) -> int:
    """Options (expiration, strike, right) failing at least one cross-check rule."""
    failed = pl.any_horizontal(pl.col(c).not_() for c in CROSS_CHECKS).fill_null(False)
    return checked.filter(failed).height
