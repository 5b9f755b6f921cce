"""Named failpoints: crash the process at a chosen step, for the crash-safety tests.

Off unless the environment enables them, so production code pays one dictionary lookup:

    IFD_FAILPOINTS="commit.switched=kill"            SIGKILL this process there
    IFD_FAILPOINTS="commit.pv=interrupt@2"           SIGINT (Ctrl-C) at its second hit
    IFD_FAILPOINTS="ingest.validated=raise,gc=kill"  several; ``raise`` raises FailpointError
    IFD_FAILPOINTS_TRACE=/tmp/hits.txt               append every point hit (to enumerate them)

A kill is a real ``SIGKILL`` of the process (nothing runs after it: no ``finally``, no atexit),
an interrupt a real ``SIGINT`` delivered to the main thread, as a user's Ctrl-C is. The names of
every point are in ``POINTS`` so a test can prove it covers each of them.
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "IFD_FAILPOINTS"
TRACE_ENV = "IFD_FAILPOINTS_TRACE"

POINTS: dict[str, str] = {
    "lake.staged": "a transaction's files are written to its staging folder",
    "commit.locked": "the commit lock is held, nothing new is visible yet",
    "commit.pv": "new partition versions are linked (not yet referenced)",
    "commit.tv": "new table versions are linked (not yet referenced)",
    "commit.snap": "the new snapshot is complete (not yet current)",
    "commit.switched": "the lake symlink points to the new snapshot (committed)",
    "commit.cleaned": "the transaction's staging folder is removed",
    "gc": "superseded snapshots and unreferenced versions are being removed",
    "ingest.validated": "a file is decoded, its delta computed and validated",
    "ingest.raw_kept": "the raw file is kept under raw/, before the batch commits",
    "detect.engine": "a day's windows, rollup and run row are computed, not committed",
    "detect.signals": "a day's signals and outcomes are computed, not committed",
    "compaction.merged": "a partition's merged file is staged, the originals still published",
}


class FailpointError(RuntimeError):
    """Raised by a failpoint whose action is ``raise``."""


_lock = threading.Lock()
_parsed: tuple[str, dict[str, tuple[str, int]]] = ("", {})
_hits: dict[str, int] = {}


def _config() -> dict[str, tuple[str, int]]:
    global _parsed
    spec = os.environ.get(ENV, "")
    if spec == _parsed[0]:
        return _parsed[1]
    conf: dict[str, tuple[str, int]] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, action = item.partition("=")
        action, _, nth = action.partition("@")
        if name not in POINTS:
            raise ValueError(f"{ENV}: unknown failpoint {name!r} (known: {', '.join(POINTS)})")
        if action not in ("kill", "interrupt", "raise"):
            raise ValueError(f"{ENV}: {item!r}: the action must be kill, interrupt or raise")
        conf[name] = (action, int(nth or 1))
    _parsed = (spec, conf)
    _hits.clear()
    return conf


def failpoint(name: str) -> None:
    """Act as the environment says at step ``name`` (see the module docstring); else nothing."""
    if not os.environ.get(ENV) and not os.environ.get(TRACE_ENV):
        return
    if name not in POINTS:
        raise ValueError(f"unknown failpoint {name!r}")
    trace = os.environ.get(TRACE_ENV)
    if trace:
        with open(trace, "a") as fh:
            fh.write(name + "\n")
    with _lock:
        conf = _config()
        if name not in conf:
            return
        _hits[name] = _hits.get(name, 0) + 1
        action, nth = conf[name]
        if _hits[name] != nth:
            return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "interrupt":
        # As a user's Ctrl-C: the signal, whose handler raises KeyboardInterrupt in the main
        # thread (right here, when this is the main thread).
        signal.raise_signal(signal.SIGINT)
    else:
        raise FailpointError(f"failpoint {name}")
