"""The paper executor: signals become orders that fill against the order book, in event time.

One executor per algorithm and account. ``run_day`` replays the day's MBO records of the options
it trades and their underlying futures through its own compiled book, in ts_recv order, and acts
at exact instants: entry (market or limit with a queue), sizing by ``risk.size_entry``, stops,
targets, time stop, expiry, session-end flatten, fees, one decision per episode. The rules and
hand cases: docs/algorithms.md §11.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from ifd_core.analysis.order_book_fast import FastBookSet
from ifd_core.marketdata.record_source import RecordBatch
from ifd_core.trading.risk import RiskLimits, RiskState, size_entry
from ifd_core.units import MULTIPLIER, NS, offset_ticks, round_to_tick, to_points

_T = ord("T")
_SIDE_SIGN = {"B": 1, "S": -1}
SAME_EPISODE = "same_episode"  # the reason of a skipped entry (analysis/episodes.py)


@dataclass
class EpisodeClaims:
    """The episodes an executor (paper or live desk) has acted on: the first signal of an
    episode claims it, whatever comes of its order (filled, refused by risk or for lack of
    liquidity); later ones are skipped, one flow being one decision, unless ``stack``. A signal
    without an ``episode_id`` is its own decision."""

    stack: bool = False
    acted: set[str] = field(default_factory=set)

    def later(self, episode_id: str | None) -> bool:
        """True for a later signal of an episode already claimed; claims it otherwise."""
        if episode_id is None or self.stack:
            return False
        if episode_id in self.acted:
            return True
        self.acted.add(episode_id)
        return False


@dataclass(frozen=True)
class ExecConfig:
    fee_per_contract: float = 2.0  # commission + exchange fee, per contract per side
    latency_ms: float = 50.0
    order_type: str = "market"  # market | limit
    limit_offset_ticks: int = 0  # limit entries: ticks inside the touch (0 joins it)
    limit_ttl_s: float = 300.0
    stop_fraction: float = 0.12  # of the entry premium
    target_fraction: float = 0.24
    time_stop_s: float = 1800.0  # default: the label horizon
    min_confidence: float = 0.0
    stack_episodes: bool = False  # True: every signal of an episode may open a position

    def __post_init__(self) -> None:
        if self.order_type not in ("market", "limit"):
            raise ValueError(f"order_type must be market or limit, not {self.order_type!r}")


@dataclass
class _Order:
    order_id: str
    signal: dict
    side: str  # B | S
    qty: int
    kind: str  # market | limit
    purpose: str  # entry | stop | target | time_stop | session_end | expiration
    created_ts: int
    limit_px: int | None = None
    queue_ahead: int = 0
    expires_ts: int | None = None
    filled: int = 0
    notional: int = 0  # sum of price x qty of fills (fixed point)
    status: str = "working"
    reason: str = ""


@dataclass
class _Position:
    position_id: str
    signal: dict
    side: str  # B (long) | S (short)
    qty: int = 0
    entry_notional: int = 0
    entry_ts: int = 0
    stop_px: int = 0
    target_px: int = 0
    exit_qty: int = 0
    exit_notional: int = 0
    exit_ts: int | None = None
    exit_reason: str = ""
    fees: float = 0.0
    closing: bool = False

    @property
    def entry_px(self) -> float:
        return self.entry_notional / self.qty if self.qty else 0.0


@dataclass
class DayLedger:
    orders: list[dict] = field(default_factory=list)
    fills: list[dict] = field(default_factory=list)
    positions: list[dict] = field(default_factory=list)


class PaperExecutor:
    """One algorithm's paper account: its signals become orders filled against the replayed
    order book, in event time, so backtests and live paper trading share one set of fills, risk
    rules and ledger rows (docs/algorithms.md §11)."""

    def __init__(
        self,
        algo: str,
        config: ExecConfig,
        limits: RiskLimits,
        *,
        capital: float,
        halted: Callable[[], str | None] = lambda: None,
        run_id: str = "",
        mode: str = "backtest",
    ) -> None:
        self.algo = algo
        self.cfg = config
        self.limits = limits
        self.equity = capital
        self.peak_equity = capital
        self.halted = halted
        self.run_id = run_id
        self.mode = mode
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ the day
    def run_day(
        self,
        batches: Sequence[RecordBatch],
        signals: pl.DataFrame,
        session_end_ns: int,
        stop_at: tuple[int, str] | None = None,
    ) -> DayLedger:
        """Trade ``signals`` (this executor's algorithm) over the day's record ``batches``.

        ``stop_at`` = (ts, reason): from that instant no entry is placed and working entry orders
        are cancelled (a rollout rollback); open positions stay under their own stops and targets.
        """
        self.ledger = DayLedger()
        self._stopped: str | None = None
        self.day_net = 0.0
        self.day_start_equity = self.equity
        self.books = FastBookSet()
        self.open: list[_Position] = []
        self.working: list[_Order] = []
        self.last_trade: dict[int, int] = {}
        self.day_trades = 0
        self._episodes = EpisodeClaims(self.cfg.stack_episodes)
        sigs = signals.filter(pl.col("confidence") >= self.cfg.min_confidence).sort(
            "decision_ts", "signal_id"
        )
        if sigs.height == 0:
            return self.ledger
        latency = int(self.cfg.latency_ms * 1e6)
        self._events: list[tuple[int, int, str, object]] = []
        self._seq = itertools.count()
        if stop_at is not None:  # pushed first: at an equal instant the stop comes before entries
            self._push(int(stop_at[0]), "stop", stop_at[1])
        for s in sigs.iter_rows(named=True):
            self._push(int(s["decision_ts"]) + latency, "entry", s)
            exp = s.get("expiration_ts")
            if exp and int(exp) < session_end_ns:
                self._push(int(exp), "expiration", int(s["instrument_id"]))
        wanted = set(sigs["instrument_id"].to_list()) | set(sigs["underlying_id"].to_list())
        ids = np.array(sorted(wanted), dtype=np.uint32)
        for batch in batches:
            if batch.schema != "mbo" or len(batch) == 0:
                continue
            recs = batch.records[np.isin(batch.records["instrument_id"], ids)]
            if len(recs):
                self._replay(recs)
        self._run_events_until(session_end_ns)
        for _, _, kind, payload in sorted(self._events, key=lambda e: (e[0], e[1])):
            if kind == "entry":  # decided too late to trade in this session: said, not dropped
                side = "B" if payload["direction"] == "BUY" else "S"
                late = _Order(
                    self._id("O"), payload, side, 0, self.cfg.order_type, "entry", session_end_ns
                )
                self._reject(late, "decision after the end of the session")
        for pos in list(self.open):
            self._exit(pos, "session_end", session_end_ns)
        for o in list(self.working):
            self._finish_order(o, "cancelled", "session end")
        return self.ledger

    def _push(self, ts: int, kind: str, payload: object) -> None:
        heapq.heappush(self._events, (ts, next(self._seq), kind, payload))

    # ------------------------------------------------------------------ replay
    def _replay(self, recs: np.ndarray) -> None:
        ts = recs["ts_recv"].astype(np.int64)
        i, n = 0, len(recs)
        while i < n:
            nxt = self._events[0][0] if self._events else None
            cut = n if nxt is None else int(np.searchsorted(ts, nxt, side="left"))
            if cut <= i:  # an event due before the next record: act on the book as it is
                self._run_event()
                continue
            k = self._first_trigger(recs, i, cut)
            end = cut if k is None else k + 1
            self._apply(recs[i:end])
            if k is not None:
                self._on_trigger(recs[k], int(ts[k]))
            i = end

    def _apply(self, recs: np.ndarray) -> None:
        self.books.apply(recs)
        trades = recs[recs["action"].view(np.uint8) == _T]
        if len(trades):  # the last trade of each instrument in the chunk, without a Python loop
            iids, first = np.unique(trades["instrument_id"][::-1], return_index=True)
            last = trades["price"][::-1][first]
            self.last_trade.update(zip(iids.tolist(), last.tolist(), strict=True))

    def _run_events_until(self, ts: int) -> None:
        while self._events and self._events[0][0] <= ts:
            self._run_event()

    def _run_event(self) -> None:
        ts, _, kind, payload = heapq.heappop(self._events)
        if kind == "entry":
            self._enter(payload, ts)
        elif kind == "stop":
            self._stopped = str(payload)
            for o in [o for o in self.working if o.purpose == "entry"]:
                self._finish_order(o, "partial" if o.filled else "cancelled", self._stopped)
                self._after_entry(o, ts)
        elif kind == "time_stop":
            pos = payload
            if pos in self.open and not pos.closing:
                self._exit(pos, "time_stop", ts)
        elif kind == "expiration":
            for pos in [p for p in self.open if p.signal["instrument_id"] == payload]:
                self._settle(pos, ts)
        elif kind == "limit_ttl":
            o = payload
            if o in self.working:
                self._finish_order(o, "partial" if o.filled else "cancelled", "limit expired")
                self._after_entry(o, ts)

    # ------------------------------------------------------------------ triggers (trades)
    def _first_trigger(self, recs: np.ndarray, i: int, cut: int) -> int | None:
        """Index of the first trade in [i, cut) that fills a working limit or hits a stop or
        target of an open position."""
        watch = [(p.signal["instrument_id"], p) for p in self.open if not p.closing]
        watch += [(o.signal["instrument_id"], o) for o in self.working if o.kind == "limit"]
        if not watch:
            return None
        seg = recs[i:cut]
        is_t = seg["action"].view(np.uint8) == _T
        if not is_t.any():
            return None
        iids, px = seg["instrument_id"], seg["price"]
        best = None
        for iid, w in watch:
            m = is_t & (iids == iid)
            if isinstance(w, _Position):
                if w.side == "B":
                    m &= (px <= w.stop_px) | (px >= w.target_px)
                else:
                    m &= (px >= w.stop_px) | (px <= w.target_px)
            else:
                m &= px <= w.limit_px if w.side == "B" else px >= w.limit_px
            hit = np.flatnonzero(m)
            if len(hit) and (best is None or hit[0] < best):
                best = int(hit[0])
        return None if best is None else i + best

    def _on_trigger(self, rec, ts: int) -> None:
        iid, px, size = int(rec["instrument_id"]), int(rec["price"]), int(rec["size"])
        limits = [o for o in self.working if o.kind == "limit"]
        for o in [o for o in limits if o.signal["instrument_id"] == iid]:
            through = px < o.limit_px if o.side == "B" else px > o.limit_px
            if through:
                qty = o.qty - o.filled
            else:  # at the limit: the queue ahead trades first
                o.queue_ahead -= size
                qty = min(o.qty - o.filled, max(0, -o.queue_ahead))
                o.queue_ahead = max(o.queue_ahead, 0)  # we are at the front now
            if qty > 0:
                self._fill(o, o.limit_px, qty, ts, "limit")
                if o.filled == o.qty:
                    self._finish_order(o, "filled")
                    self._after_entry(o, ts)
        for pos in [p for p in self.open if p.signal["instrument_id"] == iid and not p.closing]:
            long = pos.side == "B"
            if (px <= pos.stop_px) if long else (px >= pos.stop_px):
                self._exit(pos, "stop", ts, trigger_px=px)
            elif (px >= pos.target_px) if long else (px <= pos.target_px):
                self._exit(pos, "target", ts, trigger_px=px)

    # ------------------------------------------------------------------ entries
    def _enter(self, s: dict, ts: int) -> None:
        side = "B" if s["direction"] == "BUY" else "S"
        iid = int(s["instrument_id"])
        bbo = self.books.bbo(iid)
        touch = None
        if bbo is not None:
            touch = bbo.ask_px if side == "B" else bbo.bid_px
            if (bbo.ask_sz if side == "B" else bbo.bid_sz) <= 0:
                touch = None
        order = _Order(self._id("O"), s, side, 0, self.cfg.order_type, "entry", ts)
        if self._episodes.later(s.get("episode_id")):
            self._finish_order(order, "skipped", SAME_EPISODE)
            return
        if self._stopped is not None:
            self._reject(order, self._stopped)
            return
        if touch is None:
            self._reject(order, "no displayed liquidity on the side to take at decision time")
            return
        stop_dist = to_points(touch) * self.cfg.stop_fraction
        state = RiskState(
            equity=self.equity,
            peak_equity=self.peak_equity,
            day_net_pnl=self.day_net,
            open_positions=len(self.open) + sum(o.purpose == "entry" for o in self.working),
            day_trades=self.day_trades,
            halted_reason=self.halted(),
        )
        sizing = size_entry(stop_dist, state, self.limits)
        if sizing.rejected:
            self._reject(order, "; ".join(sizing.reasons))
            return
        order.qty = sizing.contracts
        self.day_trades += 1
        order.reason = "; ".join(sizing.reasons)
        if self.cfg.order_type == "market":
            self._walk(order, ts)
            self._finish_order(
                order,
                "filled" if order.filled == order.qty else "partial",
                "" if order.filled == order.qty else "book too thin",
            )
            self._after_entry(order, ts)
            return
        join = bbo.bid_px if side == "B" else bbo.ask_px
        if join <= 0 or (bbo.bid_sz if side == "B" else bbo.ask_sz) <= 0:
            join = touch  # nothing to join on our side: the limit sits at the far touch
        inside = self.cfg.limit_offset_ticks * (1 if side == "B" else -1)
        order.limit_px = offset_ticks(join, inside)
        order.queue_ahead = self._displayed(iid, side, order.limit_px)
        order.expires_ts = ts + int(self.cfg.limit_ttl_s * NS)
        self.working.append(order)
        self._push(order.expires_ts, "limit_ttl", order)

    def _after_entry(self, order: _Order, ts: int) -> None:
        if order.filled == 0:
            return
        s = order.signal
        px = order.notional / order.filled
        long = order.side == "B"
        stop = px * (1 - self.cfg.stop_fraction) if long else px * (1 + self.cfg.stop_fraction)
        tgt = px * (1 + self.cfg.target_fraction) if long else px * (1 - self.cfg.target_fraction)
        pos = _Position(
            self._id("P"),
            s,
            order.side,
            qty=order.filled,
            entry_notional=order.notional,
            entry_ts=ts,
            stop_px=round_to_tick(int(stop), "down" if long else "up"),
            target_px=round_to_tick(int(tgt), "up" if long else "down"),
            fees=order.filled * self.cfg.fee_per_contract,
        )
        self.open.append(pos)
        self._push(ts + int(self.cfg.time_stop_s * NS), "time_stop", pos)

    # ------------------------------------------------------------------ exits
    def _exit(self, pos: _Position, why: str, ts: int, trigger_px: int | None = None) -> None:
        pos.closing = True
        side = "S" if pos.side == "B" else "B"
        order = _Order(self._id("O"), pos.signal, side, pos.qty, "market", why, ts)
        self._walk(order, ts)
        rest = order.qty - order.filled
        if rest and trigger_px is not None:
            self._fill(order, trigger_px, rest, ts, "trigger_trade")
        elif rest:
            last = self.last_trade.get(int(pos.signal["instrument_id"]))
            if last is not None:
                self._fill(order, last, rest, ts, "last_trade")
        whole = order.filled == order.qty
        self._finish_order(
            order, "filled" if whole else "partial", "" if whole else "no liquidity and no trade"
        )
        self._close(pos, order.filled, order.notional, ts, why, order.filled)

    def _settle(self, pos: _Position, ts: int) -> None:
        """Expiration: cash-settle the intrinsic value against the underlying future."""
        s = pos.signal
        under = self.last_trade.get(int(s["underlying_id"]))
        pos.closing = True
        order = _Order(
            self._id("O"), s, "S" if pos.side == "B" else "B", pos.qty, "settle", "expiration", ts
        )
        if under is None:
            self._finish_order(order, "rejected", "no underlying trade to settle against")
            pos.closing = False
            return
        strike = int(round(float(s["strike"]) * NS))
        call = str(s["option_type"]).upper().startswith("C")
        intrinsic = max(0, under - strike) if call else max(0, strike - under)
        self._fill(order, intrinsic, pos.qty, ts, "cash_settlement", fee=False)
        self._finish_order(order, "filled")
        self._close(pos, pos.qty, intrinsic * pos.qty, ts, "expiration", 0)

    def _close(self, pos, qty: int, notional: int, ts: int, why: str, fee_qty: int) -> None:
        if qty < pos.qty:  # said in the ledger: P&L covers only the contracts that got a price
            why = f"{why}; {pos.qty - qty} of {pos.qty} contracts had no exit price"
        pos.exit_qty, pos.exit_notional, pos.exit_ts, pos.exit_reason = qty, notional, ts, why
        pos.fees += fee_qty * self.cfg.fee_per_contract
        sign = _SIDE_SIGN[pos.side]
        gross = sign * (notional - pos.entry_notional * (qty / pos.qty if pos.qty else 0))
        gross = to_points(int(gross)) * MULTIPLIER
        net = gross - pos.fees
        self.open.remove(pos)
        self.day_net += net
        self.equity += net
        self.peak_equity = max(self.peak_equity, self.equity)
        s = pos.signal
        self.ledger.positions.append(
            {
                "position_id": pos.position_id,
                **self._row_head(s),
                "raw_symbol": s.get("raw_symbol", ""),
                "side": "LONG" if pos.side == "B" else "SHORT",
                "qty": pos.qty,
                "entry_ts": pos.entry_ts,
                "entry_price": to_points(int(pos.entry_px)),
                "exit_ts": ts,
                "exit_price": to_points(int(notional / qty)) if qty else None,
                "exit_reason": why,
                "gross_pnl": gross,
                "fees": pos.fees,
                "net_pnl": net,
            }
        )

    # ------------------------------------------------------------------ fills
    def _walk(self, order: _Order, ts: int) -> None:
        """Take the visible levels, best first, until the order is filled or the side is empty."""
        bids, asks = self.books.depth(int(order.signal["instrument_id"]), levels=1_000)
        for px, size, _count in asks if order.side == "B" else bids:
            need = order.qty - order.filled
            if need <= 0:
                break
            if size > 0:
                self._fill(order, int(px), min(need, int(size)), ts, "book")

    def _displayed(self, iid: int, side: str, price: int) -> int:
        bids, asks = self.books.depth(iid, levels=1_000)
        for px, size, _ in bids if side == "B" else asks:
            if px == price:
                return int(size)
        return 0

    def _fill(self, o: _Order, px: int, qty: int, ts: int, how: str, fee: bool = True) -> None:
        o.filled += qty
        o.notional += px * qty
        self.ledger.fills.append(
            {
                "fill_id": self._id("F"),
                "order_id": o.order_id,
                **self._row_head(o.signal),
                "ts": ts,
                "side": o.side,
                "price": to_points(px),
                "qty": qty,
                "fee": qty * self.cfg.fee_per_contract if fee else 0.0,
                "liquidity": how,
            }
        )

    def _reject(self, order: _Order, reason: str) -> None:
        self._finish_order(order, "rejected", reason)

    def _finish_order(self, o: _Order, status: str, reason: str = "") -> None:
        o.status = status
        o.reason = "; ".join(r for r in (o.reason, reason) if r)
        if o in self.working:
            self.working.remove(o)
        s = o.signal
        self.ledger.orders.append(
            {
                "order_id": o.order_id,
                **self._row_head(s),
                "purpose": o.purpose,
                "side": o.side,
                "type": o.kind,
                "qty": o.qty,
                "limit_price": to_points(o.limit_px) if o.limit_px is not None else None,
                "created_ts": o.created_ts,
                "status": status,
                "filled_qty": o.filled,
                "avg_price": to_points(int(o.notional / o.filled)) if o.filled else None,
                "reason": o.reason,
            }
        )

    def _row_head(self, s: dict) -> dict:
        """The columns every ledger row shares: run, mode, algorithm, signal, config, option."""
        return {
            "run_id": self.run_id,
            "mode": self.mode,
            "algo": self.algo,
            "signal_id": s["signal_id"],
            "config_version": s.get("config_version", ""),
            "instrument_id": int(s["instrument_id"]),
        }

    def _id(self, prefix: str) -> str:
        return f"{self.algo}-{prefix}{next(self._ids):06d}"


def executor_from_settings(algo: str, settings, *, halted, run_id: str, mode: str, capital=None):
    """The executor ``settings`` describe (paper, risk and the min confidence)."""
    p, r = settings.paper, settings.risk
    cfg = ExecConfig(
        fee_per_contract=p.commission_per_contract,
        latency_ms=float(p.latency_ms),
        order_type=p.order_type,
        limit_offset_ticks=p.limit_offset_ticks,
        limit_ttl_s=p.limit_ttl_s,
        stop_fraction=r.stop_loss_percent / 100.0,
        target_fraction=r.take_profit_percent / 100.0,
        time_stop_s=p.time_stop_s,
        min_confidence=r.min_signal_confidence,
        stack_episodes=p.stack_episodes,
    )
    return PaperExecutor(
        algo,
        cfg,
        limits_from_settings(settings),
        capital=capital or p.capital,
        halted=halted,
        run_id=run_id,
        mode=mode,
    )


def limits_from_settings(settings) -> RiskLimits:
    """The risk limits of ``settings.risk``: one source for the paper executor and the trader."""
    r = settings.risk
    return RiskLimits(
        max_positions=r.max_positions,
        max_contracts=r.max_position_size,
        max_loss_per_trade=r.max_loss_per_trade,
        daily_loss_stop=r.daily_loss_stop,
        drawdown_stop=r.max_drawdown_stop,
        risk_budget_fraction=r.risk_budget_percent / 100.0,
        max_daily_trades=r.max_daily_trades,
    )
