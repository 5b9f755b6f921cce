"""The statistics file of a day: open interest for the prior session, settlements at the close."""

from __future__ import annotations

import databento_dbn as dbn
import numpy as np

from ifd_core.simulator.chain import DayChain
from ifd_core.simulator.contracts import FUTURE_ROOT
from ifd_core.simulator.path import DayPath
from ifd_core.simulator.pricing import (
    FUTURE_TICK_FIXED,
    YEAR_NS,
    black76,
    future_ticks,
    round_premium_fixed,
)
from ifd_core.simulator.trades import Executed

OI_FROM_NET_VOLUME = 0.3  # share of the prior session's net one-sided volume that becomes OI
# First OI of a listing, relative to a seasoned strike: quarterly options were listed long before
# they become the front series (full OI); a new weekly or a new strike starts lower.
NEW_WEEKLY_OI_SHARE = 0.4
# A new weekly's OI is lumpy across strikes (mean kept): some strikes near the money start with
# little open interest, the kind IFD v1 (volume / OI) is built to notice.
NEW_WEEKLY_OI_DISPERSION = 1.2
_OI_WINGS = 150.0
_OI_ATM = 2_800.0
_OI_WIDTH = 0.035


def seasoned_oi(chain: DayChain, path: DayPath) -> np.ndarray:
    """OI of a seasoned strike: hundreds in the wings, a few thousand at the money."""
    fwd = np.array(
        [path.open_price(chain.instruments[u].raw_symbol) for u in chain.underlying_index]
    )
    money = np.log(np.where(chain.is_future, fwd, chain.strike) / fwd)
    quarterly = np.array([i.root == "NQ" for i in chain.instruments])
    return (_OI_WINGS + _OI_ATM * np.exp(-((money / _OI_WIDTH) ** 2))) * np.where(
        quarterly, 1.5, 1.0
    )


class OpenInterestLedger:
    """Open interest carried across sessions.

    OI(d) = max(0, OI(d-1) + round(0.3 * |buy - sell volume on d-1| + noise)): net one-sided
    volume is what can open positions, balanced volume mostly changes hands.
    """

    def __init__(self) -> None:
        self._oi: dict[int, int] = {}
        self._prev_listed: set[int] = set()
        self._prev_net: dict[int, int] = {}
        self._prev_total: dict[int, int] = {}

    def publish(
        self,
        rng: np.random.Generator,
        chain: DayChain,
        path: DayPath,
        first_day: bool,
        ts: int,
        ts_ref: int,
    ) -> list[dbn.StatMsg]:
        """OI records for options listed in the previous session and still listed today.

        On the first simulated day every listed option is taken as pre-existing (seasoned OI).
        Options that expired at today's open are not published: they have no definition today.
        """
        seasoned = seasoned_oi(chain, path)
        out = []
        for n, inst in enumerate(chain.instruments):
            if inst.is_future:
                continue
            iid = inst.instrument_id
            if first_day:
                oi = int(round(seasoned[n] * rng.uniform(0.7, 1.3)))
            elif iid in self._prev_listed:
                base = self._oi.get(iid)
                if base is None:  # first OI of a listing: see NEW_WEEKLY_OI_SHARE
                    if inst.root == FUTURE_ROOT:
                        base = int(round(seasoned[n] * rng.uniform(0.7, 1.3)))
                    else:
                        sigma = NEW_WEEKLY_OI_DISPERSION
                        lumpy = rng.lognormal(-(sigma**2) / 2, sigma)
                        base = int(round(seasoned[n] * NEW_WEEKLY_OI_SHARE * lumpy))
                total = self._prev_total.get(iid, 0)
                change = OI_FROM_NET_VOLUME * self._prev_net.get(iid, 0)
                change += rng.normal(0.0, 1.0 + 0.1 * total)
                oi = max(0, base + int(round(change)))
            else:
                continue
            self._oi[iid] = oi
            out.append(
                dbn.StatMsg(
                    publisher_id=1,
                    instrument_id=iid,
                    ts_event=ts,
                    ts_recv=ts,
                    ts_ref=ts_ref,
                    price=dbn.UNDEF_PRICE,
                    quantity=oi,
                    stat_type=dbn.StatType.OPEN_INTEREST,
                    channel_id=inst.channel_id,
                    update_action=dbn.StatUpdateAction.NEW,
                )
            )
        return out

    def close_session(self, chain: DayChain, executed: Executed) -> None:
        """Remember what traded today; tomorrow's OI is derived from it."""
        plan = executed.plan
        buy = np.bincount(
            plan.inst, weights=executed.size * (plan.aggressor > 0), minlength=chain.n
        )
        sell = np.bincount(
            plan.inst, weights=executed.size * (plan.aggressor < 0), minlength=chain.n
        )
        self._prev_listed = {i.instrument_id for i in chain.instruments if not i.is_future}
        self._prev_net = {int(chain.ids[n]): int(abs(buy[n] - sell[n])) for n in range(chain.n)}
        self._prev_total = {int(chain.ids[n]): int(buy[n] + sell[n]) for n in range(chain.n)}


def settlement_records(
    chain: DayChain, path: DayPath, close_abs_ns: int, ts_ref: int
) -> list[dbn.StatMsg]:
    """Final settlements at the close: futures at their last price, options at Black-76 value.

    Options that expire at the close settle at intrinsic value and may settle at 0.00; all others
    settle at least one tick (0.05).
    """
    fwd = np.array(
        [path.close_price(chain.instruments[u].raw_symbol) for u in chain.underlying_index]
    )
    tau = (chain.expiration_ns - close_abs_ns) / YEAR_NS
    strike = np.where(chain.is_future, fwd, chain.strike)  # futures: placeholder, not used
    fair = black76(fwd, strike, np.maximum(tau, 0.0), chain.is_call)
    expiring = chain.expiration_ns <= close_abs_ns
    opt_px = np.where(expiring, round_premium_fixed(fair, floor_fixed=0), round_premium_fixed(fair))
    fut_px = future_ticks(fwd) * FUTURE_TICK_FIXED
    price = np.where(chain.is_future, fut_px, opt_px)
    return [
        dbn.StatMsg(
            publisher_id=1,
            instrument_id=inst.instrument_id,
            ts_event=close_abs_ns,
            ts_recv=close_abs_ns,
            ts_ref=ts_ref,
            price=int(price[n]),
            quantity=dbn.UNDEF_STAT_QUANTITY,
            stat_type=dbn.StatType.SETTLEMENT_PRICE,
            channel_id=inst.channel_id,
            update_action=dbn.StatUpdateAction.NEW,
            stat_flags=1,
        )
        for n, inst in enumerate(chain.instruments)
    ]
