"""Circuit breakers and the retry policy for every outside dependency.

One ``Breaker`` per dependency (live feed, Historical API, warehouse writer, broker, each
detector) with explicit, tested rules; one tenacity retry policy (``retrying_reads``) for
idempotent reads; orders go through ``guarded_write_once`` and are never retried. pybreaker holds
the state; the rate and latency trips, the injected clock, the doubling cool-down, ``exclude`` and
the probe slot are this module's. The rules, and why pybreaker is used this way:
docs/operations.md §Breakers and retries. No Prefect, Great Expectations or warehouse imports:
detectors and the live runner use it too.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar

import pybreaker
import tenacity

from ifd_core.settings import BreakerSettings, RetrySettings

__all__ = [
    "CLOSED",
    "HALF_OPEN",
    "OPEN",
    "Breaker",
    "BreakerOpen",
    "BreakerRegistry",
    "Transition",
    "guarded_read",
    "guarded_write_once",
    "retrying_reads",
]

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

# pybreaker spells half-open with a hyphen; our names are identifiers (metrics labels, JSON keys).
_FROM_PYBREAKER = {
    pybreaker.STATE_CLOSED: CLOSED,
    pybreaker.STATE_OPEN: OPEN,
    pybreaker.STATE_HALF_OPEN: HALF_OPEN,
}


class BreakerOpen(RuntimeError):
    """Raised instead of calling a dependency whose breaker is open (or half-open and busy).

    Carries the dependency, why the breaker opened and when it will next let a probe through, so
    that a log line or an alert is actionable without looking anything up.
    """

    def __init__(
        self,
        breaker: str,
        reason: str,
        retry_at: datetime | None,
        state: str = OPEN,
    ) -> None:
        self.breaker = breaker
        self.reason = reason
        self.retry_at = retry_at
        self.state = state
        if state == HALF_OPEN:
            when = "a probe is in flight; next probe once it has finished"
        elif retry_at is None:
            when = "next probe time unknown"
        else:
            when = f"next probe at {retry_at.isoformat(timespec='seconds')}"
        super().__init__(f"{breaker}: circuit {state} because {reason}; {when}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Prefect and multiprocessing pickle exceptions; the default would call cls(message).
        return (self.__class__, (self.breaker, self.reason, self.retry_at, self.state))


@dataclass(frozen=True)
class Transition:
    """One state change of one breaker: feeds incidents, alerts and the rollout controller."""

    breaker: str
    from_state: str
    to_state: str
    reason: str
    at: datetime
    cooldown_s: float


@dataclass(frozen=True)
class _Ticket:
    """What a call was admitted under: outcomes of calls admitted under another state are void."""

    generation: int
    probe: bool


class _ReplayedFailure(Exception):
    """Stands in for the real error when an outcome is replayed into pybreaker.

    Re-raising the caller's own exception inside pybreaker would graft pybreaker's frames onto its
    traceback; the real error is kept aside for the transition reason instead.
    """


def _succeed() -> None:
    return None


def _fail() -> None:
    raise _ReplayedFailure


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "error not given"
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= 200 else text[:197] + "..."


class _Relay(pybreaker.CircuitBreakerListener):
    """Forwards pybreaker's state changes to the owning ``Breaker``, the one place they are seen."""

    def __init__(self, owner: Breaker) -> None:
        self._owner = owner

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        old = _FROM_PYBREAKER[old_state.name] if old_state is not None else CLOSED
        self._owner._on_state_change(old, _FROM_PYBREAKER[new_state.name])


def _check(settings: BreakerSettings) -> None:
    # pydantic validates types only; a zero or inverted threshold would silently disable a trip.
    if settings.consecutive_failures < 1 or settings.half_open_successes < 1:
        raise ValueError("consecutive_failures and half_open_successes must be >= 1")
    if not 1 <= settings.rate_min_calls <= settings.rate_window_calls:
        raise ValueError("need 1 <= rate_min_calls <= rate_window_calls")
    if not 0 < settings.cooldown_s <= settings.cooldown_max_s:
        raise ValueError("need 0 < cooldown_s <= cooldown_max_s")


class Breaker:
    """The circuit breaker of one dependency; thread-safe, no lock held while the dependency runs.

    Use ``call`` to wrap a call. Callers that cannot wrap (a detector invoked by an engine) use
    ``allow`` and then exactly one ``record`` per True: the pair is matched per thread, so a probe
    slot claimed by ``allow`` is held until that thread records (a missing ``record`` after a
    half-open ``allow`` keeps every other caller rejected). A ``record`` from a thread that did
    not call ``allow`` is attributed to the current state.
    """

    def __init__(
        self,
        name: str,
        settings: BreakerSettings,
        *,
        on_change: Callable[[Transition], None] | None = None,
        exclude: tuple[type[BaseException], ...] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check(settings)
        self.name = name
        self.settings = settings
        self.exclude = tuple(exclude)
        self._on_change = on_change
        self._clock = clock
        # Lock order: _emit_lock before _lock (transitions are emitted outside _lock so that a
        # sink may read the breaker, and in order, whichever thread emits them).
        self._lock = threading.RLock()
        self._emit_lock = threading.RLock()
        self._local = threading.local()
        self._pending: list[Transition] = []
        self._state = CLOSED
        self._generation = 0
        self._window: deque[tuple[bool, float]] = deque(maxlen=settings.rate_window_calls)
        # Re-trips since the breaker last closed (the cool-down exponent); a trip from closed
        # resets it to 0.
        self._retrips = 0
        self._cooldown_s = 0.0
        self._opened_mono: float | None = None
        self._opened_at: datetime | None = None
        self._open_reason: str | None = None
        self._probe_in_flight = False
        self._trips = 0
        self._next_reason: str | None = None
        self._last_error: BaseException | None = None
        self._cb = pybreaker.CircuitBreaker(
            fail_max=settings.consecutive_failures,
            reset_timeout=settings.cooldown_s,
            success_threshold=settings.half_open_successes,
            listeners=[_Relay(self)],
            name=name,
            throw_new_error_on_trip=False,
        )

    # ----------------------------------------------------------------------------- public API

    @property
    def state(self) -> str:
        """ "closed" | "open" | "half_open"; a plain read, no transition (docs/operations.md)."""
        return self._state

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` if the breaker admits it, and count its outcome and latency.

        Raises ``BreakerOpen`` without calling ``fn`` when rejected; otherwise returns or raises
        what ``fn`` does, unchanged.
        """
        ticket = self._admit_or_raise()
        start = self._clock()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            latency = self._clock() - start
            if isinstance(exc, self.exclude):
                self._abandon(ticket)
            else:
                self._settle(ticket, False, latency, exc)
            raise
        except BaseException:
            self._abandon(ticket)
            raise
        self._settle(ticket, True, self._clock() - start, None)
        return result

    def allow(self) -> bool:
        """True if a call may go ahead now; in half-open this claims the single probe slot."""
        try:
            ticket = self._admit()
        finally:
            self._flush()
        self._local.ticket = ticket
        return ticket is not None

    def record(self, ok: bool, latency_s: float, error: BaseException | None = None) -> None:
        """Report the outcome of a call that ``allow`` let through (same thread, once per True).

        An ``error`` in ``exclude`` or a non-``Exception`` BaseException is not counted.
        """
        ticket: _Ticket | None = getattr(self._local, "ticket", None)
        self._local.ticket = None
        if ticket is None:
            with self._lock:
                probe = self._state == HALF_OPEN and self._probe_in_flight
                ticket = _Ticket(self._generation, probe)
        if (
            not ok
            and error is not None
            and (isinstance(error, self.exclude) or not isinstance(error, Exception))
        ):
            self._abandon(ticket)
            return
        self._settle(ticket, ok, latency_s, error)

    def snapshot(self) -> dict[str, Any]:
        """Everything a dashboard or the rollout controller needs, read consistently under the lock.

        Keys beyond the agreed ones: ``reason`` (why it opened; None when closed) and
        ``probe_in_flight``.
        """
        with self._lock:
            n = len(self._window)
            failures = sum(1 for ok, _ in self._window if not ok)
            return {
                "name": self.name,
                "state": self._state,
                "consecutive_failures": self._cb.fail_counter,
                "window_calls": n,
                "window_failure_rate": failures / n if n else None,
                "p95_ms": self._p95_ms(),
                "opened_at": self._opened_at,
                "retry_at": self._retry_at(),
                "cooldown_s": self._cooldown_s,
                "trips": self._trips,
                "reason": self._open_reason,
                "probe_in_flight": self._probe_in_flight,
            }

    def reset(self) -> None:
        """Operator override: force closed, clear the window and the cool-down doubling.

        Emits a Transition even when already closed, so the operator action is on record.
        """
        try:
            with self._lock:
                self._next_reason = "reset by operator"
                self._cb.close()
        finally:
            self._flush()

    # ------------------------------------------------------------------------------ internals

    def _admit(self) -> _Ticket | None:
        with self._lock:
            if self._state == CLOSED:
                return _Ticket(self._generation, False)
            if self._state == OPEN:
                if (
                    self._opened_mono is None
                    or self._clock() < self._opened_mono + self._cooldown_s
                ):
                    return None
                self._next_reason = f"cool-down of {self._cooldown_s:g} s elapsed"
                self._cb.half_open()
            if self._probe_in_flight:
                return None
            self._probe_in_flight = True
            return _Ticket(self._generation, True)

    def _admit_or_raise(self) -> _Ticket:
        try:
            ticket = self._admit()
            if ticket is None:
                with self._lock:
                    raise BreakerOpen(
                        self.name,
                        self._open_reason or "unknown",
                        self._retry_at(),
                        self._state,
                    )
            return ticket
        finally:
            self._flush()

    def _abandon(self, ticket: _Ticket) -> None:
        """An uncounted outcome: give the probe slot back so another caller can probe."""
        with self._lock:
            if ticket.probe and ticket.generation == self._generation:
                self._probe_in_flight = False

    def _settle(
        self, ticket: _Ticket, ok: bool, latency_s: float, error: BaseException | None
    ) -> None:
        try:
            with self._lock:
                if ticket.generation != self._generation:
                    return  # admitted under an earlier state: says nothing about now
                if self._state == OPEN or (self._state == HALF_OPEN and not ticket.probe):
                    return  # a stray record(): nothing was admitted in this state
                if ticket.probe:
                    self._probe_in_flight = False
                if self._state == CLOSED:
                    self._window.append((ok, max(0.0, latency_s)))
                self._last_error = error
                # pybreaker's rules decide: consecutive failures, probe outcome.
                with contextlib.suppress(_ReplayedFailure):
                    self._cb.call(_succeed if ok else _fail)
                if self._state == CLOSED:
                    reason = self._window_trip()
                    if reason is not None:
                        self._next_reason = reason
                        self._cb.open()
        finally:
            self._flush()

    def _window_trip(self) -> str | None:
        s = self.settings
        n = len(self._window)
        if n < s.rate_min_calls:
            return None
        rate = sum(1 for ok, _ in self._window if not ok) / n
        if rate >= s.failure_rate:
            return f"failure rate {rate * 100:.0f} % over the last {n} calls"
        p95 = self._p95_ms()
        if p95 is not None and p95 > s.latency_p95_ms:
            return f"p95 latency {p95:.0f} ms > {s.latency_p95_ms:.0f} ms over the last {n} calls"
        return None

    def _p95_ms(self) -> float | None:
        n = len(self._window)
        if n < self.settings.rate_min_calls:
            return None
        latencies = sorted(latency for _, latency in self._window)
        rank = (95 * n + 99) // 100  # nearest rank, ceil(0.95 n), in integers (no float edge)
        return latencies[rank - 1] * 1000.0

    def _retry_at(self) -> datetime | None:
        if self._state != OPEN or self._opened_at is None:
            return None
        return self._opened_at + timedelta(seconds=self._cooldown_s)

    def _on_state_change(self, old: str, new: str) -> None:
        """Called by pybreaker (through ``_Relay``) under our lock, for every transition."""
        reason = self._next_reason or self._default_reason(old, new)
        self._next_reason = None
        s = self.settings
        if new == OPEN:
            self._retrips = self._retrips + 1 if old == HALF_OPEN else 0
            self._cooldown_s = min(s.cooldown_max_s, s.cooldown_s * 2**self._retrips)
            self._cb.reset_timeout = self._cooldown_s
            self._opened_mono = self._clock()
            self._opened_at = datetime.now(UTC)
            self._open_reason = reason
            self._trips += 1
        elif new == CLOSED:
            self._cooldown_s = 0.0
            self._cb.reset_timeout = s.cooldown_s
            self._opened_mono = None
            self._opened_at = None
            self._open_reason = None
            self._window.clear()
        self._state = new
        self._generation += 1
        self._probe_in_flight = False
        self._pending.append(
            Transition(self.name, old, new, reason, datetime.now(UTC), self._cooldown_s)
        )

    def _default_reason(self, old: str, new: str) -> str:
        # Transitions decided by pybreaker's own rules; ours set _next_reason beforehand.
        if old == CLOSED and new == OPEN:
            return (
                f"{self._cb.fail_counter} consecutive failures "
                f"(last: {_describe(self._last_error)})"
            )
        if old == HALF_OPEN and new == OPEN:
            return f"probe failed: {_describe(self._last_error)}"
        if old == HALF_OPEN and new == CLOSED:
            return f"{self.settings.half_open_successes} probe successes"
        return f"{old} -> {new}"

    def _flush(self) -> None:
        """Emit pending transitions outside the state lock, in order, and log them."""
        with self._emit_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            for t in batch:
                level = logging.WARNING if t.to_state == OPEN else logging.INFO
                log.log(
                    level,
                    "breaker %s: %s -> %s (%s)",
                    t.breaker,
                    t.from_state,
                    t.to_state,
                    t.reason,
                )
                if self._on_change is None:
                    continue
                try:
                    self._on_change(t)
                except Exception:
                    # A broken sink must not turn a dependency call into a failure.
                    log.exception("breaker %s: on_change sink failed", t.breaker)


class BreakerRegistry:
    """One breaker per dependency name per process, same settings, one on_change sink."""

    def __init__(
        self,
        settings: BreakerSettings,
        on_change: Callable[[Transition], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check(settings)
        self.settings = settings
        self._on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self._breakers: dict[str, Breaker] = {}

    def get(self, name: str, *, exclude: tuple[type[BaseException], ...] = ()) -> Breaker:
        """The breaker of ``name``, created on first use.

        The first caller fixes ``exclude``; a later caller may pass none (it gets the breaker as
        is), but a different non-empty ``exclude`` is a ValueError: two call sites disagreeing on
        what a dependency failure is would make the breaker's counts depend on who called first.
        """
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is None:
                breaker = Breaker(
                    name,
                    self.settings,
                    on_change=self._on_change,
                    exclude=exclude,
                    clock=self._clock,
                )
                self._breakers[name] = breaker
            elif exclude and set(exclude) != set(breaker.exclude):
                raise ValueError(
                    f"breaker {name!r} exists with exclude={breaker.exclude!r}, got {exclude!r}"
                )
            return breaker

    def snapshot(self) -> list[dict[str, Any]]:
        """Snapshots of all breakers, sorted by name."""
        with self._lock:
            breakers = sorted(self._breakers.values(), key=lambda b: b.name)
        return [b.snapshot() for b in breakers]

    def any_open(self, prefix: str = "") -> list[str]:
        """Names (sorted) of breakers not closed whose name starts with ``prefix``."""
        with self._lock:
            breakers = list(self._breakers.values())
        return sorted(b.name for b in breakers if b.name.startswith(prefix) and b.state != CLOSED)


def retrying_reads(
    settings: RetrySettings,
    *,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    sleep: Callable[[float], None] = time.sleep,
    before_sleep: Callable[[int, float, BaseException], None] | None = None,
) -> tenacity.Retrying:
    """The retry policy for idempotent reads: full jitter, at most ``max_attempts``, reraise.

    ``before_sleep(attempt, delay_s, error)`` gets the 1-based number of the attempt that just
    failed. ``BreakerOpen`` is never retried: while a breaker is open, waiting inside a read only
    delays the caller's fallback. A ``Retrying`` may be shared between threads (tenacity keeps
    per-call state per call).
    """
    hook: Callable[[tenacity.RetryCallState], None] | None = None
    if before_sleep is not None:
        callback = before_sleep

        def hook(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            assert error is not None  # tenacity sleeps only after a failed attempt here
            callback(state.attempt_number, state.upcoming_sleep, error)

    return tenacity.Retrying(
        sleep=sleep,
        stop=tenacity.stop_after_attempt(settings.max_attempts),
        wait=tenacity.wait_random_exponential(multiplier=settings.base_s, max=settings.cap_s),
        retry=tenacity.retry_if_exception_type(retry_on)
        & tenacity.retry_if_not_exception_type(BreakerOpen),
        before_sleep=hook,
        reraise=True,
    )


def guarded_read(
    breaker: Breaker,
    retrying: tenacity.Retrying,
    fn: Callable[P, T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """An idempotent read: each attempt goes through ``breaker.call``, retried per ``retrying``.

    An open breaker ends the loop at once (``BreakerOpen`` is raised, no sleep). Exceptions in the
    breaker's ``exclude`` are not retried either: a bad request fails the same way every time.
    """
    if breaker.exclude:
        retrying = retrying.copy(
            retry=retrying.retry & tenacity.retry_if_not_exception_type(breaker.exclude)
        )
    return retrying(breaker.call, fn, *args, **kwargs)


def guarded_write_once(
    breaker: Breaker, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """A non-idempotent action (order placement): one attempt through the breaker, never retried.

    A retried order whose first attempt timed out after reaching the broker is a second order;
    the caller must reconcile (query the broker) before deciding to place it again.
    """
    return breaker.call(fn, *args, **kwargs)


@dataclass
class ErrorWindow:
    """Windows scored and windows failed by the challenger over the last ``span_ns`` of data time.

    Exchange time, not wall time, so a replayed day trips exactly where the live day would.
    """

    span_ns: int
    _events: deque = field(default_factory=deque)  # (data_ts, windows, failed)
    windows: int = 0
    failed: int = 0

    def add(self, data_ts: int, windows: int, failed: int) -> None:
        self._events.append((data_ts, windows, failed))
        self.windows += windows
        self.failed += failed
        self._trim(data_ts)

    def _trim(self, now: int) -> None:
        while self._events and self._events[0][0] <= now - self.span_ns:
            _, w, f = self._events.popleft()
            self.windows -= w
            self.failed -= f

    def rate(self) -> float | None:
        return self.failed / self.windows if self.windows else None
