"""A detector behind its circuit breaker, with its error rate kept in exchange time
(docs/operations.md §Breakers and retries, docs/algorithms.md §16).

A detector that raises must not take the live flow down with it (the incumbent and the data
capture go on), and it must not fail silently either: every failed call is logged, counted in
the windows it should have scored, and fed to the detector's breaker; while the breaker is open
the detector is not called at all and its windows are counted as suppressed. The counts over the
last ``error_window_s`` of exchange time are what the rollout controller's ERROR_RATE trigger and
the ``detector.error_rate`` alert read.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import polars as pl

from ifd_core.analysis.detectors import EngineContext, empty_signals
from ifd_core.ops.resilience import Breaker, ErrorWindow

log = logging.getLogger(__name__)


@dataclass
class GuardedDetector:
    inner: object
    breaker: Breaker
    errors: ErrorWindow
    calls: int = 0
    failed_calls: int = 0
    suppressed_windows: int = 0
    last_error: str = ""
    data_ts: int = 0
    """Exchange time (ns) of the latest windows offered: the end of the newest closed window."""
    _log_every: int = field(default=1, repr=False)

    @property
    def name(self) -> str:
        return self.inner.name  # type: ignore[attr-defined]

    def on_windows(self, closed: pl.DataFrame, context: EngineContext) -> pl.DataFrame:
        if closed.height == 0:
            return self.inner.on_windows(closed, context)  # type: ignore[attr-defined]
        self.data_ts = int(closed["window_end"].max())
        if not self.breaker.allow():
            self.suppressed_windows += closed.height
            return empty_signals()
        self.calls += 1
        t0 = time.perf_counter()
        try:
            out = self.inner.on_windows(closed, context)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - a detector's failure is contained and counted
            self.breaker.record(False, time.perf_counter() - t0, exc)
            self.failed_calls += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.errors.add(self.data_ts, closed.height, closed.height)
            log.error(
                "detector %s failed on %d windows (call %d, %d failed): %s",
                self.name,
                closed.height,
                self.calls,
                self.failed_calls,
                self.last_error,
            )
            return empty_signals()
        self.breaker.record(True, time.perf_counter() - t0)
        self.errors.add(self.data_ts, closed.height, 0)
        return out

    def stats(self) -> dict:
        return {
            "algo": self.name,
            "calls": self.calls,
            "failed_calls": self.failed_calls,
            "suppressed_windows": self.suppressed_windows,
            "window_error_rate": self.errors.rate(),
            "breaker": self.breaker.state,
            "last_error": self.last_error,
        }
