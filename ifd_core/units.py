"""Contract facts and units, one place for all of them (docs/algorithms.md, "Units").

NQ options premiums trade in 0.05 up to and including 5.00 and in 0.25 above; one index point is
$20 per contract (an option controls one E-mini future). Prices are DBN fixed-point integers
(1e-9) with ``UNDEF_PRICE`` for "no price"; instants are int nanoseconds since the epoch, UTC.
"""

from __future__ import annotations

import datetime as dt

NS = 1_000_000_000  # nanoseconds per second
FIXED = 1_000_000_000  # DBN fixed-point scale: price units per point
UNDEF_PRICE = 2**63 - 1  # DBN's "no price" (int64 max)
UNDEF_TIMESTAMP = 2**64 - 1  # DBN's "no time" (uint64 max)
MULTIPLIER = 20.0  # dollars per index point per contract
SMALL_TICK = 50_000_000  # 0.05
LARGE_TICK = 250_000_000  # 0.25
SWITCH = 5 * FIXED  # 5.00: the last price on the small grid


def tick_below(price: int) -> int:
    """The tick size that applies just below ``price`` (the grid is finer at or under 5.00)."""
    return SMALL_TICK if price <= SWITCH else LARGE_TICK


def round_to_tick(price: int, mode: str = "nearest") -> int:
    """``price`` on the grid: ``down`` (a buyer's limit never rounds up), ``up`` (a seller's),
    or ``nearest`` (ties up). Prices on the grid are returned unchanged."""
    if price <= SWITCH:
        tick, base = SMALL_TICK, 0
    else:
        tick, base = LARGE_TICK, SWITCH
    off = price - base
    lo = base + (off // tick) * tick
    if lo == price:
        return price
    hi = lo + tick
    if mode == "down":
        return lo
    if mode == "up":
        return hi
    if mode != "nearest":
        raise ValueError(f"mode must be down, up or nearest, not {mode!r}")
    return hi if price - lo >= hi - price else lo


def offset_ticks(price: int, ticks: int) -> int:
    """``price`` moved by ``ticks`` grid steps (negative: down), crossing 5.00 step by step."""
    p = round_to_tick(price)
    for _ in range(abs(ticks)):
        p = p + (LARGE_TICK if p >= SWITCH else SMALL_TICK) if ticks > 0 else p - tick_below(p)
    return max(p, SMALL_TICK)


def to_points(price: int) -> float:
    return price * 1e-9


def to_fixed(points: float) -> int:
    return int(round(points * FIXED))


def ns_to_utc(ts_ns: int) -> dt.datetime:
    """An epoch-nanosecond instant as an aware UTC datetime (microsecond precision)."""
    return dt.datetime.fromtimestamp(ts_ns / NS, tz=dt.UTC)
