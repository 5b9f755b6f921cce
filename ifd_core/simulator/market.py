"""Deterministic NQ futures-and-options market simulator writing standard Databento DBN files.

``simulate_market`` writes per CME trade date the definition, statistics and mbo files of a
GLBX.MDP3 download, plus ``ground_truth.json`` and ``IFD_SYNTHETIC.json``, as a pure function of
its arguments (what is synthetic and planted: docs/simulator.md).

Module map: ``contracts`` (listing calendar), ``chain`` (instruments, definitions), ``path``
(prices), ``pricing`` (Black-76, tick grids), ``book`` (ladders, quote tape), ``requotes`` /
``trades`` / ``churn`` (MBO events), ``noise`` (background trading), ``plant`` (what is planted;
shapes in ``flows``, decoys in ``decoys``, state in ``planner``, truth rows in ``truth``, knobs in
``params``), ``events`` (DBN records), ``stats`` (OI, settlements), ``dbn`` (files), ``day``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ifd_core.calendar import trading_days
from ifd_core.simulator.day import DayResult, MarketState, simulate_day
from ifd_core.simulator.dbn import (
    file_name,
    metadata,
    sha256_file,
    write_dbn,
    write_text,
)
from ifd_core.simulator.params import SimParams
from ifd_core.simulator.plant import BASELINE_SESSIONS

DEFAULT_START = dt.date(2026, 3, 2)  # fixed, not today, so that output is reproducible
GENERATOR = "ifd simulate"
TRUTH_FILE = "ground_truth.json"
PROVENANCE_FILE = "IFD_SYNTHETIC.json"
SCHEMA_ORDER = ("definition", "statistics", "mbo")

__all__ = [
    "BASELINE_SESSIONS",
    "DEFAULT_START",
    "PROVENANCE_FILE",
    "TRUTH_FILE",
    "SimParams",
    "SimulationSummary",
    "simulate_market",
]


@dataclass(frozen=True)
class SimulationSummary:
    out_dir: Path
    days: list[dt.date]
    files: list[Path]
    truth_path: Path
    records_by_schema: dict[str, int]
    planted: int
    decoys: int


def simulate_market(
    out_dir: Path,
    days: int,
    seed: int,
    start: dt.date | None = None,
    scale: float = 1.0,
    progress: Callable[[int, int], None] | None = None,
    params: SimParams | None = None,
) -> SimulationSummary:
    """Simulate ``days`` CME trade dates from ``start`` (default 2026-03-02) into ``out_dir``.

    ``scale`` multiplies activity (book churn, re-quotes, noise trades). The listing and the price
    path do not depend on it, and planted flows only through the guard that keeps them >= 6x an
    option's normal volume (in practice they are the same at any scale). ``progress(done,
    total)`` is called after each day's files are written. ``params`` (default: ``SimParams()``,
    the settings' defaults) says what is planted; the truth and provenance files record it.
    """
    params = params or SimParams()
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sessions = trading_days(start or DEFAULT_START, days)
    _refuse_foreign_files(out_dir, {file_name(d, s) for d in sessions for s in SCHEMA_ORDER})
    state = MarketState()
    files: list[Path] = []
    hashes: dict[str, str] = {}
    counts = dict.fromkeys(SCHEMA_ORDER, 0)
    events: list[dict] = []
    for index, day in enumerate(sessions):
        result = simulate_day(seed, index, len(sessions), day, state, scale, params)
        for schema, path, digest, n in _write_day(out_dir, result):
            files.append(path)
            hashes[path.name] = digest
            counts[schema] += n
        events += result.truth
        del result  # keep memory to one day: the next day is generated before reassignment
        if progress is not None:
            progress(index + 1, len(sessions))

    truth_path = out_dir / TRUTH_FILE
    truth = {
        "origin": "synthetic",
        "seed": seed,
        "scale": scale,
        "start": sessions[0].isoformat(),
        "days": [d.isoformat() for d in sessions],
        "baseline_sessions": BASELINE_SESSIONS,
        "params": params.to_dict(),
        "events": events,
    }
    write_text(truth_path, json.dumps(truth, indent=2) + "\n")
    hashes[TRUTH_FILE] = sha256_file(truth_path)
    provenance = {
        "origin": "synthetic",
        "generator": GENERATOR,
        "seed": seed,
        "scale": scale,
        "params": params.to_dict(),
        "files": hashes,
    }
    write_text(out_dir / PROVENANCE_FILE, json.dumps(provenance, indent=2) + "\n")
    planted = sum(1 for e in events if e["kind"] == "institutional")
    return SimulationSummary(
        out_dir=out_dir,
        days=sessions,
        files=files,
        truth_path=truth_path,
        records_by_schema=counts,
        planted=planted,
        decoys=len(events) - planted,
    )


def _write_day(out_dir: Path, result: DayResult) -> list[tuple[str, Path, str, int]]:
    symbols = {i.raw_symbol: i.instrument_id for i in result.chain.instruments}
    bodies = {
        "definition": (
            [b"".join(bytes(r) for r in result.definitions)],
            len(result.definitions),
        ),
        "statistics": ([b"".join(bytes(r) for r in result.statistics)], len(result.statistics)),
        "mbo": (result.mbo.chunks(), len(result.mbo)),
    }
    out = []
    for schema in SCHEMA_ORDER:
        chunks, n = bodies[schema]
        path = out_dir / file_name(result.day, schema)
        meta = metadata(result.day, schema, result.start_ns, result.end_ns, symbols)
        out.append((schema, path, write_dbn(path, meta, chunks), n))
    return out


def _refuse_foreign_files(out_dir: Path, planned: set[str]) -> None:
    """Refuse to mix runs: DBN files this run would not overwrite would sit beside its output,
    and anything that globs the folder (ingestion) would read two markets as one."""
    foreign = sorted(p.name for p in out_dir.glob("glbx-mdp3-*.dbn.zst") if p.name not in planned)
    if foreign:
        shown = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
        raise FileExistsError(
            f"{out_dir} already holds {len(foreign)} DBN file(s) from another simulation "
            f"({shown}); use an empty directory or remove them first"
        )
