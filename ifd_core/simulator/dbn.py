"""Writing the simulator's DBN files: Databento's names, metadata and encoding, atomically."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import databento_dbn as dbn

DATASET = "GLBX.MDP3"
SYMBOLS = ["NQ.FUT", "NQ.OPT", "IFD.SYNTHETIC"]  # the last entry marks the file as synthetic
SCHEMAS = {
    "definition": dbn.Schema.DEFINITION,
    "statistics": dbn.Schema.STATISTICS,
    "mbo": dbn.Schema.MBO,
}


@dataclass(frozen=True)
class _Interval:
    start_date: dt.date
    end_date: dt.date
    symbol: str


@dataclass(frozen=True)
class _Mapping:
    raw_symbol: str
    intervals: list[_Interval]


def file_name(day: dt.date, schema: str) -> str:
    """Databento's batch naming: glbx-mdp3-YYYYMMDD.<schema>.dbn.zst."""
    return f"{DATASET.lower().replace('.', '-')}-{day:%Y%m%d}.{schema}.dbn.zst"


def metadata(
    day: dt.date, schema: str, start_ns: int, end_ns: int, symbols: dict[str, int]
) -> dbn.Metadata:
    """Metadata as for a parent-symbology request, mapping each raw symbol to its id for the day."""
    nxt = day + dt.timedelta(days=1)
    mappings = [
        _Mapping(raw, [_Interval(day, nxt, str(iid))]) for raw, iid in sorted(symbols.items())
    ]
    return dbn.Metadata(
        dataset=DATASET,
        start=start_ns,
        end=end_ns,
        stype_in=dbn.SType.PARENT,
        stype_out=dbn.SType.INSTRUMENT_ID,
        schema=SCHEMAS[schema],
        symbols=list(SYMBOLS),
        mappings=mappings,
    )


def write_dbn(path: Path, meta: dbn.Metadata, chunks: Iterable[bytes]) -> str:
    """Write a zstd DBN file under a temporary name, rename it into place; return its sha256.

    Readers never see a half-written file, and a crash leaves only a hidden ``.tmp`` file.
    (The encoder holds the GIL, so a writer thread would not overlap it with chunk production.)
    """
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        with dbn.Transcoder(f, dbn.Encoding.DBN, dbn.Compression.ZSTD) as tc:
            tc.write(bytes(meta))
            for chunk in chunks:
                tc.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return sha256_file(path)


def write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
