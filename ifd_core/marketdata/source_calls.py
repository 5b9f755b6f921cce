"""What the optional sources' clients (Barchart OnDemand, Massive) share.

Both turn every bad answer into one exception with a one-line message, keep their API key out of
every message and stored body, and make each request through the Historical API's breaker
registry and the read retry policy, with the same three kinds of failure: transient (counted by
the breaker and retried), a bad answer (counted, not retried: each retry costs a request) and
ours to fix (neither). docs/operations.md, "Barchart OnDemand (optional)" and "Massive (optional)".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from ifd_core.marketdata.historical import breakers
from ifd_core.ops.resilience import BreakerOpen, guarded_read, retrying_reads
from ifd_core.settings import Settings

T = TypeVar("T")


class SourceError(RuntimeError):
    """An optional source could not serve; the message is one line with what to do."""

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(" | ".join(p.strip() for p in message.splitlines() if p.strip()))
        self.http_status = http_status


class _Permanent(Exception):
    """Carries an error that says nothing about the source's health past the breaker,
    uncounted."""

    def __init__(self, error: SourceError) -> None:
        super().__init__(str(error))
        self.error = error


def one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def scrub(text: str, key: str, pattern: re.Pattern[str]) -> str:
    """``text`` without ``key``: the value itself and whatever ``pattern`` finds (its first
    group, e.g. ``apikey=``, is kept and the secret after it replaced)."""
    if key:
        text = text.replace(key, "***")
    return pattern.sub(r"\1***", text)


def breaker_state(settings: Settings, breaker: str) -> str:
    """``closed``, ``open`` or ``half_open``: the state ``guarded_call`` would meet."""
    return breakers(settings).get(breaker, exclude=(_Permanent,)).state


def guarded_call(
    settings: Settings,
    breaker: str,
    attempt: Callable[[], T],
    *,
    error: type[SourceError],
    transient: type[SourceError],
    counted: tuple[type[SourceError], ...],
    sleep: Callable[[float], None],
    name: str,
) -> T:
    """``attempt`` through the breaker named ``breaker`` and the read retry policy.

    ``transient`` errors are retried and counted; ``counted`` ones (bad answers) are counted
    and not retried; any other ``error`` passes uncounted and unretried. When this call's own
    failure opens the breaker, that failure is what is raised; a breaker already open raises
    ``error`` saying the source was not attempted."""
    guard = breakers(settings).get(breaker, exclude=(_Permanent,))
    retrying = retrying_reads(settings.resilience.retry, retry_on=(transient,), sleep=sleep)
    failed: list[SourceError] = []

    def guarded() -> T:
        try:
            return attempt()
        except (transient, *counted) as exc:
            failed.append(exc)
            raise
        except error as exc:  # not a dependency failure: uncounted, not retried
            raise _Permanent(exc) from None

    try:
        return guarded_read(guard, retrying, guarded)
    except _Permanent as exc:
        raise exc.error from None
    except BreakerOpen as exc:
        if failed:  # this call's own failure opened it: that failure is the clear error
            raise failed[-1] from None
        raise error(f"{name} not attempted: {exc}") from None
