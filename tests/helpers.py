"""Test helpers: a fingerprint of the whole lake (to prove a failed ingest changed nothing), the
lake's rows for comparisons, settings that point a service client at a loopback double, and
a fake wall clock for the request throttles."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def lake_fingerprint(data_dir: Path) -> dict[str, str]:
    """Every file readers see through ``data/lake`` (the current snapshot, links followed)."""
    lake = data_dir / "lake"
    if not lake.exists():
        return {}
    out = {}
    for folder, _, files in os.walk(lake, followlinks=True):
        for name in files:
            p = Path(folder) / name
            out[str(p.relative_to(lake))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return dict(sorted(out.items()))


def recut(src: Path, dst: Path, records) -> Path:
    """A DBN file with ``src``'s header and the given records: a re-cut of a real file (MBO
    records have one layout in every DBN version, so any version's header fits)."""
    import zstandard

    with src.open("rb") as fh:
        raw = zstandard.ZstdDecompressor().stream_reader(fh).read()
    meta_len = int.from_bytes(raw[4:8], "little")
    dst.write_bytes(raw[: 8 + meta_len] + records.tobytes())
    return dst


# Columns that say when or in which run a row was written, not what it holds.
RUN_COLUMNS = {"run_id", "ingested_at", "validated_at", "date"}


def lake_tables(data_dir: Path, tables=None) -> dict:
    """Every row of every table (or of ``tables``), sorted, so two lakes built in different
    orders (sequential, a process pool, a Dask cluster) compare equal when they hold the same.
    The bookkeeping tables lose the columns naming their run and time."""
    import polars as pl

    from warehouse.lake import Lake
    from warehouse.tables import TABLES

    lake = Lake(data_dir)
    out = {}
    for t in tables or TABLES:
        df = lake.scan(t).collect()
        if t in ("ingest_log", "dq_results"):
            df = df.drop([c for c in df.columns if c in RUN_COLUMNS])
        if t == "ingest_log":
            df = df.drop("raw_path")  # under each data root
        out[t] = df.sort(df.columns, nulls_last=True) if df.height else df
        assert isinstance(out[t], pl.DataFrame)
    return out


class FakeClock:
    """Wall time (seconds since the epoch) that moves only when the code under test sleeps;
    every wait is recorded, so a throttle is checked without waiting."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


CLOSED_PORT_URL = "https://127.0.0.1:1"
"""Where a client is pointed when a test wants no server at all (nothing listens there)."""

ONE_ATTEMPT = {"retry": {"max_attempts": 1}}
"""Resilience for job tests: one try, the default breaker."""


def client_resilience(failures: int = 1, attempts: int = 2) -> dict:
    """Resilience for client tests: a breaker that opens after ``failures`` and short retries."""
    return {
        "breaker": {"consecutive_failures": failures, "cooldown_s": 30.0},
        "retry": {"max_attempts": attempts, "base_s": 0.5, "cap_s": 1.0},
    }


def loopback_settings(
    section: str, api_key: str, server, data_dir: Path, /, *, resilience, **values
):
    """Settings whose ``section`` (``barchart``, ``massive``) reaches ``server`` (a loopback
    double from tests/servers, or None for a closed port) with ``api_key`` and a 5 s timeout;
    ``values`` override any of these (a test may pass another ``api_key``) or set the rest."""
    from ifd_core.settings import get_settings

    base_url = server.url if server is not None else CLOSED_PORT_URL
    section_values = {"api_key": api_key, "base_url": base_url, "timeout_s": 5.0, **values}
    return get_settings(data_dir=str(data_dir), resilience=resilience, **{section: section_values})
