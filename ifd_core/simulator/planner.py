"""The planner's shared state: which options a planted event may use, when, and at what size.

Shapes (``flows``) and decoys (``decoys``) are written against this class; it knows the
day's chain, the (unmoved) price path, the noise rates that a flow must dwarf, the books' depth
that a print must not exceed, and the open interest published this morning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ifd_core.simulator.book import BookShape
from ifd_core.simulator.chain import DayChain
from ifd_core.simulator.noise import MEAN_OPTION_NOISE_SIZE, intraday_share
from ifd_core.simulator.params import SimParams
from ifd_core.simulator.path import DayPath, Move
from ifd_core.simulator.pricing import YEAR_NS, black76
from ifd_core.simulator.trades import TradePlan

MIN_VOLUME_RATIO = 6.0  # planted volume vs. the option's normal volume over the same span
TARGET_VOLUME_RATIO = 8.0  # what selection aims for, leaving room for the realised noise
FLOW_MONEYNESS = 0.04
FLOW_SIZES = (10, 60)
LARGE_FLOW_SIZES = (40, 120)  # some flows print in larger clips
LARGE_FLOW_SHARE = 0.3
MIN_GAP_NS = 1_000_000_000
MIN_PREMIUM = 1.0  # planted options are worth at least this: full ladders, meaningful prices
CLOSE_MARGIN_NS = 30 * 60 * 1_000_000_000  # planted events (and informed moves) end before this
US = 1_000
MIN = 60_000_000_000
SECOND = 1_000_000_000


@dataclass
class PlantedEvent:
    """One planted flow or decoy, before execution (its trades carry its index as ``tag``)."""

    kind: str  # institutional | decoy_straddle | decoy_churn | decoy_large_print
    shape: str  # burst | multi_window | sweep | low_oi_block | straddle | churn | single_print
    legs: list[int]  # instrument indices
    option_type: str
    direction: str
    view: str
    leg_normal: list[float]  # expected noise contracts of each leg over the window
    informed: bool = False
    move: Move | None = None
    open_interest: int | None = None  # published this morning (low_oi_block only)
    t0: int = 0
    t1: int = 0

    @property
    def expected_normal(self) -> float:
        return max(self.leg_normal)


def view_of(kind: str, option_type: str, direction: str) -> str:
    if kind != "institutional":
        return "NEUTRAL"
    bullish = (option_type == "C") == (direction == "BUY")
    return "BULLISH" if bullish else "BEARISH"


def spread_times(
    rng: np.random.Generator, start: int, n: int, span_ns: int, min_gap: int = MIN_GAP_NS
) -> np.ndarray:
    """n trade times from ``start`` over ``span_ns``, >= min_gap apart, on whole microseconds."""
    inner = np.sort(rng.integers(0, max(span_ns, 1), max(n - 2, 0)))
    t = np.concatenate([[0], inner, [span_ns]])[:n]
    gaps = np.arange(n) * min_gap
    t = np.maximum.accumulate(t - gaps) + gaps
    return (start + t) // US * US


@dataclass
class Planner:
    rng: np.random.Generator
    chain: DayChain
    path: DayPath
    rates: np.ndarray
    shape: BookShape
    day_start_ns: int
    open_rel: int
    close_rel: int
    params: SimParams
    open_interest: np.ndarray  # per instrument; -1 where none was published today
    used: set[int] = field(default_factory=set)
    plans: list[TradePlan] = field(default_factory=list)
    events: list[PlantedEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        # planted sizes stay below the book's depth, so execution never trims them
        self.cap = np.array([self.shape.min_depth(i) - 1 for i in range(self.chain.n)])
        horizon_s = self.params.informed_delay_s[1] + self.params.informed_ramp_s[1]
        self.latest_end = self.close_rel - CLOSE_MARGIN_NS - int(horizon_s * SECOND)

    def expected_normal(self, inst: int, t0: int, t1: int) -> float:
        share = intraday_share(t0, t1, self.open_rel, self.close_rel)
        return float(self.rates[inst] * share * MEAN_OPTION_NOISE_SIZE)

    def event(
        self,
        kind: str,
        shape: str,
        legs: list[int],
        option_type: str,
        direction: str,
        t0: int,
        t1: int,
    ) -> PlantedEvent:
        """A planted flow or decoy over [t0, t1] (its view from ``view_of``: decoys NEUTRAL)."""
        return PlantedEvent(
            kind=kind,
            shape=shape,
            legs=legs,
            option_type=option_type,
            direction=direction,
            view=view_of(kind, option_type, direction),
            leg_normal=[self.expected_normal(i, t0, t1) for i in legs],
        )

    def forwards(self, t0: int) -> np.ndarray:
        """Each instrument's underlying future price at ``t0`` (the futures' own for futures)."""
        c = self.chain
        fwd = np.zeros(c.n)
        for u in np.unique(c.underlying_index):
            at_t0 = self.path.ticks_at(c.instruments[u].raw_symbol, np.array([t0]))[0] * 0.25
            fwd[c.underlying_index == u] = at_t0
        return fwd

    def fair_values(self, t0: int) -> np.ndarray:
        c = self.chain
        fwd = self.forwards(t0)
        tau = (c.expiration_ns - (self.day_start_ns + t0)) / YEAR_NS
        return black76(fwd, np.where(c.is_future, fwd, c.strike), tau, c.is_call)

    def candidates(
        self, t0: int, t1: int, moneyness: float, nearest: int | None = None
    ) -> np.ndarray:
        """Unused options within ``moneyness`` of their future at ``t0``, worth >= MIN_PREMIUM,
        alive 30 minutes after ``t1``; in the ``nearest`` expiries only when given."""
        c = self.chain
        alive = (~c.is_future) & (c.expiration_ns > self.day_start_ns + t1 + 30 * MIN)
        if not alive.any():
            return np.zeros(0, dtype=np.int64)
        ok = alive.copy()
        if nearest is not None:
            ok &= np.isin(c.expiration_ns, np.unique(c.expiration_ns[alive])[:nearest])
        fwd = self.forwards(t0)
        ok &= np.abs(c.strike / fwd - 1.0) <= moneyness
        ok &= self.fair_values(t0) >= MIN_PREMIUM
        ok[list(self.used)] = False
        return np.flatnonzero(ok)

    def by_random_expiry(self, cands: np.ndarray) -> np.ndarray:
        """Candidates grouped by expiry in a random order of expiries, shuffled within each.

        Drawing the expiry first (not the option) gives far series (monthly, quarterly) as many
        flows as the near weeklies, which have more strikes near the money.
        """
        cands = cands.copy()
        self.rng.shuffle(cands)
        expiries = np.unique(self.chain.expiration_ns[cands])
        rank = dict(zip(self.rng.permutation(expiries).tolist(), range(len(expiries)), strict=True))
        order = np.array([rank[int(e)] for e in self.chain.expiration_ns[cands]], dtype=np.int64)
        return cands[np.argsort(order, kind="stable")]

    def window(self, minutes_range: tuple[float, float]) -> tuple[int, float]:
        """A random start and length (minutes) for an event ending before ``latest_end``."""
        minutes = float(self.rng.uniform(*minutes_range))
        lo = self.open_rel + 15 * MIN
        hi = max(self.latest_end - int(minutes * MIN), lo + 1)
        return int(self.rng.integers(lo, hi)), minutes

    def add(self, event: PlantedEvent, plan_parts: list[TradePlan]) -> None:
        tag = len(self.events)
        plan = TradePlan.concat(plan_parts)
        plan.tag[:] = tag
        event.t0, event.t1 = int(plan.t.min()), int(plan.t.max())
        self.events.append(event)
        self.plans.append(plan)
        self.used.update(event.legs)

    def trades(self, inst: int, t: np.ndarray, aggressor: np.ndarray, qty: np.ndarray) -> TradePlan:
        n = len(t)
        return TradePlan(
            inst=np.full(n, inst, dtype=np.int64),
            t=t.astype(np.int64),
            aggressor=np.broadcast_to(aggressor, (n,)).astype(np.int64),
            qty=qty.astype(np.int64),
            hidden=np.zeros(n, dtype=np.int64),
            delay=self.rng.integers(1_000_000, 10_000_000, n),
            tag=np.zeros(n, dtype=np.int64),
        )

    def print_sizes(self, n_range: tuple[int, int]) -> np.ndarray:
        """Sizes of a flow's independent aggressive prints: 10-60 lots, or 40-120 for some flows."""
        n = int(self.rng.integers(n_range[0], n_range[1] + 1))
        lo, hi = self.size_regime()
        return self.rng.integers(lo, hi + 1, n)

    def size_regime(self) -> tuple[int, int]:
        return LARGE_FLOW_SIZES if self.rng.random() < LARGE_FLOW_SHARE else FLOW_SIZES

    def fits(self, inst: int, sizes: np.ndarray, start: int, end: int) -> np.ndarray | None:
        """``sizes`` capped to the book's depth, if they still dwarf the option's normal volume."""
        capped = np.minimum(sizes, self.cap[inst])
        if capped.min() < 1 or capped.sum() < TARGET_VOLUME_RATIO * self.expected_normal(
            inst, start, end
        ):
            return None
        return capped

    def pick(
        self, start: int, end: int, sizes: np.ndarray, option_type: str | None = None
    ) -> tuple[int, np.ndarray] | None:
        """A candidate whose normal volume over [start, end] is small enough for ``sizes``.

        Returns the instrument and the sizes capped to its book depth.
        """
        cands = self.by_random_expiry(self.candidates(start, end, FLOW_MONEYNESS))
        if option_type is not None:
            cands = cands[self.chain.is_call[cands] == (option_type == "C")]
        deep = self.cap[cands] >= sizes.max()  # books that take every print whole come first
        cands = np.concatenate([cands[deep], cands[~deep]])
        for inst in cands:
            capped = self.fits(int(inst), sizes, start, end)
            if capped is not None:
                return int(inst), capped
        return None

    def split(self, total: int, parts: int) -> np.ndarray:
        return 1 + self.rng.multinomial(total - parts, np.full(parts, 1.0 / parts))
