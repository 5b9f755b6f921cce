"""The real-time trader: signals become broker orders, broker events become the ledger.

Whatever the broker (``PaperBroker`` or ``IBBroker``), the decisions are the paper executor's
(docs/algorithms.md §11) and the ledger rows have its columns, so the lake, the reports and the
A/B tooling cannot tell which broker traded. Sending is narrow: the emergency stop before every
entry (exits always go out), each send once through the broker's breaker, and an unknown outcome
blocks further entries until ``reconcile`` (docs/operations.md §Interactive Brokers).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from ifd_core.broker.base import (
    FINAL,
    Broker,
    BrokerUnavailable,
    Events,
    Fill,
    OptionContract,
    OrderRefused,
    OrderRequest,
    OrderUpdate,
)
from ifd_core.ops.resilience import Breaker, BreakerOpen, guarded_write_once
from ifd_core.trading.paper import SAME_EPISODE, DayLedger, EpisodeClaims
from ifd_core.trading.risk import RiskLimits, RiskState, size_entry
from ifd_core.units import MULTIPLIER, NS, round_to_tick, to_fixed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TraderConfig:
    order_type: str = "market"
    stop_fraction: float = 0.12
    target_fraction: float = 0.24
    time_stop_s: float = 1800.0
    min_confidence: float = 0.0
    stack_episodes: bool = False  # paper.stack_episodes: every signal of an episode may trade


@dataclass
class _Pos:
    position_id: str
    entry: OrderRequest
    qty: int
    entry_px: float
    entry_ts: int
    stop: int  # fixed point (1e-9), on the tick grid: compared with prints exactly
    target: int
    fees: float
    # The time stop counts from here: the fill's time, or the trader's clock when that is earlier
    # (a replayed feed runs on exchange time while the broker stamps wall time).
    opened_at: int
    exit_order: str | None = None


class SignalTrader:
    """Trades one algorithm's signals through a real-time broker (paper or IB) with the paper
    executor's decisions, and writes the same ledger rows, so a live account can be compared
    with its paper twin (docs/algorithms.md §11)."""

    def __init__(
        self,
        algo: str,
        broker: Broker,
        breaker: Breaker,
        config: TraderConfig,
        limits: RiskLimits,
        *,
        capital: float,
        quote: Callable[[int], tuple[float, float] | None],
        halted: Callable[[], str | None] = lambda: None,
        run_id: str = "",
        mode: str | None = None,
        id_tag: str = "",
    ) -> None:
        self.algo, self.broker, self.breaker = algo, broker, breaker
        self.cfg, self.limits = config, limits
        self.equity = self.peak_equity = capital
        self.quote, self.halted = quote, halted
        self.run_id, self.mode = run_id, mode
        self.id_tag = id_tag  # tells apart the order ids of two processes of one run
        self.day_net = 0.0
        self.day_trades = 0
        self.unknown_outcome: str | None = None  # a send we could not confirm: reconcile first
        self._ids = itertools.count(1)
        self._orders: dict[str, tuple[OrderRequest, OrderUpdate, dict]] = {}
        self._fills: list[dict] = []
        self._seen_fills: set[str] = set()
        self._open: dict[str, _Pos] = {}  # by entry order id
        self._unsent: set[str] = set()  # refused before any send
        self._closed: list[dict] = []
        self._episodes = EpisodeClaims(self.cfg.stack_episodes)

    # ------------------------------------------------------------------ entries
    def note_episodes(self, episode_ids) -> None:
        """Episodes acted on before this trader existed (a resumed run replays the day so far
        without trading it): their later signals are skipped, not traded a second time."""
        self._episodes.acted.update(e for e in episode_ids if e is not None)

    def on_signal(self, s: dict, contract: OptionContract, now: int, refuse: str = "") -> str:
        """Decide on one signal; returns our order id (a rejected order has one too).
        ``refuse``: the caller's reason not to trade it (kept as the rejected row's reason)."""
        side = "B" if s["direction"] == "BUY" else "S"
        oid = self._id("O")
        q = self.quote(contract.instrument_id)
        touch = None if q is None else (q[1] if side == "B" else q[0])
        qty = 1
        reason = ""
        halted = self.halted()
        status = "rejected"
        if refuse:
            reason = refuse
        elif float(s.get("confidence") or 0.0) < self.cfg.min_confidence:
            reason = f"confidence {s.get('confidence')} below {self.cfg.min_confidence}"
        # after the confidence filter, as in the paper executor
        elif self._episodes.later(s.get("episode_id")):
            reason, status = SAME_EPISODE, "skipped"
        elif halted:
            reason = f"emergency stop: {halted}"
        elif self.unknown_outcome:
            reason = f"not sent: {self.unknown_outcome}; reconcile with the broker first"
        elif touch is None or touch <= 0:
            reason = "no quote on the side to take at decision time"
        else:
            state = RiskState(
                equity=self.equity,
                peak_equity=self.peak_equity,
                day_net_pnl=self.day_net,
                open_positions=len(self._open) + self._working_entries(),
                day_trades=self.day_trades,
                halted_reason=halted,
            )
            sizing = size_entry(touch * self.cfg.stop_fraction, state, self.limits)
            if sizing.rejected:
                reason = "; ".join(sizing.reasons)
            qty = max(sizing.contracts, 1)
        limit = touch if self.cfg.order_type == "limit" and not reason else None
        req = OrderRequest(
            oid,
            s["signal_id"],
            self.algo,
            contract,
            side,
            qty,
            "limit" if limit is not None else "market",
            "entry",
            now,
            limit,
        )
        head = self._head(s, contract)
        if reason:
            self._orders[oid] = (req, OrderUpdate(oid, status, reason=reason), head)
            self._unsent.add(oid)
            return oid
        self.day_trades += 1
        self._send(req, head)
        return oid

    def _working_entries(self) -> int:
        return sum(
            1
            for oid, (r, u, _) in self._orders.items()
            if r.purpose == "entry"
            and u.status not in FINAL
            and u.filled_qty == 0
            and oid not in self._unsent  # rejected or skipped here: never at the broker
        )

    # ------------------------------------------------------------------ sending
    def _send(self, req: OrderRequest, head: dict) -> None:
        upd = OrderUpdate(req.order_id, "working")
        self._orders[req.order_id] = (req, upd, head)
        try:
            guarded_write_once(self.breaker, self.broker.place, req)
        except (OrderRefused, BreakerOpen) as exc:  # not sent
            upd.status, upd.reason = "rejected", str(exc)
        except Exception as exc:  # BrokerUnavailable or a bug: maybe sent, never resent blindly
            if not isinstance(exc, BrokerUnavailable):
                log.error("order %s: unexpected error while sending", req.order_id, exc_info=exc)
            upd.reason = f"send outcome unknown: {type(exc).__name__}: {exc}"
            self.unknown_outcome = f"order {req.order_id} may or may not have reached the broker"

    def cancel(self, order_id: str) -> None:
        self.broker.cancel(order_id)

    def cancel_entries(self) -> int:
        """Ask the broker to cancel every working entry (a rollback's cutoff); their final status
        comes back as events. Returns how many were asked."""
        ids = [oid for oid in self.working() if self._orders[oid][0].purpose == "entry"]
        for oid in ids:
            self.broker.cancel(oid)
        return len(ids)

    def working(self) -> list[str]:
        """Our orders the broker may still act on (sent, not final)."""
        return [
            oid
            for oid, (_, u, _) in self._orders.items()
            if u.status not in FINAL and oid not in self._unsent
        ]

    def unsettled(self) -> list[str]:
        """Orders still working, or reported filled before their fills (IB reports a fill with
        its commission, which can come after the order's Filled status)."""
        got: dict[str, int] = {}
        for f in self._fills:
            got[f["order_id"]] = got.get(f["order_id"], 0) + int(f["qty"])
        working = self.working()
        late = [oid for oid, (_, u, _) in self._orders.items() if u.filled_qty > got.get(oid, 0)]
        return working + [oid for oid in late if oid not in working]

    @property
    def closed_count(self) -> int:
        return len(self._closed)

    def next_due(self) -> int | None:
        """The earliest time stop of an open position (a replay can pump at that instant)."""
        return min(
            (self._due(p) for p in self._open.values() if p.exit_order is None), default=None
        )

    def _due(self, pos: _Pos) -> int:
        return pos.opened_at + int(self.cfg.time_stop_s * NS)

    def open_instruments(self) -> set[int]:
        return {p.entry.contract.instrument_id for p in self._open.values()}

    # ------------------------------------------------------------------ events
    def pump(self, now: int) -> None:
        """Apply the broker's events, then the time stops due at ``now``."""
        self.apply(self.broker.drain(), now)

    def apply(self, ev: Events, now: int) -> None:
        """Events drained by someone else (several traders share one broker): events of orders
        that are not this trader's are ignored."""
        for u in ev.updates:
            self._update(u)
        for f in ev.fills:
            self._fill(f, now)
        for pos in list(self._open.values()):
            if pos.exit_order is None and now >= self._due(pos):
                self._exit(pos, "time_stop", now)

    def on_trade(self, instrument_id: int, price: float, now: int, ts: int | None = None) -> None:
        """Stops and targets of open positions trigger on the first trade through them, then
        exit at market (the paper executor's rule: a printed price, not a quote). A trade
        stamped ``ts`` at or before a position opened is not one of its trades."""
        for pos in list(self._open.values()):
            if pos.entry.contract.instrument_id != instrument_id or pos.exit_order is not None:
                continue
            if ts is not None and ts <= pos.opened_at:
                continue
            long = pos.entry.side == "B"
            px = to_fixed(price)
            if (px <= pos.stop) if long else (px >= pos.stop):
                self._exit(pos, "stop", now)
            elif (px >= pos.target) if long else (px <= pos.target):
                self._exit(pos, "target", now)

    def flatten(self, now: int, why: str = "session_end") -> None:
        for pos in list(self._open.values()):
            if pos.exit_order is None:
                self._exit(pos, why, now)

    def reconcile(self) -> None:
        """After a reconnect: the broker's view wins for every order it knows; an order whose
        send was in doubt and that the broker does not know was never placed."""
        rec = self.broker.connect()
        known = {u.order_id: u for u in rec.open_orders}
        for oid, (_req, upd, _) in self._orders.items():
            if oid in known:
                self._update(known[oid])
            elif upd.status == "working" and upd.reason.startswith("send outcome unknown"):
                upd.status, upd.reason = "rejected", "not at the broker after reconnect: not placed"
        self.pump(0)
        self.unknown_outcome = None

    def _update(self, u: OrderUpdate) -> None:
        entry = self._orders.get(u.order_id)
        if entry is None:
            return
        _, upd, _ = entry
        upd.status = u.status
        upd.filled_qty = max(upd.filled_qty, u.filled_qty)
        upd.avg_price = u.avg_price if u.avg_price is not None else upd.avg_price
        upd.reason = u.reason or upd.reason
        upd.broker_order_id = u.broker_order_id or upd.broker_order_id

    def _fill(self, f: Fill, now: int) -> None:
        if f.fill_id in self._seen_fills or f.order_id not in self._orders:
            return
        self._seen_fills.add(f.fill_id)
        req, _, head = self._orders[f.order_id]
        self._fills.append(
            {
                "fill_id": f"{self.algo}-{f.fill_id}",
                "order_id": f.order_id,
                **head,
                "ts": f.ts,
                "side": f.side,
                "price": f.price,
                "qty": f.qty,
                "fee": f.fee,
                "liquidity": f.liquidity,
            }
        )
        if req.purpose == "entry":
            pos = self._open.get(req.order_id)
            if pos is None:
                pos = _Pos(
                    self._id("P"), req, 0, 0.0, f.ts, 0, 0, 0.0, min(now, f.ts) if now else f.ts
                )
                self._open[req.order_id] = pos
            pos.entry_px = (pos.entry_px * pos.qty + f.price * f.qty) / (pos.qty + f.qty)
            pos.qty += f.qty
            pos.fees += f.fee
            self._brackets(pos)
            return
        pos = next((p for p in self._open.values() if p.exit_order == f.order_id), None)
        if pos is not None:
            self._close(pos, f)

    def _brackets(self, pos: _Pos) -> None:
        """Stop and target from the average entry, on the tick grid away from it (as the paper
        executor rounds them)."""
        long, c = pos.entry.side == "B", self.cfg
        stop = pos.entry_px * (1 - c.stop_fraction if long else 1 + c.stop_fraction)
        tgt = pos.entry_px * (1 + c.target_fraction if long else 1 - c.target_fraction)
        pos.stop = round_to_tick(to_fixed(stop), "down" if long else "up")
        pos.target = round_to_tick(to_fixed(tgt), "up" if long else "down")

    # ------------------------------------------------------------------ exits
    def _exit(self, pos: _Pos, why: str, now: int) -> None:
        side = "S" if pos.entry.side == "B" else "B"
        req = OrderRequest(
            self._id("O"),
            pos.entry.signal_id,
            self.algo,
            pos.entry.contract,
            side,
            pos.qty,
            "market",
            why,
            now,
        )
        pos.exit_order = req.order_id
        self._send(req, self._orders[pos.entry.order_id][2])
        if self._orders[req.order_id][1].status == "rejected":
            pos.exit_order = None  # still open: the next quote or flatten tries again

    def _close(self, pos: _Pos, f: Fill) -> None:
        sign = 1 if pos.entry.side == "B" else -1
        gross = sign * (f.price - pos.entry_px) * pos.qty * MULTIPLIER
        fees = pos.fees + f.fee
        net = gross - fees
        self.day_net += net
        self.equity += net
        self.peak_equity = max(self.peak_equity, self.equity)
        del self._open[pos.entry.order_id]
        req = self._orders[pos.exit_order][0]
        self._closed.append(
            {
                "position_id": pos.position_id,
                **self._orders[pos.entry.order_id][2],
                "raw_symbol": pos.entry.contract.raw_symbol,
                "side": "LONG" if pos.entry.side == "B" else "SHORT",
                "qty": pos.qty,
                "entry_ts": pos.entry_ts,
                "entry_price": pos.entry_px,
                "exit_ts": f.ts,
                "exit_price": f.price,
                "exit_reason": req.purpose,
                "gross_pnl": gross,
                "fees": fees,
                "net_pnl": net,
            }
        )

    # ------------------------------------------------------------------ the ledger
    def ledger(self) -> DayLedger:
        """One row per order in its latest state, every fill, every closed position."""
        orders = []
        for req, upd, head in self._orders.values():
            orders.append(
                {
                    "order_id": req.order_id,
                    **head,
                    "purpose": req.purpose,
                    "side": req.side,
                    "type": req.kind,
                    "qty": 0 if req.order_id in self._unsent else req.qty,
                    "limit_price": req.limit_price,
                    "created_ts": req.created_ts,
                    "status": upd.status,
                    "filled_qty": upd.filled_qty,
                    "avg_price": upd.avg_price,
                    "reason": upd.reason,
                }
            )
        return DayLedger(orders, list(self._fills), list(self._closed))

    def _head(self, s: dict, contract: OptionContract) -> dict:
        # The broker knows once connected whether its account is paper or real money.
        mode = self.mode or getattr(self.broker, "mode", self.broker.name)
        return {
            "run_id": self.run_id,
            "mode": mode,
            "algo": self.algo,
            "signal_id": s["signal_id"],
            "config_version": s.get("config_version", ""),
            "instrument_id": int(contract.instrument_id),
        }

    def _id(self, prefix: str) -> str:
        """Unique across runs (the broker keeps order refs across sessions: reconciliation)."""
        run = "".join(f"{p}-" for p in (self.run_id, self.id_tag) if p)
        return f"{run}{self.algo}-{prefix}{next(self._ids):06d}"
