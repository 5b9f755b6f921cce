"""Circuit breakers and retry policy (docs/operations.md §Breakers and retries, plus edge cases).

Time is an injected fake monotonic clock, so cool-downs of minutes take no time; threads are
used only where the claim is about concurrency (single probe, no lock held during a call).
"""

from __future__ import annotations

import pickle
import random
import threading
from datetime import UTC, timedelta

import pytest

from ifd_core.ops.resilience import (
    Breaker,
    BreakerOpen,
    BreakerRegistry,
    Transition,
    guarded_read,
    guarded_write_once,
    retrying_reads,
)
from ifd_core.settings import BreakerSettings, RetrySettings, Settings

WAIT = 2.0  # generous bound on Event waits; a passing run never waits this long


class Clock:
    """Fake monotonic clock."""

    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Dependency:
    """Counts invocations, so 'rejected without invoking the dependency' is checkable."""

    def __init__(self, clock: Clock | None = None, latency_s: float = 0.0) -> None:
        self.calls = 0
        self.clock = clock
        self.latency_s = latency_s

    def _tick(self) -> None:
        self.calls += 1
        if self.clock is not None:
            self.clock.advance(self.latency_s)

    def ok(self) -> str:
        self._tick()
        return "ok"

    def fail(self) -> str:
        self._tick()
        raise ConnectionError(f"boom {self.calls}")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def events() -> list[Transition]:
    return []


@pytest.fixture
def settings() -> BreakerSettings:
    return Settings().resilience.breaker


@pytest.fixture
def breaker(settings, clock, events) -> Breaker:
    return Breaker("databento_historical", settings, on_change=events.append, clock=clock)


@pytest.fixture
def seeded_random():
    state = random.getstate()
    random.seed(20240611)
    yield
    random.setstate(state)


def run(breaker: Breaker, fn) -> str:
    """Call through the breaker, returning 'ok', 'fail' or 'rejected'."""
    try:
        breaker.call(fn)
    except BreakerOpen:
        return "rejected"
    except ConnectionError:
        return "fail"
    return "ok"


def trip(breaker: Breaker, dep: Dependency) -> None:
    for _ in range(3):
        run(breaker, dep.fail)
    assert breaker.state == "open"


def feed(breaker: Breaker, dep: Dependency, pattern: str) -> None:
    for c in pattern:
        run(breaker, dep.ok if c == "S" else dep.fail)


def pairs(events: list[Transition]) -> list[tuple[str, str]]:
    return [(t.from_state, t.to_state) for t in events]


# --------------------------------------------------------------------------- consecutive failures


def test_three_consecutive_failures_open_and_reject_without_invoking(breaker):
    dep = Dependency()
    assert [run(breaker, dep.fail) for _ in range(2)] == ["fail", "fail"]
    assert breaker.state == "closed"
    assert run(breaker, dep.fail) == "fail"  # the 3rd failure itself still raises its own error
    assert breaker.state == "open"
    assert dep.calls == 3
    for _ in range(5):
        with pytest.raises(BreakerOpen):
            breaker.call(dep.ok)
    assert dep.calls == 3


def test_success_resets_the_consecutive_count(breaker):
    dep = Dependency()
    feed(breaker, dep, "FFSFFS")
    assert breaker.state == "closed"
    assert breaker.snapshot()["consecutive_failures"] == 0


def test_breaker_open_names_dependency_reason_and_next_probe(breaker):
    dep = Dependency()
    trip(breaker, dep)
    with pytest.raises(BreakerOpen) as info:
        breaker.call(dep.ok)
    err = info.value
    snap = breaker.snapshot()
    assert err.breaker == "databento_historical"
    assert err.retry_at == snap["retry_at"] == snap["opened_at"] + timedelta(seconds=30)
    assert err.retry_at.tzinfo is UTC
    msg = str(err)
    assert "databento_historical" in msg
    assert "3 consecutive failures" in msg and "ConnectionError: boom 3" in msg
    assert "next probe at" in msg
    again = pickle.loads(pickle.dumps(err))
    assert (again.breaker, again.retry_at, str(again)) == (err.breaker, err.retry_at, msg)


# ---------------------------------------------------------------------------------- half-open


def test_probe_after_cooldown_then_two_successes_close(breaker, clock):
    dep = Dependency()
    trip(breaker, dep)
    clock.advance(29.9)
    assert run(breaker, dep.ok) == "rejected"
    assert breaker.state == "open"  # elapsed or not, reading the state never transitions
    clock.advance(0.1)
    assert breaker.state == "open"
    assert run(breaker, dep.ok) == "ok"  # probe 1
    assert breaker.state == "half_open"
    assert run(breaker, dep.ok) == "ok"  # probe 2
    assert breaker.state == "closed"
    assert dep.calls == 5


def test_second_caller_rejected_while_probe_runs(breaker, clock):
    dep = Dependency()
    trip(breaker, dep)
    clock.advance(30)
    started, release = threading.Event(), threading.Event()
    other = Dependency()

    def slow_probe() -> str:
        started.set()
        assert release.wait(WAIT)
        return "probed"

    results: list[str] = []
    probe = threading.Thread(target=lambda: results.append(breaker.call(slow_probe)))
    probe.start()
    assert started.wait(WAIT)
    assert breaker.state == "half_open"
    with pytest.raises(BreakerOpen) as info:
        breaker.call(other.ok)  # not blocked on a lock: rejected at once
    assert info.value.retry_at is None and "probe is in flight" in str(info.value)
    assert not breaker.allow()
    assert other.calls == 0
    release.set()
    probe.join(WAIT)
    assert results == ["probed"]
    assert breaker.state == "half_open"  # 1 of 2 probe successes
    assert run(breaker, other.ok) == "ok"
    assert breaker.state == "closed"


def test_probe_failure_doubles_cooldown_to_cap_and_close_resets_it(breaker, clock, events):
    dep = Dependency()
    trip(breaker, dep)
    seen = [breaker.snapshot()["cooldown_s"]]
    for _ in range(5):
        cooldown = breaker.snapshot()["cooldown_s"]
        clock.advance(cooldown - 0.01)
        assert run(breaker, dep.ok) == "rejected"
        clock.advance(0.01)
        assert run(breaker, dep.fail) == "fail"  # the probe
        assert breaker.state == "open"
        seen.append(breaker.snapshot()["cooldown_s"])
    assert seen == [30, 60, 120, 240, 300, 300]
    clock.advance(300)
    feed(breaker, dep, "SS")
    assert breaker.state == "closed"
    assert breaker.snapshot()["cooldown_s"] == 0
    trip(breaker, dep)
    assert breaker.snapshot()["cooldown_s"] == 30
    assert breaker.snapshot()["trips"] == 7
    assert [t.cooldown_s for t in events if t.to_state == "open"] == [
        30,
        60,
        120,
        240,
        300,
        300,
        30,
    ]


def test_probe_success_then_failure_reopens_with_doubled_cooldown(breaker, clock):
    dep = Dependency()
    trip(breaker, dep)
    clock.advance(30)
    feed(breaker, dep, "SF")
    assert breaker.state == "open"
    assert breaker.snapshot()["cooldown_s"] == 60


def test_late_success_from_before_the_trip_is_not_a_probe(breaker, clock):
    dep = Dependency()
    started, release = threading.Event(), threading.Event()

    def slow_read() -> str:
        started.set()
        assert release.wait(WAIT)
        return "late"

    late = threading.Thread(target=lambda: breaker.call(slow_read))
    late.start()
    assert started.wait(WAIT)  # admitted while closed
    trip(breaker, dep)
    clock.advance(30)
    assert breaker.allow()  # this thread now holds the probe slot
    release.set()
    late.join(WAIT)  # the late success must neither close nor free the slot
    assert breaker.state == "half_open"
    assert breaker.snapshot()["probe_in_flight"] is True
    breaker.record(True, 0.01)
    assert breaker.state == "half_open"  # only 1 probe success counted
    assert breaker.snapshot()["probe_in_flight"] is False


def test_late_failure_after_recovery_is_not_counted(breaker, clock):
    # Admitted before the outage, finishing after the breaker has closed again: it must not
    # count against the fresh closed state.
    dep = Dependency()
    started, release = threading.Event(), threading.Event()

    def slow_read() -> str:
        started.set()
        assert release.wait(WAIT)
        raise ConnectionError("late")

    late = threading.Thread(target=lambda: run(breaker, slow_read))
    late.start()
    assert started.wait(WAIT)
    trip(breaker, dep)
    clock.advance(30)
    feed(breaker, dep, "SS")
    assert breaker.state == "closed"
    release.set()
    late.join(WAIT)
    snap = breaker.snapshot()
    assert snap["window_calls"] == 0 and snap["consecutive_failures"] == 0


def test_calls_are_not_serialized_while_closed(breaker):
    # pybreaker.call would hold its lock for the whole call; this breaker must not.
    barrier = threading.Barrier(2, timeout=WAIT)
    results: list[int] = []

    def meet() -> int:
        return barrier.wait()  # both calls must be inside fn at the same time

    threads = [threading.Thread(target=lambda: results.append(breaker.call(meet))) for _ in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert sorted(results) == [0, 1]


# ------------------------------------------------------------------------------ failure rate


def test_six_failures_in_ten_calls_open_by_rate(breaker, events):
    dep = Dependency()
    feed(breaker, dep, "FFSFFSFSFS")  # never 3 in a row
    assert breaker.state == "open"
    assert events[-1].reason == "failure rate 60 % over the last 10 calls"


def test_six_failures_in_nine_calls_stay_closed(breaker):
    dep = Dependency()
    feed(breaker, dep, "FFSFFSFFS")
    assert breaker.state == "closed"
    snap = breaker.snapshot()
    assert snap["window_calls"] == 9
    assert snap["window_failure_rate"] == pytest.approx(6 / 9)


def test_rate_is_over_the_last_twenty_calls_only(breaker, events):
    dep = Dependency()
    feed(breaker, dep, "S" * 30)
    feed(breaker, dep, "FFSFFSFFSFFSF")  # 9 failures in the last 20 calls
    assert breaker.state == "closed"
    assert breaker.snapshot()["window_calls"] == 20
    feed(breaker, dep, "F")  # 10 in the last 20 (all-time: 10 of 44, 23 %)
    assert breaker.state == "open"
    assert events[-1].reason == "failure rate 50 % over the last 20 calls"


def test_window_is_cleared_when_the_breaker_closes(breaker, clock):
    dep = Dependency()
    feed(breaker, dep, "FFSFFSFSFS")
    clock.advance(30)
    feed(breaker, dep, "SS")
    assert breaker.state == "closed"
    assert breaker.snapshot()["window_calls"] == 0
    feed(breaker, dep, "F")  # old failures would make this 7 of 11
    assert breaker.state == "closed"


# ---------------------------------------------------------------------------------- latency


def test_p95_latency_over_threshold_opens_via_clock(settings, clock, events):
    breaker = Breaker("feed", settings, on_change=events.append, clock=clock)
    slow = Dependency(clock, latency_s=6.1)
    feed(breaker, slow, "S" * 9)
    assert breaker.state == "closed"  # fewer than 10 samples
    assert breaker.snapshot()["p95_ms"] is None
    feed(breaker, slow, "S")
    assert breaker.state == "open"
    assert events[-1].reason.startswith("p95 latency 6100 ms > 5000 ms")


def test_p95_latency_via_record(breaker, events):
    for _ in range(10):
        assert breaker.allow()
        breaker.record(True, 5.2)
    assert breaker.state == "open"
    assert "p95 latency 5200 ms > 5000 ms" in events[-1].reason


def test_p95_is_nearest_rank_one_outlier_in_twenty_does_not_trip(breaker):
    for latency in [0.1] * 19 + [100.0]:
        assert breaker.allow()
        breaker.record(True, latency)
    assert breaker.state == "closed"
    assert breaker.snapshot()["p95_ms"] == pytest.approx(100.0)
    assert breaker.allow()
    breaker.record(True, 100.0)  # 2 of 20 slow: p95 is now a slow call
    assert breaker.state == "open"


# ------------------------------------------------------------------- exclusions, BaseException


def test_excluded_exceptions_pass_through_uncounted(settings, clock):
    breaker = Breaker("broker", settings, exclude=(ValueError,), clock=clock)

    def bad_request() -> None:
        raise ValueError("bad strike")

    for _ in range(12):
        with pytest.raises(ValueError, match="bad strike"):
            breaker.call(bad_request)
    snap = breaker.snapshot()
    assert snap["state"] == "closed"
    assert snap["window_calls"] == 0 and snap["consecutive_failures"] == 0
    dep = Dependency()
    feed(breaker, dep, "FF")
    with pytest.raises(ValueError):
        breaker.call(bad_request)  # not a success either: the consecutive count stands
    feed(breaker, dep, "F")
    assert breaker.state == "open"


def test_excluded_exception_during_probe_frees_the_slot(settings, clock):
    breaker = Breaker("broker", settings, exclude=(ValueError,), clock=clock)
    dep = Dependency()
    trip(breaker, dep)
    clock.advance(30)

    def bad_request() -> None:
        raise ValueError("bad")

    with pytest.raises(ValueError):
        breaker.call(bad_request)
    assert breaker.state == "half_open"
    assert breaker.snapshot()["probe_in_flight"] is False
    feed(breaker, dep, "SS")
    assert breaker.state == "closed"


def test_keyboard_interrupt_is_never_counted(breaker, clock):
    def interrupted() -> None:
        raise KeyboardInterrupt

    for _ in range(5):
        with pytest.raises(KeyboardInterrupt):
            breaker.call(interrupted)
    assert breaker.state == "closed"
    assert breaker.snapshot()["window_calls"] == 0
    trip(breaker, Dependency())
    clock.advance(30)
    with pytest.raises(KeyboardInterrupt):
        breaker.call(interrupted)  # the probe is abandoned, not failed
    assert breaker.state == "half_open"
    assert breaker.allow()


def test_record_with_excluded_error_is_not_counted(settings):
    breaker = Breaker("detector:v3", settings, exclude=(ValueError,))
    for _ in range(5):
        assert breaker.allow()
        breaker.record(False, 0.01, ValueError("bad window"))
    assert breaker.state == "closed"
    assert breaker.snapshot()["window_calls"] == 0


# -------------------------------------------------------------------------------- transitions


def test_transition_sequence_and_reasons(breaker, clock, events):
    dep = Dependency()
    trip(breaker, dep)
    clock.advance(30)
    run(breaker, dep.fail)
    clock.advance(60)
    feed(breaker, dep, "SS")
    breaker.reset()
    assert pairs(events) == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
        ("closed", "closed"),
    ]
    reasons = [t.reason for t in events]
    assert reasons[0] == "3 consecutive failures (last: ConnectionError: boom 3)"
    assert reasons[1] == "cool-down of 30 s elapsed"
    assert reasons[2] == "probe failed: ConnectionError: boom 4"
    assert reasons[3] == "cool-down of 60 s elapsed"
    assert reasons[4] == "2 probe successes"
    assert reasons[5] == "reset by operator"
    assert [t.cooldown_s for t in events] == [30, 30, 60, 60, 0, 0]
    assert all(t.breaker == "databento_historical" and t.at.tzinfo is UTC for t in events)


def test_reset_forces_closed_from_open(breaker, events):
    dep = Dependency()
    trip(breaker, dep)
    breaker.reset()
    assert breaker.state == "closed"
    assert pairs(events)[-1] == ("open", "closed") and events[-1].reason == "reset by operator"
    assert run(breaker, dep.ok) == "ok"


def test_sink_may_read_the_breaker_and_its_errors_do_not_escape(settings, clock):
    seen: list[str] = []

    def sink(t: Transition) -> None:
        seen.append(breaker.snapshot()["state"])  # would deadlock if called under a plain lock
        raise RuntimeError("sink down")

    breaker = Breaker("feed", settings, on_change=sink, clock=clock)
    trip(breaker, Dependency())
    assert seen == ["open"]


# ------------------------------------------------------------------------- allow() / record()


def test_allow_record_for_callers_that_cannot_wrap(breaker, clock):
    for _ in range(3):
        assert breaker.allow()
        breaker.record(False, 0.01, RuntimeError("detector crashed"))
    assert breaker.state == "open"
    assert not breaker.allow()
    clock.advance(30)
    assert breaker.allow()  # claims the probe slot
    assert breaker.state == "half_open"
    assert not breaker.allow()
    breaker.record(True, 0.01)
    assert breaker.allow()
    breaker.record(True, 0.01)
    assert breaker.state == "closed"


# ---------------------------------------------------------------------------------- registry


def test_registry_one_breaker_per_name_and_any_open(settings, clock, events):
    registry = BreakerRegistry(settings, on_change=events.append, clock=clock)
    v3 = registry.get("detector:v3")
    assert registry.get("detector:v3") is v3
    registry.get("detector:v1")
    registry.get("broker", exclude=(ValueError,))
    assert registry.get("broker").exclude == (ValueError,)
    with pytest.raises(ValueError, match="exclude"):
        registry.get("broker", exclude=(KeyError,))
    trip(v3, Dependency())
    assert registry.any_open() == ["detector:v3"]
    assert registry.any_open("detector:") == ["detector:v3"]
    assert registry.any_open("broker") == []
    assert [s["name"] for s in registry.snapshot()] == ["broker", "detector:v1", "detector:v3"]
    assert events[0].breaker == "detector:v3"


def test_snapshot_keys(breaker):
    assert set(breaker.snapshot()) >= {
        "name",
        "state",
        "consecutive_failures",
        "window_calls",
        "window_failure_rate",
        "p95_ms",
        "opened_at",
        "retry_at",
        "cooldown_s",
        "trips",
    }


# ------------------------------------------------------------------------------------- retry


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.mark.parametrize(
    ("base", "cap", "attempts"),
    [(1.0, 60.0, 5), (1.0, 3.0, 7), (0.5, 60.0, 8)],
)
def test_retry_delays_are_full_jitter_within_bounds(seeded_random, base, cap, attempts):
    # Tenacity's convention: the sleep after failed attempt n (1-based) is
    # uniform(0, min(cap, base * 2**(n - 1))), i.e. the spec's base * 2**n with n from 0.
    draws: dict[int, list[float]] = {}
    sleeps = Sleeps()

    def note(attempt: int, delay: float, error: BaseException) -> None:
        assert isinstance(error, ConnectionError)
        draws.setdefault(attempt, []).append(delay)

    retrying = retrying_reads(
        RetrySettings(base_s=base, cap_s=cap, max_attempts=attempts),
        sleep=sleeps,
        before_sleep=note,
    )
    for _ in range(300):
        with pytest.raises(ConnectionError):
            retrying(Dependency().fail)
    assert sorted(draws) == list(range(1, attempts))
    assert sorted(sleeps.delays) == sorted(d for ds in draws.values() for d in ds)
    for n, ds in draws.items():
        bound = min(cap, base * 2 ** (n - 1))
        assert all(0 <= d <= bound for d in ds)
        assert max(ds) > 0.9 * bound and min(ds) < 0.1 * bound  # the whole range, not a slice


def test_retry_stops_after_max_attempts_and_reraises_last_error():
    sleeps = Sleeps()
    dep = Dependency()
    retrying = retrying_reads(Settings().resilience.retry, sleep=sleeps)
    with pytest.raises(ConnectionError, match="boom 5"):
        retrying(dep.fail)
    assert dep.calls == 5
    assert len(sleeps.delays) == 4


def test_breaker_open_is_not_retried():
    sleeps = Sleeps()
    calls = []

    def rejected() -> None:
        calls.append(1)
        raise BreakerOpen("feed", "3 consecutive failures", None)

    with pytest.raises(BreakerOpen):
        retrying_reads(RetrySettings(), sleep=sleeps)(rejected)
    assert calls == [1] and sleeps.delays == []


def test_retry_only_on_given_types():
    sleeps = Sleeps()
    calls = []

    def bad() -> None:
        calls.append(1)
        raise KeyError("x")

    with pytest.raises(KeyError):
        retrying_reads(RetrySettings(), retry_on=(ConnectionError,), sleep=sleeps)(bad)
    assert calls == [1]


def test_guarded_read_fails_twice_then_returns_after_two_sleeps(breaker):
    sleeps = Sleeps()
    outcomes = iter([ConnectionError("a"), ConnectionError("b"), "data"])

    def read() -> str:
        item = next(outcomes)
        if isinstance(item, Exception):
            raise item
        return item

    assert guarded_read(breaker, retrying_reads(RetrySettings(), sleep=sleeps), read) == "data"
    assert len(sleeps.delays) == 2
    assert breaker.state == "closed"
    assert breaker.snapshot()["window_calls"] == 3


def test_guarded_read_stops_as_soon_as_the_breaker_opens(breaker):
    sleeps = Sleeps()
    dep = Dependency()
    with pytest.raises(BreakerOpen):
        guarded_read(breaker, retrying_reads(RetrySettings(), sleep=sleeps), dep.fail)
    assert dep.calls == 3  # the 4th attempt was rejected by the breaker, and not retried
    assert len(sleeps.delays) == 3


def test_guarded_read_does_not_retry_excluded_errors(settings):
    breaker = Breaker("historical", settings, exclude=(ValueError,))
    sleeps = Sleeps()
    calls = []

    def bad_request() -> None:
        calls.append(1)
        raise ValueError("unknown symbol")

    with pytest.raises(ValueError):
        guarded_read(breaker, retrying_reads(RetrySettings(), sleep=sleeps), bad_request)
    assert calls == [1] and sleeps.delays == []


def test_guarded_write_once_calls_once_on_failure(breaker):
    dep = Dependency()
    with pytest.raises(ConnectionError):
        guarded_write_once(breaker, dep.fail)
    assert dep.calls == 1
    assert guarded_write_once(breaker, dep.ok) == "ok"
    assert dep.calls == 2


def test_guarded_write_once_does_not_call_when_open(breaker):
    dep = Dependency()
    trip(breaker, dep)
    with pytest.raises(BreakerOpen):
        guarded_write_once(breaker, dep.ok)
    assert dep.calls == 3


def test_invalid_thresholds_are_rejected():
    with pytest.raises(ValueError):
        Breaker("x", BreakerSettings(rate_min_calls=30, rate_window_calls=20))
    with pytest.raises(ValueError):
        Breaker("x", BreakerSettings(consecutive_failures=0))
