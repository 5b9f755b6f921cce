"""The checkpoint of a live date: how far its capture was fed and written, so a restart resumes.

One JSON file per trade date (``checkpoint-<date>.json`` in the lake's ``live/`` folder), replaced
atomically. The date's state writes it after every flush; the runner reads it to find the date a
follow-mode restart resumes and whether a date starts over.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from pathlib import Path

from ifd_core.marketdata.live_source import Gap

PREFIX = "checkpoint-"


def checkpoint_path(live_dir: Path, day: dt.date) -> Path:
    return live_dir / f"{PREFIX}{day.isoformat()}.json"


def read_checkpoint(path: Path) -> dict | None:
    """The checkpoint at ``path``, or None when there is none."""
    return json.loads(path.read_text()) if path.exists() else None


def write_checkpoint(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1))
    os.replace(tmp, path)


def is_unfinished(live_dir: Path, day: dt.date | None) -> bool:
    """Whether ``day`` has a checkpoint that is not finalized (a run of it resumes)."""
    if day is None:
        return False
    try:
        return not json.loads(checkpoint_path(live_dir, day).read_text()).get("finalized")
    except (OSError, ValueError, AttributeError):
        return False


def unfinished_day(live_dir: Path) -> dt.date | None:
    """The latest date whose checkpoint is not finalized: a follow-mode restart resumes it."""
    pending = []
    for path in live_dir.glob(f"{PREFIX}*.json"):
        with contextlib.suppress(ValueError, OSError):
            if not json.loads(path.read_text()).get("finalized"):
                pending.append(dt.date.fromisoformat(path.stem.removeprefix(PREFIX)))
    return max(pending) if pending else None


def gaps_from(ckpt: dict | None) -> list[Gap]:
    """The gaps a checkpoint recorded (the date's windows stay incomplete across a restart)."""
    return [Gap(**g) for g in (ckpt or {}).get("gaps", [])]
