"""Planted institutional flows and decoys: the ground truth that detection is scored against.

Planted trades go through the same matching code as noise trades; only their timing, size and
one-sidedness differ. Noise trading on a planted instrument pauses for the event's window, so the
window's volume in the file is exactly the planted volume and the ground truth can be checked
against the data by anyone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from ifd_core.marketdata.sim_book import BookShape
from ifd_core.marketdata.sim_chain import DayChain
from ifd_core.marketdata.sim_noise import MEAN_OPTION_NOISE_SIZE, intraday_share
from ifd_core.marketdata.sim_path import DayPath
from ifd_core.marketdata.sim_pricing import YEAR_NS, black76
from ifd_core.marketdata.sim_trades import Executed, TradePlan

BASELINE_SESSIONS = 20  # clean sessions before the first planted day (baselines need 20)
FLOWS_PER_DAY = (2, 3)
STRADDLE_DECOYS_PER_DAY = 1
CHURN_DECOYS_PER_DAY = 1
MIN_VOLUME_RATIO = 6.0  # planted volume vs. the option's normal volume over the same span
TARGET_VOLUME_RATIO = 8.0  # what selection aims for, leaving room for the realised noise
FLOW_MONEYNESS = 0.04
FLOW_TRADES = (15, 40)
FLOW_SIZES = (10, 60)
FLOW_MINUTES = (6, 20)
STRADDLE_MINUTES = (6, 15)
CHURN_MINUTES = (6, 20)
MIN_GAP_NS = 1_000_000_000
STRADDLE_GAP_NS = 3_000_000_000  # between call prints; each put follows its call by 0.2-1.5 s
MIN_PREMIUM = 1.0  # planted options are worth at least this: full ladders, meaningful prices
_US = 1_000
_MIN = 60_000_000_000


def plants_on(day_index: int, n_days: int) -> bool:
    """Planting rule: from the 21st simulated session on, and always on the last one."""
    return day_index >= BASELINE_SESSIONS or day_index == n_days - 1


@dataclass
class PlantedEvent:
    """One planted flow or decoy, before execution (its trades carry its index as ``tag``)."""

    kind: str  # institutional | decoy_straddle | decoy_churn
    legs: list[int]  # instrument indices
    option_type: str
    direction: str
    view: str
    expected_normal: float  # expected noise contracts of the (busiest) leg over the window
    t0: int = 0
    t1: int = 0


def _view(kind: str, option_type: str, direction: str) -> str:
    if kind != "institutional":
        return "NEUTRAL"
    bullish = (option_type == "C") == (direction == "BUY")
    return "BULLISH" if bullish else "BEARISH"


def _times(
    rng: np.random.Generator, start: int, n: int, minutes: float, min_gap: int = MIN_GAP_NS
) -> np.ndarray:
    """n trade times from ``start`` spanning ``minutes``, >= 1 s apart, on whole microseconds."""
    span = int(minutes * _MIN)
    inner = np.sort(rng.integers(0, span, max(n - 2, 0)))
    t = np.concatenate([[0], inner, [span]])[:n]
    gaps = np.arange(n) * min_gap
    t = np.maximum.accumulate(t - gaps) + gaps
    return (start + t) // _US * _US


class _Planner:
    def __init__(
        self,
        rng: np.random.Generator,
        chain: DayChain,
        path: DayPath,
        rates: np.ndarray,
        shape: BookShape,
        day_start_ns: int,
        open_rel: int,
        close_rel: int,
    ) -> None:
        self.rng, self.chain, self.path, self.rates = rng, chain, path, rates
        # planted sizes stay below the book's depth, so execution never trims them
        self.cap = np.array([shape.min_depth(i) - 1 for i in range(chain.n)])
        self.day_start_ns, self.open_rel, self.close_rel = day_start_ns, open_rel, close_rel
        self.used: set[int] = set()
        self.plans: list[TradePlan] = []
        self.events: list[PlantedEvent] = []

    def expected_normal(self, inst: int, t0: int, t1: int) -> float:
        share = intraday_share(t0, t1, self.open_rel, self.close_rel)
        return float(self.rates[inst] * share * MEAN_OPTION_NOISE_SIZE)

    def candidates(self, t0: int, t1: int, moneyness: float) -> np.ndarray:
        """Unused options near the money, in the nearest two expiries still alive after ``t1``."""
        c = self.chain
        alive = (~c.is_future) & (c.expiration_ns > self.day_start_ns + t1 + 30 * _MIN)
        if not alive.any():
            return np.zeros(0, dtype=np.int64)
        nearest = np.unique(c.expiration_ns[alive])[:2]
        fwd = np.zeros(c.n)
        for u in np.unique(c.underlying_index):
            at_t0 = self.path.ticks_at(c.instruments[u].raw_symbol, np.array([t0]))[0] * 0.25
            fwd[c.underlying_index == u] = at_t0
        near = np.abs(c.strike / fwd - 1.0) <= moneyness
        tau = (c.expiration_ns - (self.day_start_ns + t0)) / YEAR_NS
        worth = black76(fwd, np.where(c.is_future, fwd, c.strike), tau, c.is_call) >= MIN_PREMIUM
        ok = alive & np.isin(c.expiration_ns, nearest) & near & worth
        ok[list(self.used)] = False
        return np.flatnonzero(ok)

    def window(self, minutes_range: tuple[int, int]) -> tuple[int, float]:
        minutes = float(self.rng.uniform(*minutes_range))
        lo = self.open_rel + 15 * _MIN
        hi = self.close_rel - 30 * _MIN - int(minutes * _MIN)
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
            aggressor=aggressor.astype(np.int64),
            qty=qty.astype(np.int64),
            hidden=np.zeros(n, dtype=np.int64),
            delay=self.rng.integers(1_000_000, 10_000_000, n),
            tag=np.zeros(n, dtype=np.int64),
        )

    def flow_sizes(self) -> np.ndarray:
        n = int(self.rng.integers(FLOW_TRADES[0], FLOW_TRADES[1] + 1))
        return self.rng.integers(FLOW_SIZES[0], FLOW_SIZES[1] + 1, n)

    def pick(
        self, start: int, minutes: float, sizes: np.ndarray, option_type: str | None = None
    ) -> tuple[int, np.ndarray] | None:
        """A candidate whose normal volume over the window is small enough for ``sizes``.

        Returns the instrument and the sizes capped to its book depth.
        """
        end = start + int(minutes * _MIN)
        cands = self.candidates(start, end, FLOW_MONEYNESS)
        if option_type is not None:
            cands = cands[self.chain.is_call[cands] == (option_type == "C")]
        self.rng.shuffle(cands)
        deep = self.cap[cands] >= sizes.max()  # books that take every print whole come first
        cands = np.concatenate([cands[deep], cands[~deep]])
        for inst in cands:
            capped = np.minimum(sizes, self.cap[inst])
            normal = self.expected_normal(int(inst), start, end)
            if capped.sum() >= TARGET_VOLUME_RATIO * normal:
                return int(inst), capped
        return None

    def institutional(self, option_type: str, direction: str) -> bool:
        for _ in range(30):
            start, minutes = self.window(FLOW_MINUTES)
            picked = self.pick(start, minutes, self.flow_sizes(), option_type)
            if picked is None:
                continue
            inst, sizes = picked
            sign = 1 if direction == "BUY" else -1
            n_opp = int(self.rng.integers(0, 3))
            opp = self.rng.integers(1, 6, n_opp)
            if opp.sum() * 9 > sizes.sum():  # keep >= 90 % of the volume on the flow's side
                n_opp, opp = 0, opp[:0]
            times = _times(self.rng, start, len(sizes) + n_opp, minutes)
            is_opp = np.zeros(len(times), dtype=bool)
            if n_opp:  # opposite prints somewhere inside, never first or last
                is_opp[self.rng.choice(np.arange(1, len(times) - 1), n_opp, replace=False)] = True
            qty = np.empty(len(times), dtype=np.int64)
            qty[~is_opp], qty[is_opp] = sizes, opp
            plan = self.trades(inst, times, np.where(is_opp, -sign, sign), qty)
            event = PlantedEvent(
                "institutional",
                [inst],
                option_type,
                direction,
                _view("institutional", option_type, direction),
                self.expected_normal(inst, int(times[0]), int(times[-1])),
            )
            self.add(event, [plan])
            return True
        return False

    def straddle(self) -> bool:
        for _ in range(30):
            start, minutes = self.window(STRADDLE_MINUTES)
            calls = self.flow_sizes()
            end = start + int(minutes * _MIN)
            pairs = self._straddle_pairs(start, end, float(calls.sum()))
            if pairs is None:
                continue
            c_inst, p_inst = pairs
            cap = int(min(self.cap[c_inst], self.cap[p_inst]))
            calls = np.minimum(calls, cap)
            puts = self._matched_sizes(calls, cap)
            times = _times(self.rng, start, len(calls), minutes, STRADDLE_GAP_NS)
            put_times = times + self.rng.integers(200_000, 1_500_000, len(times)) * _US
            one = np.ones(len(calls), dtype=np.int64)
            event = PlantedEvent(
                "decoy_straddle",
                [c_inst, p_inst],
                "CP",
                "BUY",
                "NEUTRAL",
                max(self.expected_normal(i, start, end) for i in pairs),
            )
            self.add(
                event,
                [self.trades(c_inst, times, one, calls), self.trades(p_inst, put_times, one, puts)],
            )
            return True
        return False

    def _straddle_pairs(self, start: int, end: int, volume: float) -> tuple[int, int] | None:
        c = self.chain
        cands = self.candidates(start, end, FLOW_MONEYNESS / 2)
        calls = [i for i in cands if c.is_call[i]]
        self.rng.shuffle(calls)
        for ci in calls:
            twin = np.flatnonzero(
                (~c.is_call)
                & (~c.is_future)
                & (c.strike == c.strike[ci])
                & (c.expiration_ns == c.expiration_ns[ci])
            )
            if not len(twin) or int(twin[0]) in self.used or int(twin[0]) not in cands:
                continue
            pi = int(twin[0])
            worst = max(self.expected_normal(i, start, end) for i in (ci, pi))
            if volume >= TARGET_VOLUME_RATIO * worst:
                return int(ci), pi
        return None

    def _matched_sizes(self, calls: np.ndarray, cap: int) -> np.ndarray:
        """Put sizes within a few lots of each call print, same total on both legs."""
        top = min(FLOW_SIZES[1], cap)
        puts = np.clip(calls + self.rng.integers(-3, 4, len(calls)), 1, top)
        for i in range(len(puts) - 1, -1, -1):
            diff = int(calls.sum() - puts.sum())
            if diff == 0:
                break
            puts[i] = np.clip(puts[i] + diff, 1, top)
        return puts if puts.sum() == calls.sum() else calls.copy()

    def churn(self) -> bool:
        for _ in range(30):
            start, minutes = self.window(CHURN_MINUTES)
            total = int(self.flow_sizes().sum())  # as much as a flow would trade
            m = 2 * int(self.rng.integers(15, 31))
            buy_total = int(round(total * self.rng.uniform(0.46, 0.54)))
            parts = np.concatenate(
                [self._split(buy_total, m // 2), self._split(total - buy_total, m // 2)]
            )
            picked = self.pick(start, minutes, parts)
            if picked is None:
                continue
            inst, parts = picked
            buys, sells = parts[: m // 2], parts[m // 2 :]
            if not 0.45 <= buys.sum() / parts.sum() <= 0.55:
                continue
            first_buy = bool(self.rng.random() < 0.5)
            aggr = np.tile([1, -1] if first_buy else [-1, 1], m // 2)
            qty = np.empty(m, dtype=np.int64)
            qty[aggr > 0], qty[aggr < 0] = buys, sells
            times = _times(self.rng, start, m, minutes)
            event = PlantedEvent(
                "decoy_churn",
                [inst],
                "C" if self.chain.is_call[inst] else "P",
                "BOTH",
                "NEUTRAL",
                self.expected_normal(inst, int(times[0]), int(times[-1])),
            )
            self.add(event, [self.trades(inst, times, aggr, qty)])
            return True
        return False

    def _split(self, total: int, parts: int) -> np.ndarray:
        return 1 + self.rng.multinomial(total - parts, np.full(parts, 1.0 / parts))


def plan_planted(
    rng: np.random.Generator,
    chain: DayChain,
    path: DayPath,
    rates: np.ndarray,
    shape: BookShape,
    day_start_ns: int,
    open_rel: int,
    close_rel: int,
) -> tuple[list[PlantedEvent], TradePlan | None]:
    """Choose the day's flows and decoys; returns their events and trades (tag = event index)."""
    planner = _Planner(rng, chain, path, rates, shape, day_start_ns, open_rel, close_rel)
    n_flows = int(rng.integers(FLOWS_PER_DAY[0], FLOWS_PER_DAY[1] + 1))
    directions = ["BUY", "SELL"] + [str(rng.choice(["BUY", "SELL"]))] * (n_flows - 2)
    types = ["C", "P"] + [str(rng.choice(["C", "P"]))] * (n_flows - 2)
    rng.shuffle(directions)
    rng.shuffle(types)
    for direction, option_type in zip(directions, types, strict=True):
        planner.institutional(option_type, direction)
    for _ in range(STRADDLE_DECOYS_PER_DAY):
        planner.straddle()
    for _ in range(CHURN_DECOYS_PER_DAY):
        planner.churn()
    if not planner.plans:
        return [], None
    return planner.events, TradePlan.concat(planner.plans)


def _iso(ns: int) -> str:
    """ISO-8601 UTC; planted times are whole microseconds, so this is exact."""
    if ns % _US:
        raise AssertionError(f"planted time {ns} is not on a whole microsecond")
    whole = dt.datetime.fromtimestamp(ns // 1_000_000_000, tz=dt.UTC)
    return whole.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 1_000_000_000 // _US:06d}Z"


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
    sweeps several price levels prints once per level).
    """
    plan = executed.plan
    rows = []
    for tag, ev in enumerate(events):
        mine = plan.tag == tag
        legs = []
        for inst in ev.legs:
            sel = mine & (plan.inst == inst)
            buy, sell = sel & (plan.aggressor > 0), sel & (plan.aggressor < 0)
            legs.append(
                {
                    "raw_symbol": chain.instruments[inst].raw_symbol,
                    "instrument_id": int(chain.ids[inst]),
                    "buy_contracts": int(executed.size[buy].sum()),
                    "sell_contracts": int(executed.size[sell].sum()),
                    "buy_trades": int(buy.sum()),
                    "sell_trades": int(sell.sum()),
                    "buy_prints": int(executed.prints[buy].sum()),
                    "sell_prints": int(executed.prints[sell].sum()),
                }
            )
        sides = ("buy", "sell") if ev.direction == "BOTH" else (ev.direction.lower(),)
        contracts = sum(leg[f"{s}_contracts"] for leg in legs for s in sides)
        trades = sum(leg[f"{s}_trades"] for leg in legs for s in sides)
        prints = sum(leg[f"{s}_prints"] for leg in legs for s in sides)
        if ev.kind == "institutional" and contracts < MIN_VOLUME_RATIO * ev.expected_normal:
            raise AssertionError(f"simulator bug: planted flow below {MIN_VOLUME_RATIO}x normal")
        t0 = int(plan.t[mine].min()) + day_start_ns
        t1 = int(plan.t[mine].max()) + day_start_ns
        first = chain.instruments[ev.legs[0]]
        exp_date = dt.datetime.fromtimestamp(first.expiration_ns // 1_000_000_000, tz=dt.UTC).date()
        rows.append(
            {
                "kind": ev.kind,
                "date": day.isoformat(),
                "root": first.root,
                "raw_symbols": [leg["raw_symbol"] for leg in legs],
                "instrument_ids": [leg["instrument_id"] for leg in legs],
                "expiration": exp_date.isoformat(),
                "strike": float(first.strike),
                "option_type": ev.option_type,
                "direction": ev.direction,
                "view": ev.view,
                "start": _iso(t0),
                "end": _iso(t1),
                "start_ns": t0,
                "end_ns": t1,
                "contracts": contracts,
                "trades": trades,
                "prints": prints,
                "expected_normal_contracts": round(ev.expected_normal, 2),
                "legs": legs,
            }
        )
    return rows
