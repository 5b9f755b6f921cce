"""The emergency stop (``ifd halt`` / ``ifd resume``): one persisted switch every mode reads before
every order that opens a position.

A small JSON file under the data root (``control/halt.json``) with the history of every halt and
resume, written atomically, so every process sees the same state at its next order with no
server. It fails closed: an unreadable file means *halted*, with a message, and ``reason()`` never
raises. Rules: docs/operations.md §Halt and resume.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: writes stay atomic, just not serialised
    fcntl = None

MAX_BYTES = 16 * 1024 * 1024  # larger than any real history: something else is in its place
NO_REASON = "halted (no reason recorded)"


def unreadable_message(path: Path, why: str) -> str:
    """What a reader says (and refuses orders with) when the stop file cannot be read."""
    return (
        f"the emergency-stop file {path} is unreadable ({why}): trading is treated as halted; "
        "run `ifd halt --reason ...` to record a halt (the bad file is kept aside) or "
        "`ifd resume` to lift it"
    )


@dataclass(frozen=True)
class HaltState:
    """What the stop file says. ``unreadable`` is why it could not be read; then ``halted`` is
    True and ``reason`` is the fail-closed message."""

    halted: bool
    reason: str | None = None
    since: str | None = None
    history: tuple[dict, ...] = ()
    unreadable: str | None = None

    def to_json(self) -> dict:
        return {
            "halted": self.halted,
            "reason": self.reason,
            "since": self.since,
            "unreadable": self.unreadable,
        }


@dataclass(frozen=True)
class StopChange:
    """The outcome of ``halt``/``resume``. Truthy when the state changed (``resume`` on a stop
    that was not halted changes nothing). ``kept_as`` is where an unreadable file was moved."""

    changed: bool
    state: HaltState
    kept_as: Path | None = None
    unreadable: str | None = None

    def __bool__(self) -> bool:
        return self.changed


class _Unreadable(Exception):
    pass


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class EmergencyStop:
    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "control" / "halt.json"

    # ------------------------------------------------------------------ reading
    def _load(self) -> dict | None:
        """The valid document, None when there is no file; ``_Unreadable`` otherwise."""
        try:
            with open(self.path, "rb") as f:
                data = f.read(MAX_BYTES + 1)
        except FileNotFoundError:
            if os.path.lexists(self.path):
                raise _Unreadable("a symlink to a missing file") from None
            return None
        except IsADirectoryError:
            raise _Unreadable("it is a directory, not a file") from None
        except PermissionError:
            raise _Unreadable("permission denied") from None
        except OSError as exc:
            raise _Unreadable(exc.strerror or type(exc).__name__) from None
        if len(data) > MAX_BYTES:
            raise _Unreadable(f"larger than {MAX_BYTES // (1024 * 1024)} MiB")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise _Unreadable("not UTF-8 text (binary content)") from None
        if not text.strip():
            raise _Unreadable("it is empty")
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _Unreadable(
                f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
        except ValueError as exc:  # e.g. a number too long to convert
            raise _Unreadable(f"not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise _Unreadable(f"expected a JSON object, found {type(doc).__name__}")
        if not isinstance(doc.get("halted"), bool):
            raise _Unreadable("'halted' is missing or not true/false")
        if "reason" not in doc or not (doc["reason"] is None or isinstance(doc["reason"], str)):
            raise _Unreadable("'reason' is missing or not text")
        if not (doc.get("since") is None or isinstance(doc["since"], str)):
            raise _Unreadable("'since' is not text")
        hist = doc.get("history")
        if not isinstance(hist, list) or not all(isinstance(h, dict) for h in hist):
            raise _Unreadable("'history' is missing or not a list of events")
        return doc

    def state(self) -> HaltState:
        """The stop as every reader sees it; never raises (an unreadable file is halted)."""
        try:
            doc = self._load()
        except _Unreadable as exc:
            return self._closed(str(exc))
        except Exception as exc:  # noqa: BLE001 - whatever happens, fail closed
            return self._closed(f"{type(exc).__name__}: {exc}")
        if doc is None:
            return HaltState(False)
        halted = doc["halted"]
        return HaltState(
            halted=halted,
            reason=(doc["reason"] or NO_REASON) if halted else None,
            since=doc.get("since"),
            history=tuple(doc["history"]),
        )

    def _closed(self, why: str) -> HaltState:
        return HaltState(True, unreadable_message(self.path, why), unreadable=why)

    def reason(self) -> str | None:
        """Why trading is halted, or None when it is not. Never raises: an unreadable file is a
        halt whose reason says what happened and what to run."""
        try:
            st = self.state()
            return st.reason if st.halted else None
        except Exception as exc:  # noqa: BLE001 - state() does not raise; belt and braces
            return unreadable_message(self.path, f"{type(exc).__name__}: {exc}")

    def history(self) -> list[dict]:
        """Every halt and resume recorded (empty when the file is unreadable)."""
        return list(self.state().history)

    # ------------------------------------------------------------------ writing
    def halt(self, reason: str, by: str = "cli") -> StopChange:
        """Halt with ``reason`` (not empty). An unreadable file is moved aside first."""
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("the reason for a halt must not be empty")
        reason = reason.strip()
        with self._locked():
            doc, kept, why, now = self._current(by)
            doc.update(halted=True, reason=reason, since=now)
            doc["history"].append({"event": "halt", "at": now, "reason": reason, "by": by})
            self._write(doc)
        return StopChange(True, self.state(), kept, why)

    def resume(self, by: str = "cli") -> StopChange:
        """Lift the halt; falsy when there was none. An unreadable file counts as a halt (every
        reader was refusing entries): it is moved aside and a not-halted state written."""
        with self._locked():
            doc, kept, why, now = self._current(by)
            if not doc["halted"]:
                return StopChange(False, self.state())
            doc["history"].append(
                {"event": "resume", "at": now, "reason": doc.get("reason"), "by": by}
            )
            doc.update(halted=False, reason=None, since=None)
            self._write(doc)
        return StopChange(True, self.state(), kept, why)

    def _current(self, by: str) -> tuple[dict, Path | None, str | None, str]:
        """The document to update: the file's, a fresh one when there is none, or a fresh one
        recording that the unreadable file was moved aside (and where)."""
        now = _now().isoformat()
        try:
            doc = self._load()
        except _Unreadable as exc:
            why = str(exc)
            kept = self._keep_aside()
            event = {"event": "unreadable", "at": now, "reason": why, "kept_as": str(kept)}
            doc = {
                "halted": True,  # as every reader saw it
                "reason": f"the file was unreadable ({why})",
                "since": None,
                "history": [{**event, "by": by}],
            }
            return doc, kept, why, now
        if doc is None:
            doc = {"halted": False, "reason": None, "since": None, "history": []}
        return doc, None, None, now

    def _keep_aside(self) -> Path:
        stamp = _now().strftime("%Y%m%dT%H%M%S.%fZ")
        target = self.path.with_name(f"{self.path.name}.unreadable-{stamp}")
        n = 0
        while os.path.lexists(target):
            n += 1
            target = self.path.with_name(f"{self.path.name}.unreadable-{stamp}-{n}")
        os.rename(self.path, target)  # a file, a directory or a symlink: the entry itself
        return target

    def _write(self, doc: dict) -> None:
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{self.path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps(doc, indent=1))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):  # the rename itself durable, where supported
            dfd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise writers (best effort: a lock that cannot be taken does not stop a halt)."""
        fd = None
        if fcntl is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path.parent / "halt.lock", os.O_RDWR | os.O_CREAT, 0o644)
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                if fd is not None:
                    os.close(fd)
                fd = None
        try:
            yield
        finally:
            if fd is not None:
                os.close(fd)  # releases the lock
