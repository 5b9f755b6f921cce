"""Which NQ futures and option expirations exist on a given trade date.

This is the simulator's listing calendar. It follows CME conventions closely enough that code
built on it (chain discovery, roll handling, expiry settlement) meets the same situations it will
meet in real data: two futures during roll week, weekly options on a different root than the
quarterly, a weekly whose underlying is the *next* quarterly, expirations on holidays.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ifd_core.calendar import et_to_ns, is_trading_day

MONTH_CODES = "FGHJKMNQUVXZ"
QUARTERLY_MONTHS = (3, 6, 9, 12)
FUTURE_ROOT = "NQ"
WEEKLY_ROOT_PREFIX = "QN"
ROLL_DAYS_BEFORE_EXPIRY = 8  # calendar days; the front contract changes this long before expiry
WEEKLIES_LISTED = 2  # the next two Friday weeklies are listed on every day


@dataclass(frozen=True, order=True)
class FutureContract:
    """One NQ quarterly future (e.g. NQM6)."""

    expiry_date: dt.date
    raw_symbol: str

    @property
    def expiration_ns(self) -> int:
        return et_to_ns(self.expiry_date, 9, 30)


@dataclass(frozen=True, order=True)
class OptionExpiry:
    """One option expiration series: a root, an expiry instant and the future it settles into."""

    expiration_ns: int
    root: str
    symbol_prefix: str  # "NQM6" for quarterlies, "QN2H6" for weeklies
    underlying: FutureContract

    @property
    def key(self) -> str:
        return self.symbol_prefix


def third_friday(year: int, month: int) -> dt.date:
    first = dt.date(year, month, 1)
    offset = (4 - first.weekday()) % 7  # Friday is weekday 4
    return first + dt.timedelta(days=offset + 14)


def month_code(month: int, year: int) -> str:
    return f"{MONTH_CODES[month - 1]}{year % 10}"


def quarterly_future(year: int, month: int) -> FutureContract:
    return FutureContract(third_friday(year, month), f"{FUTURE_ROOT}{month_code(month, year)}")


def _quarterlies_from(day: dt.date) -> list[FutureContract]:
    """The next few quarterly futures whose expiry date is on or after ``day``."""
    out: list[FutureContract] = []
    year = day.year
    while len(out) < 3:
        for month in QUARTERLY_MONTHS:
            fut = quarterly_future(year, month)
            if fut.expiry_date >= day:
                out.append(fut)
        year += 1
    return out[:3]


def front_future(day: dt.date) -> FutureContract:
    """The front quarterly on ``day``: it rolls ROLL_DAYS_BEFORE_EXPIRY calendar days early."""
    for fut in _quarterlies_from(day):
        if day < fut.expiry_date - dt.timedelta(days=ROLL_DAYS_BEFORE_EXPIRY):
            return fut
    raise AssertionError("unreachable: three quarterlies always include an unrolled one")


def settlement_future(expiry_date: dt.date) -> FutureContract:
    """The future an option expiring on ``expiry_date`` settles into: the next quarterly."""
    return _quarterlies_from(expiry_date)[0]


def is_quarterly_expiry(day: dt.date) -> bool:
    return day.month in QUARTERLY_MONTHS and day == third_friday(day.year, day.month)


def _weekly_expiry_day(friday: dt.date) -> dt.date:
    """A weekly expires on its Friday, or on the last trading day before it if that is a holiday."""
    day = friday
    while not is_trading_day(day):
        day -= dt.timedelta(days=1)
    return day


def weekly_expiry(friday: dt.date) -> OptionExpiry:
    week_of_month = (friday.day - 1) // 7 + 1
    root = f"{WEEKLY_ROOT_PREFIX}{week_of_month}"
    expiry_day = _weekly_expiry_day(friday)
    return OptionExpiry(
        expiration_ns=et_to_ns(expiry_day, 16, 0),
        root=root,
        symbol_prefix=f"{root}{month_code(friday.month, friday.year)}",
        underlying=settlement_future(friday),
    )


def quarterly_expiry(fut: FutureContract) -> OptionExpiry:
    return OptionExpiry(
        expiration_ns=fut.expiration_ns,
        root=FUTURE_ROOT,
        symbol_prefix=fut.raw_symbol,
        underlying=fut,
    )


def new_expiries(day: dt.date) -> list[OptionExpiry]:
    """Expirations the listing rule asks for on ``day`` (earlier listings are kept by the caller).

    The front quarterly's options plus the next WEEKLIES_LISTED Friday weeklies, skipping Fridays
    that are quarterly expiry dates (those belong to the quarterly options).
    """
    session_open = et_to_ns(day, 9, 30)
    out = [quarterly_expiry(front_future(day))]
    friday = day + dt.timedelta(days=(4 - day.weekday()) % 7)
    while len(out) < 1 + WEEKLIES_LISTED:
        if not is_quarterly_expiry(friday):
            weekly = weekly_expiry(friday)
            if weekly.expiration_ns > session_open:
                out.append(weekly)
        friday += dt.timedelta(days=7)
    return out
