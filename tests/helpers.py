"""Test helpers: a fingerprint of the whole lake, to prove a failed ingest changed nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path


def lake_fingerprint(data_dir: Path) -> dict[str, str]:
    lake = data_dir / "lake"
    if not lake.exists():
        return {}
    return {
        str(p.relative_to(lake)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(lake.rglob("*"))
        if p.is_file()
    }
