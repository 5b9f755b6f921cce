"""The underlying future's trades from Interactive Brokers' market data (ib_async).

The labeller needs the NQ future's trades after each signal; they normally come from Databento.
When Databento is unavailable, IB's streaming market data (``reqMktData``) reports the future's
last trades (tick type 4 LAST: price and size), and these continue the labeller's tape. Bid and
ask ticks are not kept: a barrier is judged on prices someone dealt at, as with Databento.

IB sends no exchange timestamp with a tick: ``ts_event`` is the time ib_async received it. The
recorder is read-only (``readonly=True``) and uses its own client id (``ib.quotes_client_id``)
so it can run beside the trader.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ifd_core.broker.ib_connection import IBConnection
from ifd_core.settings import IBSettings
from ifd_core.units import NS

LAST_TICKS = (4, 68)  # LAST, DELAYED_LAST


class QuotesUnavailable(RuntimeError):
    """IB cannot be reached, or does not know the future asked for."""


@dataclass(frozen=True)
class FutureContract:
    """One underlying future, from our ``instruments`` table."""

    instrument_id: int
    raw_symbol: str  # e.g. NQM6
    expiration: dt.date  # its last trade date
    symbol: str = "NQ"
    multiplier: int = 20


class UnderlyingRecorder(IBConnection):
    unreachable = QuotesUnavailable

    def __init__(self, settings: IBSettings, ib=None) -> None:
        super().__init__(settings, ib)
        self._iid: dict[int, int] = {}  # IB conId -> our instrument_id
        self._rows: list[dict] = []

    def connect(self) -> None:
        self._open(self.s.quotes_client_id, readonly=True)

    def _hook(self, ib) -> None:
        ib.pendingTickersEvent += self._on_tickers

    def subscribe(self, fut: FutureContract) -> None:
        """Stream the future's market data; QuotesUnavailable when IB has no such contract."""
        from ib_async import Future

        want = Future(
            symbol=fut.symbol,
            lastTradeDateOrContractMonth=fut.expiration.strftime("%Y%m%d"),
            exchange="CME",
            currency="USD",
            multiplier=str(fut.multiplier),
        )
        details = self.ib.reqContractDetails(want)
        if len(details) != 1:
            what = "no contract" if not details else f"{len(details)} contracts"
            raise QuotesUnavailable(
                f"IB has {what} for {fut.raw_symbol} (FUT CME, last trade {fut.expiration})"
            )
        contract = details[0].contract
        self._iid[contract.conId] = fut.instrument_id
        self.ib.reqMktData(contract, "", False, False)

    def take(self) -> list[dict]:
        """The trades received since the last call."""
        out, self._rows = self._rows, []
        return out

    def _on_tickers(self, tickers) -> None:
        for t in tickers:
            iid = self._iid.get(t.contract.conId) if t.contract is not None else None
            if iid is None:
                continue
            for tick in t.ticks:
                if tick.tickType in LAST_TICKS and tick.price > 0:
                    self._rows.append(
                        {
                            "ts_event": int(tick.time.timestamp() * NS),
                            "instrument_id": iid,
                            "price": float(tick.price),
                            "size": float(tick.size or 0.0),
                            "source": "ib",
                        }
                    )
