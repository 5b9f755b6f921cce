"""Liveness, latency and uptime SLIs for the live deployment (docs/operations.md §Health, SLIs and
alerts).

Everything here is a pure state machine or function with the clock passed in (wall-clock ns UTC):
no threads, no sleeps, no I/O. The live flow calls the ``on_*`` hooks as things happen and
``FeedLiveness.check`` on its own tick, and writes the returned ``Incident`` rows to the
``incidents`` table. Keeping the clock injected is what makes "stale after exactly 10 s", "one
incident per episode" and "99.23 % uptime" testable without waiting.

Wall clock is used for liveness only (docs/architecture.md): latency *samples* mix clocks on purpose
(``ts_event``/``ts_recv`` are exchange/Databento clocks, local receive and emit are ours).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ifd_core.calendar import NS, SessionPolicy, streaming_period

MS = 1_000_000
MINUTE_NS = 60 * NS

IncidentState = Literal["open", "resolved"]
Severity = Literal["warning", "critical"]


@dataclass(frozen=True)
class Incident:
    """One row of the ``incidents`` table: an episode, written when it opens and when it ends."""

    kind: str
    state: IncidentState
    opened_ns: int
    resolved_ns: int | None
    detail: str
    severity: Severity

    @property
    def duration_ns(self) -> int | None:
        return None if self.resolved_ns is None else self.resolved_ns - self.opened_ns

    @property
    def duration_s(self) -> float | None:
        d = self.duration_ns
        return None if d is None else d / NS


class FeedLiveness:
    """Detects a silent feed (``feed_stale``) and a consumer holding up the reader (stalls).

    One open and one resolved incident row per episode, dated when the threshold was crossed, not
    when a check noticed it (rules: docs/operations.md §Health, SLIs and alerts). ``on_stall``
    returns its row directly; every ``feed_stale`` row (opened or resolved) comes out of ``check``.

    Not thread-safe: a caller feeding ``on_record`` from one thread and ``check`` from another
    should hold one lock around both (an unlucky interleaving opens a spurious episode that the
    next record closes).
    """

    def __init__(
        self,
        stale_after_s: float = 10.0,
        *,
        stall_warn_s: float = 1.0,
        stall_critical_s: float | None = None,
    ) -> None:
        self.stale_after_ns = int(stale_after_s * NS)
        self.stall_warn_ns = int(stall_warn_s * NS)
        self.stall_critical_ns = int(
            (stale_after_s if stall_critical_s is None else stall_critical_s) * NS
        )
        self.last_record_ns: int | None = None
        self.last_heartbeat_ns: int | None = None
        self._session_since_ns: int | None = None
        self._stale: Incident | None = None
        self._pending: list[Incident] = []

    # --- hooks -----------------------------------------------------------------------------
    def on_record(self, wall_ns: int) -> None:
        """A record (or batch) arrived at ``wall_ns``; O(1), safe to call per batch."""
        self.last_record_ns = wall_ns
        self._resolve_stale(wall_ns, "record")

    def on_heartbeat(self, wall_ns: int) -> None:
        """A gateway heartbeat arrived: the connection is alive even if the market is quiet."""
        self.last_heartbeat_ns = wall_ns
        self._resolve_stale(wall_ns, "heartbeat")

    def on_stall(self, start_wall_ns: int, end_wall_ns: int, buffered_bytes: int) -> list[Incident]:
        """Backpressure held the reader from ``start`` to ``end`` with this many bytes queued.

        A stall is over when it is reported, so its row (if it is long enough to be one) is
        returned at once, already resolved, rather than waiting for the next ``check``.
        """
        length = end_wall_ns - start_wall_ns
        if length <= self.stall_warn_ns:
            return []
        severity: Severity = "critical" if length >= self.stall_critical_ns else "warning"
        return [
            Incident(
                kind="consumer_stall",
                state="resolved",
                opened_ns=start_wall_ns,
                resolved_ns=end_wall_ns,
                detail=(
                    f"consumer blocked the feed reader for {length / NS:.3f} s "
                    f"with {buffered_bytes} bytes buffered"
                ),
                severity=severity,
            )
        ]

    # --- the tick --------------------------------------------------------------------------
    def check(self, wall_ns: int, in_session: bool) -> list[Incident]:
        """``feed_stale`` rows since the last check: a resolution and/or a newly opened episode."""
        if not in_session:
            self._session_since_ns = None
            if self._stale is not None:
                self._close(wall_ns, "session ended while the feed was silent")
        else:
            if self._session_since_ns is None:
                self._session_since_ns = wall_ns
            if self._stale is None:
                since, seen = self._session_since_ns, self.last_seen_ns
                reference = since if seen is None else max(seen, since)
                stale_at = reference + self.stale_after_ns
                if wall_ns > stale_at:
                    last = "never" if self.last_seen_ns is None else f"at {self.last_seen_ns}"
                    self._stale = Incident(
                        kind="feed_stale",
                        state="open",
                        opened_ns=stale_at,
                        resolved_ns=None,
                        detail=(
                            f"no record or heartbeat for more than {self.stale_after_ns / NS:g} s "
                            f"in session (last {last})"
                        ),
                        severity="critical",
                    )
                    self._pending.append(self._stale)
        rows, self._pending = self._pending, []
        return rows

    # --- state -----------------------------------------------------------------------------
    @property
    def last_seen_ns(self) -> int | None:
        seen = [t for t in (self.last_record_ns, self.last_heartbeat_ns) if t is not None]
        return max(seen) if seen else None

    @property
    def open_incident(self) -> Incident | None:
        """The feed_stale episode in progress, if any (for /healthz and the dashboard)."""
        return self._stale

    def _resolve_stale(self, wall_ns: int, what: str) -> None:
        if self._stale is not None:
            self._close(wall_ns, f"{what} received")

    def _close(self, wall_ns: int, why: str) -> None:
        opened = self._stale
        assert opened is not None
        self._stale = None
        self._pending.append(
            Incident(
                kind=opened.kind,
                state="resolved",
                opened_ns=opened.opened_ns,
                resolved_ns=max(wall_ns, opened.opened_ns),
                detail=f"{opened.detail}; {why}",
                severity=opened.severity,
            )
        )


# --- latency (docs/operations.md §Health, SLIs and alerts)
# ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignalLatency:
    """The four instants stored with every signal, and the SLIs derived from them."""

    ts_event: int  # exchange event time of the triggering record
    ts_recv: int  # Databento capture time
    local_recv_ns: int  # when our process received the record
    emit_ns: int  # when the signal was emitted

    @property
    def decision_latency_ns(self) -> int:
        """The platform's own budget (SLO p95 < 100 ms): emit − local receive."""
        return self.emit_ns - self.local_recv_ns

    @property
    def feed_latency_ns(self) -> int:
        """Network and gateway: local receive − Databento capture."""
        return self.local_recv_ns - self.ts_recv

    @property
    def exchange_to_signal_ns(self) -> int:
        """Reported, not budgeted: emit − exchange event time."""
        return self.emit_ns - self.ts_event


class LatencyHistogram:
    """Nanosecond latency samples in a bounded ring buffer, with percentiles.

    A ring buffer and numpy percentiles rather than an HDR histogram: ``hdrhistogram`` is not a
    dependency, and at one sample per signal (or per batch) the newest ``capacity`` samples are
    exact and cheap. Percentiles interpolate linearly (the reference's definition). Samples may be
    recorded with the wall time they were taken so that a rolling window can be cut
    (``values_since``), which is what the docs/operations.md §Health, SLIs and alerts alert runs on.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self._values = np.zeros(capacity, dtype=np.int64)
        self._at = np.zeros(capacity, dtype=np.int64)
        self._next = 0
        self.total = 0  # samples ever recorded, including those overwritten

    def record(self, value_ns: int, at_ns: int = 0) -> None:
        self._values[self._next] = value_ns
        self._at[self._next] = at_ns
        self._next = (self._next + 1) % self.capacity
        self.total += 1

    def record_many(self, values_ns: Sequence[int] | np.ndarray, at_ns: int = 0) -> None:
        arr = np.asarray(values_ns, dtype=np.int64)
        self.total += max(arr.size - self.capacity, 0)
        arr = arr[-self.capacity :]
        # At most two slices: up to the end of the ring, then wrapping to its start.
        first = min(arr.size, self.capacity - self._next)
        self._values[self._next : self._next + first] = arr[:first]
        self._at[self._next : self._next + first] = at_ns
        rest = arr.size - first
        self._values[:rest] = arr[first:]
        self._at[:rest] = at_ns
        self._next = (self._next + arr.size) % self.capacity
        self.total += arr.size

    @property
    def count(self) -> int:
        """Samples held (at most ``capacity``)."""
        return min(self.total, self.capacity)

    def values(self) -> np.ndarray:
        """Held samples, oldest first."""
        if self.total <= self.capacity:
            return self._values[: self.total].copy()
        return np.concatenate([self._values[self._next :], self._values[: self._next]])

    def values_since(self, since_ns: int) -> np.ndarray:
        """Held samples recorded at or after ``since_ns`` (a rolling window), oldest first."""
        if self.total <= self.capacity:
            vals, at = self._values[: self.total], self._at[: self.total]
        else:
            order = np.r_[self._next : self.capacity, 0 : self._next]
            vals, at = self._values[order], self._at[order]
        return vals[at >= since_ns].copy()

    def percentile(self, q: float) -> float | None:
        if self.count == 0:
            return None
        return float(np.percentile(self.values(), q, method="linear"))

    @property
    def p50(self) -> float | None:
        return self.percentile(50)

    @property
    def p95(self) -> float | None:
        return self.percentile(95)

    @property
    def p99(self) -> float | None:
        return self.percentile(99)

    @property
    def max(self) -> int | None:
        return int(self.values().max()) if self.count else None

    def summary(self) -> dict[str, float | int | None]:
        return {
            "count": self.count,
            "p50": self.p50,
            "p95": self.p95,
            "p99": self.p99,
            "max": self.max,
        }


# --- uptime (docs/operations.md §Health, SLIs and alerts)
# -------------------------------------------------------------------------------
def rth_minutes(trade_date: dt.date) -> list[int]:
    """Start (ns UTC) of every RTH minute of ``trade_date``; empty on a holiday.

    RTH comes from the session controller, so an early close shortens the day and a holiday has
    no minutes at all (it is excluded from the SLO, not counted as up).
    """
    period = streaming_period(trade_date, SessionPolicy.RTH_ONLY)
    if period is None:
        return []
    return list(range(period.open_ns, period.open_ns + period.minutes * MINUTE_NS, MINUTE_NS))


def bad_minutes(bad_intervals_ns: Iterable[tuple[int, int]], trade_date: dt.date) -> list[int]:
    """RTH minutes of ``trade_date`` that overlap any bad interval ``[start, end)``.

    A minute is good only if every condition held throughout it (docs/operations.md §Health, SLIs
    and alerts), so any overlap makes the whole minute bad.
    """
    minutes = rth_minutes(trade_date)
    if not minutes:
        return []
    first, end = minutes[0], minutes[-1] + MINUTE_NS
    bad: set[int] = set()
    for start, stop in bad_intervals_ns:
        start, stop = max(start, first), min(stop, end)
        if stop <= start:
            continue
        m = first + (start - first) // MINUTE_NS * MINUTE_NS
        while m < stop:
            bad.add(m)
            m += MINUTE_NS
    return sorted(bad)


def uptime_minutes(
    bad_intervals_ns: Iterable[tuple[int, int]], trade_date: dt.date
) -> tuple[int, int, float | None]:
    """``(good_minutes, total_minutes, pct)`` over the RTH minutes of ``trade_date``.

    ``pct`` is None on a day with no RTH (holiday): such days are excluded from the SLO, so
    monthly uptime is Σ good / Σ total over the days, not a mean of daily percentages.
    """
    total = len(rth_minutes(trade_date))
    if total == 0:
        return 0, 0, None
    good = total - len(bad_minutes(bad_intervals_ns, trade_date))
    return good, total, 100.0 * good / total
