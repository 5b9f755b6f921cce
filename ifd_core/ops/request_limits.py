"""A client-side request throttle shared by the optional outside sources (Barchart, Massive).

Each plan limits requests per minute (and Barchart's per day); a limit exceeded on the server is
a rate-limit answer that the breaker counts and the run loses. ``RequestLimiter`` books every
request in a per-UTC-day log file before it is sent, waits while the last minute is full and
refuses once the day's budget is spent, so the limit is kept on our side. The log is shared by
processes (an advisory lock around read-and-append): two runs on one day share one budget, and
the log is also the count of what a source cost in requests.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

try:  # POSIX: the request log is shared by processes under an advisory lock
    import fcntl
except ImportError:  # pragma: no cover - Windows: one process at a time
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)


class QuotaExhausted(RuntimeError):
    """The day's request budget is spent; nothing was sent."""


class RequestLimiter:
    """Counts requests in a per-UTC-day log file and keeps them within the plan's limits.

    ``acquire`` books one request: it waits (``sleep``) while ``per_minute`` requests were made
    in the last 60 s and raises ``exhausted(message)`` once ``per_day`` were made today (no daily
    limit when ``per_day`` is None). ``source`` names the plan in log lines and messages,
    ``day_setting`` the variable that raises the daily budget.
    """

    def __init__(
        self,
        directory: Path,
        *,
        per_minute: int,
        per_day: int | None = None,
        source: str = "requests",
        day_setting: str = "",
        exhausted: Callable[[str], Exception] = QuotaExhausted,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.directory = Path(directory)
        self.per_minute = per_minute
        self.per_day = per_day
        self.source = source
        self._day_setting = day_setting
        self._exhausted = exhausted
        self._clock = clock
        self._sleep = sleep

    def _path(self, now: float) -> Path:
        day = dt.datetime.fromtimestamp(now, dt.UTC).date()
        return self.directory / f"{day.isoformat()}.log"

    def count_today(self) -> int:
        """Requests booked in the current UTC day (by every process)."""
        path = self._path(self._clock())
        return len(_parse_stamps(path.read_text())) if path.exists() else 0

    @contextmanager
    def _locked(self, path: Path) -> Iterator[Any]:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as fh:
            if fcntl is not None:
                fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield fh
            finally:
                if fcntl is not None:
                    fcntl.flock(fh, fcntl.LOCK_UN)

    def acquire(self, what: str) -> None:
        """Book one request of ``what``, after waiting for the minute's limit if needed."""
        while True:
            now = self._clock()
            path = self._path(now)
            with self._locked(path) as fh:
                fh.seek(0)
                stamps = _parse_stamps(fh.read())
                if self.per_day is not None and len(stamps) >= self.per_day:
                    raise_budget = f"raise {self._day_setting} if the plan allows, or "
                    raise self._exhausted(
                        f"{self.source} request budget spent: {len(stamps)} of {self.per_day} "
                        "requests today (UTC); nothing was sent; "
                        + (raise_budget if self._day_setting else "")
                        + "wait for tomorrow"
                    )
                recent = sorted(s for s in stamps if s > now - 60.0)
                if len(recent) < self.per_minute:
                    fh.seek(0, os.SEEK_END)
                    fh.write(f"{now:.6f} {what}\n")
                    fh.flush()
                    return
                wait = recent[len(recent) - self.per_minute] + 60.0 - now
            log.info(
                "%s: %d requests in the last minute; waiting %.1f s", self.source, len(recent), wait
            )
            self._sleep(max(wait, 0.001))


def _parse_stamps(text: str) -> list[float]:
    out = []
    for line in text.splitlines():
        head = line.split(" ", 1)[0]
        try:
            out.append(float(head))
        except ValueError:
            continue  # a torn line from a crash still counted nothing
    return out


__all__ = ["QuotaExhausted", "RequestLimiter"]
