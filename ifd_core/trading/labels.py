"""Signal outcome labelling: the triple barrier on the underlying future's trades.

From the future's last trade at or before ``decision_ts``, a signal is ``correct`` or
``incorrect`` when the future first trades ``barrier`` points with or against its view, ``neutral``
when neither happens within the horizon, ``unresolved`` when the data end first. The same function
labels live signals and backtests; IB's last-trade ticks may continue the tape after Databento's
(``price_source``). Rules, defaults and why 25 points: docs/algorithms.md §10.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from ifd_core.units import NS

OUTCOME_SCHEMA = {
    "signal_id": pl.String,
    "algo": pl.String,
    "view": pl.String,
    "decision_ts": pl.UInt64,
    "underlying_id": pl.UInt32,
    "ref_price": pl.Float64,
    "barrier_points": pl.Float64,
    "horizon_s": pl.Int64,
    "label": pl.String,
    "resolved_ts": pl.UInt64,
    "move_at_horizon": pl.Float64,
    "max_favorable": pl.Float64,
    "max_adverse": pl.Float64,
}


@dataclass(frozen=True)
class BarrierParams:
    barrier_points: float = 25.0
    horizon_s: int = 1800

    @classmethod
    def from_settings(cls, settings) -> BarrierParams:
        """``settings.labels`` (an ``ifd_core.settings.Settings``)."""
        return cls(settings.labels.barrier_points, settings.labels.horizon_s)


def label_signals(
    signals: pl.DataFrame, tape: pl.DataFrame, p: BarrierParams | None = None
) -> pl.DataFrame:
    """One outcome per signal.

    ``signals``: ``signal_id, algo, view, decision_ts, underlying_id``.
    ``tape``: the underlying's trades — ``instrument_id, ts_event`` (ns) and ``price`` (points,
    float) — covering at least [decision, decision + horizon] for a resolved label.
    """
    p = p or BarrierParams()
    rows = []
    h = p.horizon_s * NS
    tapes = {
        iid: (part["ts_event"].to_numpy(), part["price"].to_numpy())
        for (iid,), part in tape.sort("ts_event").group_by(["instrument_id"])
    }
    for s in signals.iter_rows(named=True):
        ts, px = tapes.get(s["underlying_id"], (np.empty(0, np.uint64), np.empty(0)))
        rows.append(_one(s, ts, px, h, p))
    return pl.DataFrame(rows, schema=OUTCOME_SCHEMA, orient="row")


def _one(s: dict, ts: np.ndarray, px: np.ndarray, h: int, p: BarrierParams) -> tuple:
    sign = 1.0 if s["view"] == "BULLISH" else -1.0
    t0 = int(s["decision_ts"])
    head = (s["signal_id"], s["algo"], s["view"], t0, s["underlying_id"])
    i0 = int(np.searchsorted(ts, t0, side="right"))  # trades at or before the decision: [0, i0)
    if i0 == 0:
        return (*head, None, p.barrier_points, p.horizon_s, "unresolved", None, None, None, None)
    ref = float(px[i0 - 1])
    i1 = int(np.searchsorted(ts, t0 + h, side="right"))
    move = (px[i0:i1] - ref) * sign
    fav = float(move.max()) if move.size else 0.0
    adv = float(-move.min()) if move.size else 0.0
    hit_up = np.flatnonzero(move >= p.barrier_points)
    hit_dn = np.flatnonzero(move <= -p.barrier_points)
    first_up = hit_up[0] if hit_up.size else None
    first_dn = hit_dn[0] if hit_dn.size else None
    at_h = float(move[-1]) if move.size else 0.0
    if first_up is not None and (first_dn is None or first_up < first_dn):
        label, when = "correct", int(ts[i0 + first_up])
    elif first_dn is not None:
        label, when = "incorrect", int(ts[i0 + first_dn])
    elif i1 < len(ts) or (len(ts) and int(ts[-1]) >= t0 + h):
        label, when = "neutral", t0 + h
    else:
        label, when = "unresolved", None
    return (*head, ref, p.barrier_points, p.horizon_s, label, when, at_h, fav, adv)


def extend_tape(tape: pl.DataFrame, extra: pl.DataFrame) -> tuple[pl.DataFrame, dict[int, int]]:
    """``tape`` continued by ``extra`` (same columns) after each underlying's last trade in
    ``tape`` (all of ``extra`` for an underlying ``tape`` lacks). Returns the tape and, per
    underlying, the first ``extra`` timestamp used."""
    if extra.height == 0:
        return tape, {}
    last = tape.group_by("instrument_id").agg(pl.col("ts_event").max().alias("_last"))
    add = (
        extra.join(last, on="instrument_id", how="left")
        .filter(pl.col("_last").is_null() | (pl.col("ts_event") > pl.col("_last")))
        .select(tape.columns)
    )
    first = dict(add.group_by("instrument_id").agg(pl.col("ts_event").min()).iter_rows())
    return pl.concat([tape, add.cast(tape.schema)]), {int(k): int(v) for k, v in first.items()}


def price_sources(outcomes: pl.DataFrame, extra_from: dict[int, int]) -> pl.Series:
    """Which prices labelled each outcome: ``ib`` when the reference price came from the extra
    tape, ``databento+ib`` when the path to the label used it, else ``databento``."""
    out = []
    for r in outcomes.iter_rows(named=True):
        first = extra_from.get(int(r["underlying_id"]))
        t0 = int(r["decision_ts"])
        hit = r["label"] in ("correct", "incorrect")
        end = int(r["resolved_ts"]) if hit else t0 + int(r["horizon_s"]) * NS
        if first is None or first > end:
            out.append("databento")
        else:
            out.append("ib" if first <= t0 else "databento+ib")
    return pl.Series("price_source", out, dtype=pl.String)
