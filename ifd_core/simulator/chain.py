"""The simulated NQ option chain: listing state across days, stable instrument ids, definitions.

Instrument ids must stay the same from one day's files to the next (downstream joins and
baselines key on them), so they are derived from what the instrument *is* (root, expiry, strike,
right) through a stable hash rather than from a counter that would depend on the listing order.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

import databento_dbn as dbn
import numpy as np

from ifd_core.calendar import et_to_ns
from ifd_core.simulator.contracts import (
    FUTURE_ROOT,
    FutureContract,
    OptionExpiry,
    front_future,
    new_expiries,
)
from ifd_core.simulator.pricing import FUTURE_TICK_FIXED, PRICE_SCALE
from ifd_core.units import MULTIPLIER

STRIKE_STEP = 50
STRIKES_EACH_SIDE = 20  # ATM - 20 .. ATM + 20 strikes: 41 per expiry on first listing
OPTION_CHANNELS = 4  # options are spread over channel_id 1..OPTION_CHANNELS
FUTURE_CHANNEL = 0
CONTRACT_MULTIPLIER = int(MULTIPLIER)  # DBN definitions carry it as an integer
OPTION_TICK_FIXED = 50_000_000  # min_price_increment of NQ options (0.05; 0.25 above 5.00)
_ID_SPACE = 2**31 - 1


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


@dataclass(frozen=True)
class Instrument:
    """One listed contract as the definition file describes it."""

    instrument_id: int
    raw_symbol: str
    instrument_class: str  # "F", "C" or "P"
    root: str
    expiration_ns: int
    strike: int  # index points; 0 for futures
    underlying: str  # future raw symbol; "" for futures
    underlying_id: int
    channel_id: int
    first_session: dt.date

    @property
    def is_future(self) -> bool:
        return self.instrument_class == "F"


@dataclass
class DayChain:
    """All instruments listed on one trade date, futures first, in a fixed order.

    The position of an instrument in ``instruments`` ("instrument index") is what the vectorised
    book code uses; the arrays below are views of the same facts by index.
    """

    day: dt.date
    instruments: list[Instrument]
    futures: list[FutureContract]
    expiries: list[OptionExpiry]
    ids: np.ndarray = field(init=False)
    is_future: np.ndarray = field(init=False)
    is_call: np.ndarray = field(init=False)
    strike: np.ndarray = field(init=False)
    expiration_ns: np.ndarray = field(init=False)
    underlying_index: np.ndarray = field(init=False)
    expiry_rank: np.ndarray = field(init=False)
    channel: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        insts = self.instruments
        self.ids = np.array([i.instrument_id for i in insts], dtype=np.uint32)
        self.is_future = np.array([i.is_future for i in insts], dtype=bool)
        self.is_call = np.array([i.instrument_class == "C" for i in insts], dtype=bool)
        self.strike = np.array([float(i.strike) for i in insts], dtype=np.float64)
        self.expiration_ns = np.array([i.expiration_ns for i in insts], dtype=np.int64)
        pos = {i.raw_symbol: n for n, i in enumerate(insts) if i.is_future}
        self.underlying_index = np.array(
            [n if i.is_future else pos[i.underlying] for n, i in enumerate(insts)], dtype=np.int64
        )
        order = sorted({i.expiration_ns for i in insts if not i.is_future})
        rank = {e: r for r, e in enumerate(order)}
        self.expiry_rank = np.array(
            [-1 if i.is_future else rank[i.expiration_ns] for i in insts], dtype=np.int64
        )
        self.channel = np.array([i.channel_id for i in insts], dtype=np.uint8)

    @property
    def n(self) -> int:
        return len(self.instruments)


class ChainBook:
    """Listing state carried from day to day: ids handed out, expiries and strikes listed."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._taken: set[int] = set()
        self._expiries: dict[str, OptionExpiry] = {}
        self._strikes: dict[str, dict[int, dt.date]] = {}
        self._future_first: dict[str, dt.date] = {}

    def instrument_id(self, key: str) -> int:
        """Stable id for ``key``; a (rare) collision is resolved by deterministic re-hashing."""
        if key in self._ids:
            return self._ids[key]
        salt = 0
        while True:
            candidate = _stable_hash(key if salt == 0 else f"{key}#{salt}") % _ID_SPACE + 1
            if candidate not in self._taken:
                break
            salt += 1
        self._ids[key] = candidate
        self._taken.add(candidate)
        return candidate

    def futures_for(self, day: dt.date) -> list[FutureContract]:
        """Futures that trade on ``day``: the front and every underlying of a live expiry."""
        session_open = et_to_ns(day, 9, 30)
        wanted = {front_future(day)}
        live = [e for e in self._expiries.values() if e.expiration_ns > session_open]
        wanted.update(e.underlying for e in live)
        wanted.update(e.underlying for e in new_expiries(day))
        return sorted(wanted)

    def list_day(self, day: dt.date, future_open: dict[str, float]) -> DayChain:
        """Advance the listing to ``day`` and return its chain.

        ``future_open`` maps each future of :meth:`futures_for` to its opening price, around which
        new strikes are listed. Strikes once listed stay until expiry; expired series drop out.
        """
        session_open = et_to_ns(day, 9, 30)
        for exp in new_expiries(day):
            self._expiries.setdefault(exp.key, exp)
        self._expiries = {k: e for k, e in self._expiries.items() if e.expiration_ns > session_open}
        futures = self.futures_for(day)
        instruments = [self._future_instrument(f, day) for f in futures]
        expiries = sorted(self._expiries.values())
        for exp in expiries:
            strikes = self._strikes.setdefault(exp.key, {})
            atm = int(round(future_open[exp.underlying.raw_symbol] / STRIKE_STEP)) * STRIKE_STEP
            for n in range(-STRIKES_EACH_SIDE, STRIKES_EACH_SIDE + 1):
                strikes.setdefault(atm + n * STRIKE_STEP, day)
            for strike in sorted(strikes):
                for right in ("C", "P"):
                    instruments.append(self._option_instrument(exp, strike, right, strikes[strike]))
        self._strikes = {k: v for k, v in self._strikes.items() if k in self._expiries}
        return DayChain(day=day, instruments=instruments, futures=futures, expiries=expiries)

    def _future_instrument(self, fut: FutureContract, day: dt.date) -> Instrument:
        first = self._future_first.setdefault(fut.raw_symbol, day)
        return Instrument(
            instrument_id=self.instrument_id(f"FUT|{fut.raw_symbol}"),
            raw_symbol=fut.raw_symbol,
            instrument_class="F",
            root=FUTURE_ROOT,
            expiration_ns=fut.expiration_ns,
            strike=0,
            underlying="",
            underlying_id=0,
            channel_id=FUTURE_CHANNEL,
            first_session=first,
        )

    def _option_instrument(
        self, exp: OptionExpiry, strike: int, right: str, first: dt.date
    ) -> Instrument:
        expiry_date = dt.datetime.fromtimestamp(exp.expiration_ns / 1e9, tz=dt.UTC).date()
        key = f"OPT|{exp.root}|{expiry_date.isoformat()}|{strike}|{right}"
        channel = 1 + _stable_hash(f"CH|{exp.key}") % OPTION_CHANNELS
        return Instrument(
            instrument_id=self.instrument_id(key),
            raw_symbol=f"{exp.symbol_prefix} {right}{strike}",
            instrument_class=right,
            root=exp.root,
            expiration_ns=exp.expiration_ns,
            strike=strike,
            underlying=exp.underlying.raw_symbol,
            underlying_id=self.instrument_id(f"FUT|{exp.underlying.raw_symbol}"),
            channel_id=channel,
            first_session=first,
        )


def definition_records(chain: DayChain, ts: int) -> list[dbn.InstrumentDefMsg]:
    """One InstrumentDefMsg per listed instrument, all stamped ``ts`` (the day's 00:00 UTC)."""
    out = []
    for inst in chain.instruments:
        common = dict(
            publisher_id=1,
            instrument_id=inst.instrument_id,
            ts_event=ts,
            ts_recv=ts,
            display_factor=dbn.FIXED_PRICE_SCALE,
            raw_symbol=inst.raw_symbol,
            asset=inst.root,
            security_update_action=dbn.SecurityUpdateAction.ADD,
            expiration=inst.expiration_ns,
            exchange="XCME",
            currency="USD",
            contract_multiplier=CONTRACT_MULTIPLIER,
            channel_id=inst.channel_id,
            group=FUTURE_ROOT,
            user_defined_instrument=dbn.UserDefinedInstrument.NO,
            min_lot_size_round_lot=1,
            unit_of_measure="IPNT",
            unit_of_measure_qty=CONTRACT_MULTIPLIER * PRICE_SCALE,
        )
        if inst.is_future:
            rec = dbn.InstrumentDefMsg(
                **common,
                min_price_increment=FUTURE_TICK_FIXED,
                security_type="FUT",
                instrument_class=dbn.InstrumentClass.FUTURE,
                cfi="FFICSX",
            )
        else:
            rec = dbn.InstrumentDefMsg(
                **common,
                min_price_increment=OPTION_TICK_FIXED,
                security_type="OOF",
                instrument_class=(
                    dbn.InstrumentClass.CALL
                    if inst.instrument_class == "C"
                    else dbn.InstrumentClass.PUT
                ),
                strike_price=inst.strike * PRICE_SCALE,
                strike_price_currency="USD",
                underlying=inst.underlying,
                underlying_id=inst.underlying_id,
                cfi="OCAFPS" if inst.instrument_class == "C" else "OPAFPS",
            )
        out.append(rec)
    return out
