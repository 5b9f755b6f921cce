"""The emergency stop (`ifd halt` / `ifd resume`): one persisted switch every mode reads before
every order that opens a position.

It is a small JSON file under the data root (``control/halt.json``) written atomically, with the
history of every halt and resume, so a paper session, a backtest, the live flow and the IB adapter
in other processes all see the same state at their next order — no server needed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path


class EmergencyStop:
    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "control" / "halt.json"

    def _read(self) -> dict:
        if not self.path.exists():
            return {"halted": False, "reason": None, "history": []}
        return json.loads(self.path.read_text())

    def _write(self, doc: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, self.path)

    def reason(self) -> str | None:
        """Why trading is halted, or None when it is not."""
        doc = self._read()
        return doc.get("reason") or "halted" if doc.get("halted") else None

    def halt(self, reason: str, by: str = "cli") -> None:
        doc = self._read()
        now = dt.datetime.now(dt.UTC).isoformat()
        doc.update(halted=True, reason=reason, since=now)
        doc["history"].append({"event": "halt", "at": now, "reason": reason, "by": by})
        self._write(doc)

    def resume(self, by: str = "cli") -> bool:
        """Lift the halt; False when there was none."""
        doc = self._read()
        if not doc.get("halted"):
            return False
        now = dt.datetime.now(dt.UTC).isoformat()
        doc["history"].append({"event": "resume", "at": now, "reason": doc.get("reason"), "by": by})
        doc.update(halted=False, reason=None, since=None)
        self._write(doc)
        return True

    def history(self) -> list[dict]:
        return list(self._read().get("history", []))
