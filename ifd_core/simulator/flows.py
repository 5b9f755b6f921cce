"""Shapes of planted institutional flows: burst, multi-window, sweep, and the low-OI block.

Each is many independent aggressive prints on one side (what a detector must tell apart from one
large print), with planted volume >= MIN_VOLUME_RATIO x the option's normal volume over the span;
noise on the flow's instruments pauses for the span (``day``), so the file's volume there is
exactly the planted volume.
"""

from __future__ import annotations

import numpy as np

from ifd_core.simulator.planner import (
    MIN,
    SECOND,
    US,
    Planner,
    PlantedEvent,
    spread_times,
)
from ifd_core.units import MULTIPLIER

SHAPES = ("burst", "multi_window", "sweep")
ATTEMPTS = 30

BURST_PRINTS = (10, 20)
BURST_MINUTES = (1.5, 4.0)  # all prints inside one 5-minute window
WINDOW_NS = 5 * MIN
MULTI_PRINTS = (15, 40)
MULTI_MINUTES = (6.0, 20.0)
SWEEP_LEGS = (2, 4)  # adjacent strikes of one expiry, same right and side
SWEEP_ROUNDS = (5, 12)  # each round hits every leg within a second or two
SWEEP_MINUTES = (1.0, 4.0)
SWEEP_ROUND_GAP_NS = 4 * SECOND
SWEEP_LEG_LAG_US = (50_000, 700_000)

# IFD v1 (analysis/ifd_v1.py) fires on volume >= 500, volume / OI >= 10, premium >= $100k and a
# strike within 2 % of the underlying; a low-OI block clears each gate with room to spare.
V1_MIN_VOLUME = 600
V1_MAX_VOLUME = 3_000
V1_OI_FACTOR = 11.0  # planted volume >= 11 x published OI
V1_PRINT_SIZES = (50, 150)
V1_MIN_PRINT = 50
V1_MONEYNESS = 0.015
V1_MIN_PREMIUM_USD = 120_000.0


def one_sided(planner: Planner, sizes: np.ndarray, sign: int) -> tuple[np.ndarray, np.ndarray]:
    """Prints of a flow: its sizes on its side plus 0-2 small opposite prints inside (<= 10 %).

    Returns (aggressor, qty) in time order; the opposite prints are never first or last.
    """
    rng = planner.rng
    n_opp = int(rng.integers(0, 3))
    opp = rng.integers(1, 6, n_opp)
    if opp.sum() * 9 > sizes.sum() or len(sizes) < 2:  # keep >= 90 % of the volume on the side
        n_opp, opp = 0, opp[:0]
    n = len(sizes) + n_opp
    is_opp = np.zeros(n, dtype=bool)
    if n_opp:
        is_opp[rng.choice(np.arange(1, n - 1), n_opp, replace=False)] = True
    qty = np.empty(n, dtype=np.int64)
    qty[~is_opp], qty[is_opp] = sizes, opp
    return np.where(is_opp, -sign, sign), qty


def single_strike(
    planner: Planner, option_type: str, direction: str, shape: str
) -> PlantedEvent | None:
    """``burst`` (10-20 prints within <= 4 minutes of one 5-minute window) or ``multi_window``
    (15-40 prints over 6-20 minutes) on one option."""
    rng = planner.rng
    for _ in range(ATTEMPTS):
        if shape == "burst":
            _, minutes = planner.window(BURST_MINUTES)
            span = int(minutes * MIN) // US * US
            first = (planner.open_rel + 15 * MIN) // WINDOW_NS + 1
            last = (planner.latest_end - WINDOW_NS) // WINDOW_NS
            w0 = int(rng.integers(first, max(last, first) + 1)) * WINDOW_NS
            slack = WINDOW_NS - span - 5 * SECOND  # room for execution's nudges at the end
            start = w0 + int(rng.integers(0, max(slack, 1)))
            sizes = planner.print_sizes(BURST_PRINTS)
        else:
            start, minutes = planner.window(MULTI_MINUTES)
            span = int(minutes * MIN)
            sizes = planner.print_sizes(MULTI_PRINTS)
        picked = planner.pick(start, start + span, sizes, option_type)
        if picked is None:
            continue
        inst, sizes = picked
        aggr, qty = one_sided(planner, sizes, 1 if direction == "BUY" else -1)
        times = spread_times(rng, start, len(qty), span)
        event = planner.event(
            "institutional", shape, [inst], option_type, direction, int(times[0]), int(times[-1])
        )
        planner.add(event, [planner.trades(inst, times, aggr, qty)])
        return event
    return None


def sweep(planner: Planner, option_type: str, direction: str) -> PlantedEvent | None:
    """2-4 adjacent strikes of one expiry hit together, round after round, for a few minutes."""
    rng, c = planner.rng, planner.chain
    sign = 1 if direction == "BUY" else -1
    for _ in range(ATTEMPTS):
        start, minutes = planner.window(SWEEP_MINUTES)
        span = int(minutes * MIN)
        n_legs = int(rng.integers(SWEEP_LEGS[0], SWEEP_LEGS[1] + 1))
        n_rounds = int(rng.integers(SWEEP_ROUNDS[0], SWEEP_ROUNDS[1] + 1))
        lo, hi = planner.size_regime()
        cands = planner.by_random_expiry(planner.candidates(start, start + span, 0.04))
        cands = cands[c.is_call[cands] == (option_type == "C")]
        ok = set(cands.tolist())
        legs = None
        for anchor in cands:
            same = np.flatnonzero(
                (c.expiration_ns == c.expiration_ns[anchor])
                & (c.is_call == c.is_call[anchor])
                & ~c.is_future
            )
            same = same[np.argsort(c.strike[same])]
            pos = int(np.flatnonzero(same == anchor)[0])
            step = 1 if rng.random() < 0.5 else -1
            at = [pos + step * j for j in range(n_legs)]
            run = [int(same[k]) for k in at if 0 <= k < len(same)]
            if len(run) == n_legs and all(i in ok for i in run):
                legs = run
                break
        if legs is None:
            continue
        sizes = {i: rng.integers(lo, hi + 1, n_rounds) for i in legs}
        capped = {i: planner.fits(i, sizes[i], start, start + span) for i in legs}
        if any(v is None for v in capped.values()):
            continue
        round_t = spread_times(rng, start, n_rounds, span, SWEEP_ROUND_GAP_NS)
        lag = np.cumsum(rng.integers(*SWEEP_LEG_LAG_US, (n_rounds, n_legs)), axis=1) * US
        lag -= lag[:, :1]  # the first leg of a round prints at the round's time
        parts = [
            planner.trades(i, round_t + lag[:, j], np.full(n_rounds, sign), capped[i])
            for j, i in enumerate(legs)
        ]
        t0, t1 = int(round_t[0]), int((round_t + lag[:, -1])[-1])
        event = planner.event("institutional", "sweep", legs, option_type, direction, t0, t1)
        planner.add(event, parts)
        return event
    return None


def low_oi_block(planner: Planner, option_type: str, direction: str) -> PlantedEvent | None:
    """A v1 event: >= 600 contracts in 50-150 lot prints on a near-the-money strike whose open
    interest published this morning is at most a tenth of it (new weekly strikes start low)."""
    rng, c = planner.rng, planner.chain
    for _ in range(ATTEMPTS):
        start, minutes = planner.window(MULTI_MINUTES)
        span = int(minutes * MIN)
        cands = planner.candidates(start, start + span, V1_MONEYNESS)
        cands = cands[c.is_call[cands] == (option_type == "C")]
        oi = planner.open_interest[cands]
        fair = planner.fair_values(start)[cands]
        need = np.maximum(V1_MIN_VOLUME, np.ceil(V1_OI_FACTOR * oi))
        need = np.maximum(need, np.ceil(V1_MIN_PREMIUM_USD / (MULTIPLIER * fair)))
        ok = (oi >= 0) & (need <= V1_MAX_VOLUME) & (planner.cap[cands] >= V1_MIN_PRINT)
        if not ok.any():
            return None  # no such strike today: the morning's OI does not change within the day
        choice = int(rng.choice(np.flatnonzero(ok)))
        inst, volume = int(cands[choice]), int(need[choice])
        top = min(V1_PRINT_SIZES[1], int(planner.cap[inst]))
        sizes: list[int] = []
        while sum(sizes) < volume:
            sizes.append(int(rng.integers(V1_PRINT_SIZES[0], max(top, V1_PRINT_SIZES[0]) + 1)))
        capped = planner.fits(inst, np.array(sizes), start, start + span)
        if capped is None or capped.sum() < volume:
            continue
        sign = 1 if direction == "BUY" else -1
        times = spread_times(rng, start, len(capped), span)
        event = planner.event(
            "institutional",
            "low_oi_block",
            [inst],
            option_type,
            direction,
            int(times[0]),
            int(times[-1]),
        )
        event.open_interest = int(planner.open_interest[inst])
        planner.add(event, [planner.trades(inst, times, np.full(len(capped), sign), capped)])
        return event
    return None
