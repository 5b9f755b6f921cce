"""Decoys: activity that looks big but carries no directional intent.

* straddle: calls and puts of one strike bought together (volatility, not direction);
* churn: two-sided prints of one option, half bought and half sold;
* large print: one 80-150 lot aggressive order on a liquid near-the-money option. Noise keeps
  trading around it (it *is* noise); only the two seconds either side of the print are kept free
  of other trades on that option, which the book model needs to stay consistent.
"""

from __future__ import annotations

import numpy as np

from ifd_core.simulator.flows import ATTEMPTS
from ifd_core.simulator.planner import (
    FLOW_MONEYNESS,
    FLOW_SIZES,
    MIN,
    SECOND,
    TARGET_VOLUME_RATIO,
    Planner,
    spread_times,
)

STRADDLE_MINUTES = (6.0, 15.0)
STRADDLE_GAP_NS = 3 * SECOND  # between call prints; each put follows its call by 0.2-1.5 s
CHURN_MINUTES = (6.0, 20.0)
DECOY_PRINTS = (15, 40)  # a straddle or churn trades as much as a flow would
LARGE_PRINT_SIZES = (80, 150)
LARGE_PRINT_MONEYNESS = 0.015


def straddle(planner: Planner) -> bool:
    rng = planner.rng
    for _ in range(ATTEMPTS):
        start, minutes = planner.window(STRADDLE_MINUTES)
        n = int(rng.integers(DECOY_PRINTS[0], DECOY_PRINTS[1] + 1))
        calls = rng.integers(FLOW_SIZES[0], FLOW_SIZES[1] + 1, n)
        end = start + int(minutes * MIN)
        pairs = _straddle_pairs(planner, start, end, float(calls.sum()))
        if pairs is None:
            continue
        c_inst, p_inst = pairs
        cap = int(min(planner.cap[c_inst], planner.cap[p_inst]))
        calls = np.minimum(calls, cap)
        puts = _matched_sizes(planner, calls, cap)
        times = spread_times(rng, start, len(calls), int(minutes * MIN), STRADDLE_GAP_NS)
        put_times = times + rng.integers(200_000, 1_500_000, len(times)) * 1_000
        one = np.ones(len(calls), dtype=np.int64)
        legs = [c_inst, p_inst]
        event = planner.event("decoy_straddle", "straddle", legs, "CP", "BUY", start, end)
        call_plan = planner.trades(c_inst, times, one, calls)
        planner.add(event, [call_plan, planner.trades(p_inst, put_times, one, puts)])
        return True
    return False


def _straddle_pairs(
    planner: Planner, start: int, end: int, volume: float
) -> tuple[int, int] | None:
    c = planner.chain
    cands = planner.candidates(start, end, FLOW_MONEYNESS / 2, nearest=2)
    calls = [i for i in cands if c.is_call[i]]
    planner.rng.shuffle(calls)
    for ci in calls:
        twin = np.flatnonzero(
            (~c.is_call)
            & (~c.is_future)
            & (c.strike == c.strike[ci])
            & (c.expiration_ns == c.expiration_ns[ci])
        )
        if not len(twin) or int(twin[0]) in planner.used or int(twin[0]) not in cands:
            continue
        pi = int(twin[0])
        worst = max(planner.expected_normal(i, start, end) for i in (ci, pi))
        if volume >= TARGET_VOLUME_RATIO * worst:
            return int(ci), pi
    return None


def _matched_sizes(planner: Planner, calls: np.ndarray, cap: int) -> np.ndarray:
    """Put sizes within a few lots of each call print, same total on both legs."""
    top = min(FLOW_SIZES[1], cap)
    puts = np.clip(calls + planner.rng.integers(-3, 4, len(calls)), 1, top)
    for i in range(len(puts) - 1, -1, -1):
        diff = int(calls.sum() - puts.sum())
        if diff == 0:
            break
        puts[i] = np.clip(puts[i] + diff, 1, top)
    return puts if puts.sum() == calls.sum() else calls.copy()


def churn(planner: Planner) -> bool:
    rng = planner.rng
    for _ in range(ATTEMPTS):
        start, minutes = planner.window(CHURN_MINUTES)
        n = int(rng.integers(DECOY_PRINTS[0], DECOY_PRINTS[1] + 1))
        total = int(rng.integers(FLOW_SIZES[0], FLOW_SIZES[1] + 1, n).sum())
        m = 2 * int(rng.integers(15, 31))
        buy_total = int(round(total * rng.uniform(0.46, 0.54)))
        parts = np.concatenate(
            [planner.split(buy_total, m // 2), planner.split(total - buy_total, m // 2)]
        )
        end = start + int(minutes * MIN)
        picked = planner.pick(start, end, parts)
        if picked is None:
            continue
        inst, parts = picked
        buys, sells = parts[: m // 2], parts[m // 2 :]
        if not 0.45 <= buys.sum() / parts.sum() <= 0.55:
            continue
        first_buy = bool(rng.random() < 0.5)
        aggr = np.tile([1, -1] if first_buy else [-1, 1], m // 2)
        qty = np.empty(m, dtype=np.int64)
        qty[aggr > 0], qty[aggr < 0] = buys, sells
        times = spread_times(rng, start, m, int(minutes * MIN))
        right = "C" if planner.chain.is_call[inst] else "P"
        event = planner.event(
            "decoy_churn", "churn", [inst], right, "BOTH", int(times[0]), int(times[-1])
        )
        planner.add(event, [planner.trades(inst, times, aggr, qty)])
        return True
    return False


def large_print(planner: Planner) -> bool:
    """One aggressive 80-150 lot order on a near-the-money option of the two nearest expiries."""
    rng = planner.rng
    for _ in range(ATTEMPTS):
        start, _ = planner.window((0.0, 0.0))
        start = start // 1_000 * 1_000
        size = int(rng.integers(LARGE_PRINT_SIZES[0], LARGE_PRINT_SIZES[1] + 1))
        cands = planner.candidates(start, start, LARGE_PRINT_MONEYNESS, nearest=2)
        cands = cands[planner.cap[cands] >= LARGE_PRINT_SIZES[0]]
        if not len(cands):
            continue
        inst = int(rng.choice(cands))
        size = min(size, int(planner.cap[inst]))  # one order, never trimmed by the book
        sign = 1 if rng.random() < 0.5 else -1
        right = "C" if planner.chain.is_call[inst] else "P"
        direction = "BUY" if sign > 0 else "SELL"
        event = planner.event(
            "decoy_large_print", "single_print", [inst], right, direction, start, start
        )
        t = np.array([start], dtype=np.int64)
        planner.add(event, [planner.trades(inst, t, np.array([sign]), np.array([size]))])
        return True
    return False
