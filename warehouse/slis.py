"""Service-level indicators measured from the lake: decision latency per stage, RTH-minute uptime
and data completeness.

Every number is a query over what the live path and the flows wrote (``signal_latency``,
``incidents``, ``trades``, ``cost_ledger``), never a counter kept in a process, so the extended
test, the rollout review, the alerts and ``ifd status`` read the same truth and a restart loses
nothing. Definitions: docs/operations.md §Health, SLIs and alerts.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from ifd_core.ops.budget import SPEND_ENTRY_TYPES
from ifd_core.ops.liveness import rth_minutes, uptime_minutes
from ifd_core.units import NS
from warehouse.lake import Lake

MS = 1_000_000
STAGES = {
    "feed": "feed_latency_ns",
    "decision": "decision_latency_ns",
    "window_close": "window_close_latency_ns",
    "exchange_to_signal": "exchange_to_signal_ns",
}
# Incident kinds whose open episodes make an RTH minute bad (the feed, and breakers of the path
# from records to signals; the historical API and the broker do not stop signals).
DOWN_KINDS = ("feed_stale", "breaker:warehouse", "breaker:detector:")


def _ns(t: dt.datetime | None) -> int | None:
    return None if t is None else int(t.timestamp() * NS)


def incident_episodes(incidents: pl.DataFrame) -> pl.DataFrame:
    """One row per episode: incidents are written as an open row and a resolved row per episode
    with the same ``opened_at``, so an episode is (kind, opened_at). Its end is the latest
    ``resolved_at``; ``done`` whether any row resolved it; ``critical`` whether any row was;
    ``severity`` and ``detail`` are those of its latest row."""
    return (
        incidents.sort("opened_at")
        .group_by("kind", "opened_at", maintain_order=True)
        .agg(
            pl.col("resolved_at").max(),
            (pl.col("state") == "resolved").any().alias("done"),
            (pl.col("severity") == "critical").any().alias("critical"),
            pl.col("severity").last(),
            pl.col("detail").last(),
        )
    )


def down_intervals(incidents: pl.DataFrame, open_until: int) -> list[tuple[int, int]]:
    """``[opened, resolved)`` in ns of each down episode; one still open runs to ``open_until``."""
    if incidents.height == 0:
        return []
    kind = pl.col("kind")
    down = incidents.filter(pl.any_horizontal([kind.str.starts_with(k) for k in DOWN_KINDS]))
    out: list[tuple[int, int]] = []
    eps = incident_episodes(down).select("opened_at", "resolved_at", "done")
    for o, r, done in eps.iter_rows():
        start = _ns(o)
        end = _ns(r) if done and r is not None else open_until
        if start is not None and end > start:
            out.append((start, end))
    return out


def day_slis(lake: Lake, day: dt.date) -> tuple:
    """(date, data cost, completeness, RTH uptime, open critical incidents) of one trade date.

    Uptime is None for a day the live path did not watch (no incidents at all: a replayed or
    historical day), rather than a made-up 100 %.
    """
    cost = (
        lake.scan("cost_ledger")
        .filter((pl.col("date") == day) & pl.col("entry_type").is_in(list(SPEND_ENTRY_TYPES)))
        .select(pl.col("amount_usd").sum())
        .collect()
        .item()
    )
    minutes = rth_minutes(day)  # the exchange calendar's RTH: early closes are shorter
    if not minutes:
        return day, float(cost or 0.0), None, None, 0
    lo, hi = minutes[0], minutes[-1] + 60 * NS
    traded = (
        lake.scan("trades")
        .filter((pl.col("date") == day) & pl.col("ts_event").is_between(lo, hi, closed="left"))
        .join(
            lake.scan("instruments")
            .filter(pl.col("instrument_class") == "F")
            .select("instrument_id")
            .unique(),
            on="instrument_id",
        )
        .select(((pl.col("ts_event").cast(pl.Int64) - lo) // (60 * NS)).alias("m"))
        .unique()
        .collect()
    )
    completeness = traded.height / len(minutes)
    inc = lake.scan("incidents").filter(pl.col("date") == day).collect()
    uptime = None
    watched = inc.filter(pl.col("kind") == "feed_stale").height > 0 or (
        lake.scan("signal_latency")
        .filter(pl.col("local_recv_ns").is_between(lo, hi))
        .head(1)
        .collect()
        .height
        > 0
    )
    if watched:
        _, _, pct = uptime_minutes(down_intervals(inc, hi), day)
        uptime = None if pct is None else pct / 100.0
    critical = open_critical(inc)
    return day, float(cost or 0.0), completeness, uptime, critical


def open_critical(incidents: pl.DataFrame) -> int:
    """Critical episodes opened and never resolved."""
    if incidents.height == 0:
        return 0
    return incident_episodes(incidents).filter(pl.col("critical") & ~pl.col("done")).height


def latency_p95_by_day(lake: Lake, days: list[dt.date]) -> pl.DataFrame:
    """p95 decision latency (ms) per (date, algo) of live signals on ``days``."""
    empty = pl.DataFrame(schema={"date": pl.Date, "algo": pl.String, "latency_p95_ms": pl.Float64})
    lat = lake.scan("signal_latency").collect()
    if lat.height == 0:
        return empty
    sig = (
        lake.scan("signals")
        .filter(pl.col("date").is_in(days))
        .select("signal_id", "date")
        .unique()
        .collect()
    )
    return (
        lat.join(sig, on="signal_id")
        .group_by("date", "algo")
        .agg((pl.col("decision_latency_ns").quantile(0.95) / MS).alias("latency_p95_ms"))
        .sort("date", "algo")
    )


def latency_by_stage(
    lake: Lake, since_ns: int | None = None, until_ns: int | None = None
) -> pl.DataFrame:
    """p50/p95/p99/max (ms) and count of each latency stage per algo, over emit time range."""
    lf = lake.scan("signal_latency")
    if since_ns is not None:
        lf = lf.filter(pl.col("emit_ns") >= since_ns)
    if until_ns is not None:
        lf = lf.filter(pl.col("emit_ns") < until_ns)
    lat = lf.collect()
    frames = []
    for stage, col in STAGES.items():
        frames.append(
            lat.filter(pl.col(col).is_not_null())
            .group_by("algo")
            .agg(
                pl.lit(stage).alias("stage"),
                pl.len().alias("n"),
                *[
                    (pl.col(col).quantile(q, "linear") / MS).alias(f"p{int(q * 100)}_ms")
                    for q in (0.5, 0.95, 0.99)
                ],
                (pl.col(col).max() / MS).alias("max_ms"),
            )
        )
    schema = {
        "algo": pl.String,
        "stage": pl.String,
        "n": pl.UInt32,
        "p50_ms": pl.Float64,
        "p95_ms": pl.Float64,
        "p99_ms": pl.Float64,
        "max_ms": pl.Float64,
    }
    out = [f.select(list(schema)).cast(schema) for f in frames if f.height]
    return pl.concat(out).sort("algo", "stage") if out else pl.DataFrame(schema=schema)
