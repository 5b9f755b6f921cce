"""Trade signing: who was the aggressor of each MBO ``T`` record.

The ``T`` record's ``side`` when present; for side 'N' (opening auction, implied and spread-leg
prints) Lee–Ready: the quote rule against the two-sided, uncrossed BBO just before the trade
(``BookSet.apply(pre_trade=True)``), else the tick test, else unknown 'U' (docs/algorithms.md §3).
Vectorised with numpy; ``TradeSigner`` keeps each instrument's last price and nonzero tick between
calls, so chunked and one-shot (``classify``) signing agree.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ifd_core.units import UNDEF_PRICE

BUY, SELL, UNKNOWN = b"B", b"A", b"U"
METHOD_NAMES = np.array(["aggressor", "quote", "tick", "unknown"])
M_AGGRESSOR, M_QUOTE, M_TICK, M_UNKNOWN = 0, 1, 2, 3


class Signed(NamedTuple):
    """``aggressor``: S1 array of b'B'/b'A'/b'U'; ``method``: int8 codes into METHOD_NAMES."""

    aggressor: np.ndarray
    method: np.ndarray

    @property
    def method_names(self) -> np.ndarray:
        return METHOD_NAMES[self.method]


class TradeSigner:
    """Stateful signer: remembers each instrument's last trade price and nonzero tick."""

    def __init__(self) -> None:
        self._last_px: dict[int, int] = {}
        self._last_tick: dict[int, int] = {}

    def classify(self, trades: np.ndarray, pre_bbo: np.ndarray | None = None) -> Signed:
        """Sign ``trades`` (fields instrument_id, price, side — MBO T records or the
        ``PRE_TRADE_DTYPE`` rows) using ``pre_bbo`` (fields bid_px, ask_px, aligned with
        ``trades``; defaults to ``trades`` itself, which carries them when it is pre-trade rows).
        """
        n = len(trades)
        if pre_bbo is None:
            pre_bbo = trades
        if len(pre_bbo) != n:
            raise ValueError(
                f"pre_bbo has {len(pre_bbo)} rows for {n} trades; pass the BBOs aligned with "
                "the trades, e.g. the rows of BookSet.apply(..., pre_trade=True)"
            )
        side = np.asarray(trades["side"]).astype("S1")
        price = np.asarray(trades["price"], dtype=np.int64)
        iid = np.asarray(trades["instrument_id"], dtype=np.int64)

        tick = self._ticks(iid, price)

        out = np.full(n, UNKNOWN, dtype="S1")
        method = np.full(n, M_UNKNOWN, dtype=np.int8)

        agg = (side == BUY) | (side == SELL)
        out[agg] = side[agg]
        method[agg] = M_AGGRESSOR

        bid = np.asarray(pre_bbo["bid_px"], dtype=np.int64)
        ask = np.asarray(pre_bbo["ask_px"], dtype=np.int64)
        quoted = (bid != UNDEF_PRICE) & (ask != UNDEF_PRICE) & (bid <= ask)
        # Compare 2·price with bid + ask: exact in integers (prices < 2^62 / 2 in practice).
        two_px = 2 * price
        mid2 = np.where(quoted, bid, 0) + np.where(quoted, ask, 0)
        rest = ~agg
        q_buy = rest & quoted & (two_px > mid2)
        q_sell = rest & quoted & (two_px < mid2)
        out[q_buy], out[q_sell] = BUY, SELL
        method[q_buy | q_sell] = M_QUOTE

        rest &= ~(q_buy | q_sell)
        t_buy = rest & (tick > 0)
        t_sell = rest & (tick < 0)
        out[t_buy], out[t_sell] = BUY, SELL
        method[t_buy | t_sell] = M_TICK
        return Signed(out, method)

    def _ticks(self, iid: np.ndarray, price: np.ndarray) -> np.ndarray:
        """Per trade, the direction (+1/-1/0) of the last nonzero price change of its
        instrument up to and including this trade; updates the carried state."""
        n = len(price)
        tick = np.zeros(n, dtype=np.int8)
        if n == 0:
            return tick
        order = np.argsort(iid, kind="stable")
        g_iid, g_px = iid[order], price[order]
        start = np.ones(n, dtype=bool)
        start[1:] = g_iid[1:] != g_iid[:-1]
        sign = np.zeros(n, dtype=np.int8)
        sign[1:] = np.sign(g_px[1:] - g_px[:-1]).astype(np.int8)
        # Group starts: compare with the carried last price; a zero tick inherits the carried tick.
        for pos in np.flatnonzero(start).tolist():
            key = int(g_iid[pos])
            prev = self._last_px.get(key)
            s = 0 if prev is None else int(np.sign(int(g_px[pos]) - prev))
            sign[pos] = s if s != 0 else self._last_tick.get(key, 0)
        # Forward-fill zero ticks with the previous nonzero tick, never across instruments.
        keep = (sign != 0) | start
        idx = np.where(keep, np.arange(n), 0)
        np.maximum.accumulate(idx, out=idx)
        filled = sign[idx]
        ends = np.append(np.flatnonzero(start)[1:] - 1, n - 1)
        for pos in ends.tolist():
            key = int(g_iid[pos])
            self._last_px[key] = int(g_px[pos])
            self._last_tick[key] = int(filled[pos])
        tick[order] = filled
        return tick


def classify(trades: np.ndarray, pre_bbo: np.ndarray | None = None) -> Signed:
    """One-shot signing of a complete set of trades (no state from earlier trades)."""
    return TradeSigner().classify(trades, pre_bbo)
