"""Planted institutional flows and decoys: the ground truth that detection is scored against.

Planted trades go through the same matching code as noise trades; only their timing, size and
one-sidedness differ. Noise trading on a planted instrument pauses for the event's window, so the
window's volume in the file is exactly the planted volume and the ground truth can be checked
against the data by anyone.

A share of the institutional flows is *informed*: after the flow, the underlying moves in the
flow's view direction (``Move``, added to the price path before the books are built). That is
the information a detector's signal can be worth something on; uninformed flows (hedges,
closing trades) move nothing. Shapes live in ``flows``, decoys in ``decoys``, the
shared planner state in ``planner``, the truth rows in ``truth``.
"""

from __future__ import annotations

import numpy as np

from ifd_core.simulator import decoys, flows
from ifd_core.simulator.book import BookShape
from ifd_core.simulator.chain import DayChain
from ifd_core.simulator.params import SimParams
from ifd_core.simulator.path import DayPath, Move
from ifd_core.simulator.planner import (
    MIN_VOLUME_RATIO,
    SECOND,
    US,
    Planner,
    PlantedEvent,
)
from ifd_core.simulator.trades import TradePlan

BASELINE_SESSIONS = 20  # clean sessions before the first planted day (baselines need 20)
STRADDLE_DECOYS_PER_DAY = 1
CHURN_DECOYS_PER_DAY = 1
# Execution may nudge a planted print later by up to 1 s (trades.space_out); counting the
# delay from the planned last trade plus this keeps it >= informed_delay_s from the actual one.
MAX_NUDGE_NS = 1_000_000_000

__all__ = [
    "BASELINE_SESSIONS",
    "MIN_VOLUME_RATIO",
    "PlantedEvent",
    "plan_planted",
    "plants_on",
]


def plants_on(day_index: int, n_days: int) -> bool:
    """Planting rule: every session after the warm-up of BASELINE_SESSIONS.

    A run too short to have any session after the warm-up plants on its last session, so that a
    1-5 day simulation still has events for quick tests.
    """
    if n_days <= BASELINE_SESSIONS:
        return day_index == n_days - 1
    return day_index >= BASELINE_SESSIONS


def _count(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    return int(rng.integers(bounds[0], bounds[1] + 1))


def _inform(planner: Planner, event: PlantedEvent) -> None:
    """Decide whether ``event`` is informed and, if so, the move it foretells.

    All four numbers are drawn for every flow, so the flows of a day do not depend on
    ``informed_share``: a run with share 0 plants the same flows, with no edge.
    """
    p, rng = planner.params, planner.rng
    u = rng.random()
    delay = rng.uniform(*p.informed_delay_s)
    ramp = rng.uniform(*p.informed_ramp_s)
    points = rng.uniform(*p.informed_move_points)
    share = p.informed_share
    if event.shape == "low_oi_block" and p.v1_informed_share is not None:
        share = p.v1_informed_share
    event.informed = bool(u < share)
    if not event.informed:
        return
    start = (event.t1 + MAX_NUDGE_NS + int(delay * SECOND)) // US * US
    end = (start + int(ramp * SECOND)) // US * US
    event.move = Move(start, end, points if event.view == "BULLISH" else -points)


def plan_planted(
    rng: np.random.Generator,
    chain: DayChain,
    path: DayPath,
    rates: np.ndarray,
    shape: BookShape,
    day_start_ns: int,
    open_rel: int,
    close_rel: int,
    params: SimParams,
    open_interest: np.ndarray,
) -> tuple[list[PlantedEvent], TradePlan | None]:
    """Choose the day's flows and decoys; returns their events and trades (tag = event index).

    ``path`` is the path before any planted move; informed events carry their ``move``, which the
    caller adds to the path (``path.with_moves``) before building the books.
    """
    planner = Planner(
        rng, chain, path, rates, shape, day_start_ns, open_rel, close_rel, params, open_interest
    )
    n_flows = _count(rng, params.flows_per_day)
    directions = (["BUY", "SELL"] + [str(rng.choice(["BUY", "SELL"])) for _ in range(n_flows)])[
        :n_flows
    ]
    types = (["C", "P"] + [str(rng.choice(["C", "P"])) for _ in range(n_flows)])[:n_flows]
    rng.shuffle(directions)
    rng.shuffle(types)
    weights = np.asarray(params.shape_weights, dtype=np.float64)
    shapes = rng.choice(flows.SHAPES, n_flows, p=weights / weights.sum())
    for direction, option_type, flow_shape in zip(directions, types, shapes, strict=True):
        if flow_shape == "sweep":
            event = flows.sweep(planner, option_type, direction)
        else:
            event = flows.single_strike(planner, option_type, direction, str(flow_shape))
        if event is not None:
            _inform(planner, event)
    for _ in range(_count(rng, params.v1_events_per_day)):
        option_type = str(rng.choice(["C", "P"]))
        direction = str(rng.choice(["BUY", "SELL"]))
        event = flows.low_oi_block(planner, option_type, direction)
        if event is not None:
            _inform(planner, event)
    for _ in range(STRADDLE_DECOYS_PER_DAY):
        decoys.straddle(planner)
    for _ in range(CHURN_DECOYS_PER_DAY):
        decoys.churn(planner)
    for _ in range(_count(rng, params.large_prints_per_day)):
        decoys.large_print(planner)
    if not planner.plans:
        return [], None
    return planner.events, TradePlan.concat(planner.plans)
