"""Real-time trading in the live flow: routed signals go to the broker as they are decided.

With ``execution.broker = "ib"`` the live run trades each routed signal the moment the detector
raises it (the default, ``paper``, trades them at the end of the date through the paper
executor). One broker connection per run; per date one ``SignalTrader`` per algorithm, all fed
from the same drained events. Routing, rollback, episodes across restarts, the session-end
flatten and the ledger: docs/operations.md §Interactive Brokers.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence

import polars as pl

from ifd_core.analysis.cross_asset import live_weight_note
from ifd_core.broker.base import Broker, OptionContract, OrderRefused
from ifd_core.broker.factory import trader_from_settings
from ifd_core.broker.trader import SignalTrader
from ifd_core.ops.resilience import Breaker
from ifd_core.settings import Settings
from ifd_core.trading.halt import EmergencyStop
from ifd_core.trading.paper import DayLedger
from jobs.live.guard import LiveGuard
from warehouse.broker_ledger import write_trader_ledger
from warehouse.lake import Lake
from warehouse.tables import TABLES

log = logging.getLogger(__name__)
SETTLE_POLL_S = 0.1
RECONNECT_EVERY_S = 5.0


def contract_of(signal: dict) -> OptionContract:
    """The option of a signal row, as the broker is asked for it."""
    return OptionContract(
        instrument_id=int(signal["instrument_id"]),
        raw_symbol=signal["raw_symbol"],
        root=signal["root"],
        expiration=signal["expiration"],
        strike=float(signal["strike"]),
        right=signal["option_type"],
    )


class RealTimeDesk:
    """One trade date's real-time trading through the run's broker."""

    def __init__(
        self,
        lake: Lake,
        settings: Settings,
        guard: LiveGuard,
        broker: Broker,
        breaker: Breaker,
        *,
        day: dt.date,
        run_id: str,
        origin: str,
        algos: Sequence[str],
        quote: Callable[[int], tuple[float, float] | None],
        process_tag: str,
        progress: Callable[[str], None] = lambda m: None,
    ) -> None:
        self.lake, self.settings, self.guard, self.broker = lake, settings, guard, broker
        self.day, self.run_id, self.origin = day, run_id, origin
        self.key = f"live-{broker.name}-{run_id}-{process_tag}"
        halt = EmergencyStop(settings.data_dir)
        if note := live_weight_note(settings.massive.confidence_weight):
            log.warning(note)
            progress(note)
        self.traders: dict[str, SignalTrader] = {}
        for algo in algos:
            self.traders[algo] = trader_from_settings(
                algo,
                settings,
                broker,
                breaker,
                quote=quote,
                halted=halt.reason,
                run_id=run_id,
                id_tag=process_tag,
            )
        self.config_version = settings.config_version()
        self.equity0 = {a: t.equity for a, t in self.traders.items()}
        self.signals: list[pl.DataFrame] = []  # those offered to the traders, for pnl_daily
        self.progress = progress
        self._next_reconnect = 0.0
        self._cut_done = False
        self._closed_seen = 0
        self.closed = False

    # ------------------------------------------------------------------ during the session
    def note_past(self, signals: pl.DataFrame) -> None:
        """Signals of the date raised before this process (a resumed run replays them without
        trading): their episodes count as acted on, so a later signal of one is skipped rather
        than opening a second position on the same flow."""
        if signals.height == 0 or "episode_id" not in signals.columns:
            return
        for algo, t in self.traders.items():
            t.note_episodes(signals.filter(pl.col("algo") == algo)["episode_id"].to_list())

    def on_batch(self, signals: pl.DataFrame, trades: pl.DataFrame, now: int) -> None:
        """Trade the batch's routed signals, then apply the broker's events; stops and targets
        trigger on the batch's option ``trades`` (instrument_id, price in points, in order)."""
        chosen = self._offered(signals)
        if chosen.height:
            self.signals.append(chosen)
            for s in chosen.sort("decision_ts", "signal_id").iter_rows(named=True):
                self.traders[s["algo"]].on_signal(s, contract_of(s), now)
        self.pump(now)
        held = set().union(*(t.open_instruments() for t in self.traders.values()))
        if held and trades.height:
            prints = trades.filter(pl.col("instrument_id").is_in(sorted(held)))
            for iid, ts, price in prints.select("instrument_id", "ts_event", "price").iter_rows():
                for t in self.traders.values():
                    t.on_trade(iid, price, now, ts)

    def _offered(self, signals: pl.DataFrame) -> pl.DataFrame:
        """The signals routed to execution (rollout share and cutoff), of our algorithms."""
        if signals.height == 0:
            return signals
        chosen = self.guard.executed(signals)
        return chosen.filter(pl.col("algo").is_in(list(self.traders))).with_columns(
            pl.lit(self.config_version).alias("config_version")
        )

    def pump(self, now: int) -> None:
        self._reconnect_if_needed()
        ev = self.broker.drain()
        for t in self.traders.values():
            t.apply(ev, now)
        ch = self.traders.get(self.settings.rollout.challenger)
        if ch is None:
            return
        if self.guard.cutoff is not None and not self._cut_done:
            self._cut_done = True
            ch.cancel_entries()
        if ch.closed_count != self._closed_seen:
            self._closed_seen = ch.closed_count
            self.guard.on_realized(ch.day_net, now)

    def _reconnect_if_needed(self) -> None:
        """A lost connection (or a send whose outcome is unknown) blocks every send until the
        broker has been asked what it holds; tried again every ``RECONNECT_EVERY_S``."""
        lost = not getattr(self.broker, "connected", True)
        doubt = any(t.unknown_outcome for t in self.traders.values())
        if not (lost or doubt) or time.monotonic() < self._next_reconnect:
            return
        self._next_reconnect = time.monotonic() + RECONNECT_EVERY_S
        try:
            for t in self.traders.values():
                t.reconcile()
        except OrderRefused as exc:
            self.progress(f"{self.day}: broker unreachable ({exc}); orders refused until it is")
            return
        self.progress(f"{self.day}: broker reconnected and reconciled")

    def entries_sent(self) -> dict[str, int]:
        return {
            a: sum(
                o["purpose"] == "entry" and o["status"] not in ("rejected", "skipped")
                for o in t.ledger().orders
            )
            for a, t in self.traders.items()
        }

    # ------------------------------------------------------------------ the end
    def close(self, end_ns: int, late: pl.DataFrame, why: str = "session_end") -> None:
        """Refuse signals decided at the end, flatten, wait for the broker's fills, then cancel
        what still works (an unfilled exit is said in its row, never dropped)."""
        if self.closed:
            return
        late = self._offered(late)
        if late.height:
            self.signals.append(late)
        for s in late.iter_rows(named=True):
            why_not = "decision at the end of the session"
            self.traders[s["algo"]].on_signal(s, contract_of(s), end_ns, refuse=why_not)
        for t in self.traders.values():
            t.flatten(end_ns, why)
        self._settle(end_ns)
        if any(t.working() for t in self.traders.values()):
            for t in self.traders.values():
                for oid in t.working():
                    t.cancel(oid)
            self._settle(end_ns)
        left = sum(len(t.open_instruments()) for t in self.traders.values())
        if left:  # an exit the broker did not fill: said loudly, the position is real
            self.progress(
                f"{self.day}: WARNING {left} position(s) still open at the broker after the "
                "close (exit not filled): close them in TWS / IB Gateway"
            )
        self.closed = True

    def _settle(self, now: int) -> None:
        deadline = time.monotonic() + self.settings.execution.settle_s
        while True:
            self.pump(now)
            if not any(t.unsettled() for t in self.traders.values()):
                return
            if time.monotonic() >= deadline:
                return
            wait = getattr(self.broker, "wait", None)
            if wait is not None:
                wait(SETTLE_POLL_S)
            else:
                time.sleep(SETTLE_POLL_S)

    def ledger(self) -> DayLedger:
        out = DayLedger()
        for t in self.traders.values():
            led = t.ledger()
            out.orders += led.orders
            out.fills += led.fills
            out.positions += led.positions
        return out

    def write(self) -> None:
        """The ledger so far under this process's key (idempotent); pnl_daily once closed."""
        write_trader_ledger(
            self.lake, self.settings, self.ledger(), self.day, self.origin, self.key
        )
        if self.closed:
            self._write_pnl()

    def _write_pnl(self) -> None:
        from jobs.backtest import daily_row

        sig = pl.concat(self.signals, how="diagonal_relaxed") if self.signals else None
        labels = self.lake.scan("signal_outcomes").filter(pl.col("date") == self.day).collect()
        rows = []
        for algo, t in self.traders.items():
            s = sig.filter(pl.col("algo") == algo) if sig is not None else _no_signals()
            lab = labels.filter(pl.col("signal_id").is_in(s["signal_id"].implode()))
            mode = t.mode or getattr(self.broker, "mode", self.broker.name)
            rows.append(
                {
                    **daily_row(self.day, algo, t, self.equity0[algo], s, t.ledger(), lab),
                    "run_id": self.run_id,
                    "mode": mode,
                    "origin": self.origin,
                }
            )
        schema = TABLES["pnl_daily"].pl_schema
        df = pl.DataFrame(rows, schema_overrides={c: schema[c] for c in rows[0] if c in schema})
        self.lake.replace_day("pnl_daily", self.day, df.select(list(schema)), self.key)


def _no_signals() -> pl.DataFrame:
    return pl.DataFrame(
        schema={c: TABLES["signals"].pl_schema[c] for c in ("signal_id", "algo", "config_version")}
    )
