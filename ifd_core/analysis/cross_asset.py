"""Cross-asset confirmation of v3 episodes from QQQ/NDX options flow (issue 21 §2). Pure: no I/O.

NQ options, NDX options and QQQ options all trade views on the Nasdaq-100. An episode (one flow,
``ifd_core.analysis.episodes``) that says BULLISH is corroborated when, in the same minutes, the
equity-index options' signed premium leans bullish too. Each trade of
``ifd_core.marketdata.massive_options`` is signed by the quote in force (B at/above the ask, S
at/below the bid, N otherwise) and read as IFD reads NQ options: calls bought and puts sold are
bullish, puts bought and calls sold bearish, unsigned trades neither.

Per episode, over ``[first minute, last minute)`` (the episode's first window start floored and
its last window end ceiled to whole minutes): the bullish, bearish and unsigned premium in USD,
the same-direction (``same_premium``) and opposite premium relative to the episode's view, and
``confirmation = same / (same + opposite)`` (null when neither side traded). The caller must pass
trades covering those minutes: a minute without Massive data reads as a minute without trades.
"""

from __future__ import annotations

import polars as pl

from ifd_core.units import NS

MINUTE_NS = 60 * NS
VIEWS = ("BULLISH", "BEARISH")

CONFIRMATION_SCHEMA: dict[str, pl.DataType] = {
    "episode_id": pl.Utf8(),
    "view": pl.Utf8(),
    "start_ns": pl.UInt64(),
    "end_ns": pl.UInt64(),
    "trades": pl.Int64(),
    "bullish_premium": pl.Float64(),
    "bearish_premium": pl.Float64(),
    "unsigned_premium": pl.Float64(),
    "same_premium": pl.Float64(),
    "opposite_premium": pl.Float64(),
    "net_premium": pl.Float64(),
    "confirmation": pl.Float64(),
}


def trade_view(right: pl.Expr, aggressor: pl.Expr) -> pl.Expr:
    """BULLISH for calls bought or puts sold, BEARISH for puts bought or calls sold, else null."""
    bull = ((right == "C") & (aggressor == "B")) | ((right == "P") & (aggressor == "S"))
    bear = ((right == "P") & (aggressor == "B")) | ((right == "C") & (aggressor == "S"))
    return (
        pl.when(bull)
        .then(pl.lit("BULLISH"))
        .when(bear)
        .then(pl.lit("BEARISH"))
        .otherwise(pl.lit(None, dtype=pl.Utf8))
    )


def episode_spans(signals: pl.DataFrame) -> pl.DataFrame:
    """One row per episode of ``signals`` (columns of the ``signals`` table): its view and its
    minutes, from the first window's start to the last window's end. An episode with two views
    is an error (episodes are keyed by view, so it would be a bug upstream)."""
    need = ("episode_id", "view", "window_start", "window_end")
    missing = [c for c in need if c not in signals.columns]
    if missing:
        raise ValueError(f"signals lack columns {missing}")
    if signals["episode_id"].null_count():
        raise ValueError("signals without an episode_id; re-run `ifd detect` for their dates")
    spans = (
        signals.group_by("episode_id")
        .agg(
            pl.col("view").unique().alias("_views"),
            pl.col("window_start").min().alias("first_window_start"),
            pl.col("window_end").max().alias("last_window_end"),
        )
        .sort("episode_id")
    )
    mixed = spans.filter(pl.col("_views").list.len() != 1)
    if mixed.height:
        raise ValueError(f"episode {mixed['episode_id'][0]} has several views")
    return spans.select(
        "episode_id",
        pl.col("_views").list.first().alias("view"),
        "first_window_start",
        "last_window_end",
    )


def cross_asset_confirmation(episodes: pl.DataFrame, trades: pl.DataFrame) -> pl.DataFrame:
    """Per episode (``episode_id, view, first_window_start, last_window_end``; see
    ``episode_spans``) the signed premium of ``trades`` (``ts``, ``right``, ``aggressor``,
    ``premium``: ``massive_options.TRADES_SCHEMA``) in its minutes; one row per episode, in
    ``episode_id`` order, zeros when nothing traded."""
    bad = episodes.filter(~pl.col("view").is_in(VIEWS))
    if bad.height:
        raise ValueError(
            f"episode {bad['episode_id'][0]}: view {bad['view'][0]!r} is not one of {VIEWS}"
        )
    spans = episodes.select(
        pl.col("episode_id").cast(pl.Utf8),
        pl.col("view").cast(pl.Utf8),
        ((pl.col("first_window_start").cast(pl.UInt64) // MINUTE_NS) * MINUTE_NS).alias("start_ns"),
        (
            ((pl.col("last_window_end").cast(pl.UInt64) + MINUTE_NS - 1) // MINUTE_NS) * MINUTE_NS
        ).alias("end_ns"),
    )
    t = trades.select(
        pl.col("ts").cast(pl.UInt64),
        pl.col("premium").cast(pl.Float64),
        trade_view(pl.col("right"), pl.col("aggressor")).alias("trade_view"),
    )
    hits = spans.join_where(t, pl.col("ts") >= pl.col("start_ns"), pl.col("ts") < pl.col("end_ns"))
    sums = hits.group_by("episode_id").agg(
        pl.len().cast(pl.Int64).alias("trades"),
        pl.col("premium").filter(pl.col("trade_view") == "BULLISH").sum().alias("bullish_premium"),
        pl.col("premium").filter(pl.col("trade_view") == "BEARISH").sum().alias("bearish_premium"),
        pl.col("premium").filter(pl.col("trade_view").is_null()).sum().alias("unsigned_premium"),
    )
    out = spans.join(sums, on="episode_id", how="left").with_columns(
        pl.col("trades").fill_null(0),
        *[
            pl.col(c).fill_null(0.0)
            for c in ("bullish_premium", "bearish_premium", "unsigned_premium")
        ],
    )
    bullish = pl.col("view") == "BULLISH"
    same = pl.when(bullish).then(pl.col("bullish_premium")).otherwise(pl.col("bearish_premium"))
    opposite = pl.when(bullish).then(pl.col("bearish_premium")).otherwise(pl.col("bullish_premium"))
    out = out.with_columns(same.alias("same_premium"), opposite.alias("opposite_premium"))
    signed = pl.col("same_premium") + pl.col("opposite_premium")
    out = out.with_columns(
        (pl.col("same_premium") - pl.col("opposite_premium")).alias("net_premium"),
        pl.when(signed > 0).then(pl.col("same_premium") / signed).alias("confirmation"),
    )
    return out.select([pl.col(c).cast(d) for c, d in CONFIRMATION_SCHEMA.items()]).sort(
        "episode_id"
    )


def weighted_confidence(
    signals: pl.DataFrame, confirmations: pl.DataFrame, weight: float, algo: str = "v3"
) -> pl.DataFrame:
    """``signals`` with the confidence of ``algo``'s signals moved toward their episode's
    cross-asset confirmation: ``(1 - weight) * confidence + weight * confirmation``.

    A convex mix keeps the result in [0, 1] and equal to v3's own confidence at weight 0; a
    confirmation of 0.5 (as much opposite as same premium) pulls a confident signal down, as the
    flow elsewhere disagreed. A signal of another algorithm, without an ``episode_id``, whose
    episode has no stored row or whose row's confirmation is null (nothing signed traded) keeps
    its confidence: no cross-asset data is not evidence either way. Rows, their order and the
    columns are those of ``signals``; weight 0 returns ``signals`` itself.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"confidence weight must be in [0, 1], not {weight}")
    if weight == 0.0 or signals.height == 0:
        return signals
    conf = (
        confirmations.filter(pl.col("confirmation").is_not_null())
        .select(pl.col("episode_id").cast(pl.Utf8), pl.col("confirmation").cast(pl.Float64))
        .unique()
    )
    if conf["episode_id"].n_unique() != conf.height:  # the table is keyed by episode
        dup = conf.filter(pl.col("episode_id").is_duplicated())["episode_id"][0]
        raise ValueError(f"episode {dup} has several confirmations")
    joined = signals.join(conf, on="episode_id", how="left", maintain_order="left")
    mixed = (1.0 - weight) * pl.col("confidence") + weight * pl.col("confirmation")
    apply = (pl.col("algo") == algo) & pl.col("confirmation").is_not_null()
    return joined.with_columns(
        pl.when(apply)
        .then(mixed)
        .otherwise(pl.col("confidence"))
        .cast(signals.schema["confidence"])
        .alias("confidence")
    ).select(signals.columns)


def live_weight_note(weight: float) -> str | None:
    """The line live trading logs when the weight is on: it trades v3's own confidence, since an
    episode's confirmation exists only after its minutes' QQQ/NDX trades are fetched (the
    detection flow's cross-asset step, after the session). None when the weight is off."""
    if weight <= 0:
        return None
    return (
        f"massive.confidence_weight={weight:g} is not applied live: live trading uses v3's own "
        "confidence (a cross-asset confirmation exists only after the episode's minutes are "
        "fetched); it applies to the backtest and the extended test"
    )


__all__ = [
    "CONFIRMATION_SCHEMA",
    "live_weight_note",
    "cross_asset_confirmation",
    "episode_spans",
    "trade_view",
    "weighted_confidence",
]
