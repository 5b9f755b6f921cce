"""Ground-truth rows of the planted events, measured from what was actually executed."""

from __future__ import annotations

import datetime as dt

from ifd_core.simulator.chain import DayChain
from ifd_core.simulator.contracts import FUTURE_ROOT, WEEKLY_ROOT_PREFIX
from ifd_core.simulator.planner import MIN_VOLUME_RATIO, US, PlantedEvent
from ifd_core.simulator.trades import Executed

MONTHLY_ROOT = f"{WEEKLY_ROOT_PREFIX}3"  # the third-Friday series is the monthly expiry


def series_of(root: str) -> str:
    """quarterly (NQ), monthly (the third-Friday series QN3) or weekly (QN1, QN2, QN4, QN5)."""
    if root == FUTURE_ROOT:
        return "quarterly"
    return "monthly" if root == MONTHLY_ROOT else "weekly"


def iso(ns: int) -> str:
    """ISO-8601 UTC; planted times are whole microseconds, so this is exact."""
    if ns % US:
        raise AssertionError(f"planted time {ns} is not on a whole microsecond")
    whole = dt.datetime.fromtimestamp(ns // 1_000_000_000, tz=dt.UTC)
    return whole.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 1_000_000_000 // US:06d}Z"


def truth_records(
    events: list[PlantedEvent],
    executed: Executed,
    chain: DayChain,
    day: dt.date,
    day_start_ns: int,
) -> list[dict]:
    """Ground-truth rows, measured from what was actually executed (after book-depth caps).

    ``contracts`` is the volume on the event's side (both sides for BOTH), which equals the sum
    of ``T`` sizes of that side on the event's instruments in [start, end]: noise trading pauses
    there. ``trades`` counts aggressive orders; ``prints`` counts ``T`` records (an order that
    sweeps several price levels prints once per level). Institutional rows say whether the flow
    is ``informed``; informed ones carry ``move_points`` (signed index points) and the ramp's
    ``move_start``/``move_end``.
    """
    plan = executed.plan
    rows = []
    for tag, ev in enumerate(events):
        mine = plan.tag == tag
        sides = ("buy", "sell") if ev.direction == "BOTH" else (ev.direction.lower(),)
        legs = []
        for inst, normal in zip(ev.legs, ev.leg_normal, strict=True):
            sel = mine & (plan.inst == inst)
            buy, sell = sel & (plan.aggressor > 0), sel & (plan.aggressor < 0)
            leg = {
                "raw_symbol": chain.instruments[inst].raw_symbol,
                "instrument_id": int(chain.ids[inst]),
                "strike": float(chain.strike[inst]),
                "buy_contracts": int(executed.size[buy].sum()),
                "sell_contracts": int(executed.size[sell].sum()),
                "buy_trades": int(buy.sum()),
                "sell_trades": int(sell.sum()),
                "buy_prints": int(executed.prints[buy].sum()),
                "sell_prints": int(executed.prints[sell].sum()),
                "expected_normal_contracts": round(normal, 2),
            }
            mine_leg = sum(leg[f"{s}_contracts"] for s in sides)
            if ev.kind == "institutional" and mine_leg < MIN_VOLUME_RATIO * normal:
                raise AssertionError(f"simulator bug: planted leg below {MIN_VOLUME_RATIO}x normal")
            legs.append(leg)
        contracts = sum(leg[f"{s}_contracts"] for leg in legs for s in sides)
        trades = sum(leg[f"{s}_trades"] for leg in legs for s in sides)
        prints = sum(leg[f"{s}_prints"] for leg in legs for s in sides)
        t0 = int(plan.t[mine].min()) + day_start_ns
        t1 = int(plan.t[mine].max()) + day_start_ns
        first = chain.instruments[ev.legs[0]]
        exp_date = dt.datetime.fromtimestamp(first.expiration_ns // 1_000_000_000, tz=dt.UTC).date()
        row = {
            "kind": ev.kind,
            "shape": ev.shape,
            "series": series_of(first.root),
            "date": day.isoformat(),
            "root": first.root,
            "raw_symbols": [leg["raw_symbol"] for leg in legs],
            "instrument_ids": [leg["instrument_id"] for leg in legs],
            "expiration": exp_date.isoformat(),
            "strike": float(first.strike),
            "option_type": ev.option_type,
            "direction": ev.direction,
            "view": ev.view,
            "start": iso(t0),
            "end": iso(t1),
            "start_ns": t0,
            "end_ns": t1,
            "contracts": contracts,
            "trades": trades,
            "prints": prints,
            "expected_normal_contracts": round(ev.expected_normal, 2),
            "informed": ev.informed,
            "legs": legs,
        }
        if ev.move is not None:
            m0, m1 = ev.move.start + day_start_ns, ev.move.end + day_start_ns
            row |= {
                "move_points": round(ev.move.points, 4),
                "move_start": iso(m0),
                "move_end": iso(m1),
                "move_start_ns": m0,
                "move_end_ns": m1,
            }
        if ev.open_interest is not None:
            row["open_interest"] = ev.open_interest
        rows.append(row)
    return rows
