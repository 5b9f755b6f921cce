"""Reading DBN files (v1–v3, plain or zstd) into numpy record arrays, with integrity checks.

databento's decoder silently stops at a truncated zstd frame or a cut-off record, so the file is
decompressed and framed here first: every zstd frame must be complete and the record lengths must
tile the body exactly. Only then does ``DBNStore`` decode it (upgrading v1/v2 records to v3), in
chunks of ``to_ndarray(count=…)``, never one Python object per record.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zstandard
from databento.common.constants import SCHEMA_STRUCT_MAP

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ZSTD_SKIPPABLE = range(0x184D2A50, 0x184D2A60)
DBN_MAGIC = b"DBN"
SUPPORTED_DATASET = "GLBX.MDP3"
SYNTHETIC_MARKER = "IFD.SYNTHETIC"

# Schemas IFD keeps, and the lake table each one feeds.
SCHEMA_TABLE = {
    "mbo": "mbo",
    "trades": "trades",
    "tbbo": "bbo",
    "mbp-1": "bbo",
    "bbo-1s": "bbo",
    "bbo-1m": "bbo",
    "ohlcv-1s": "ohlcv",
    "ohlcv-1m": "ohlcv",
    "ohlcv-1h": "ohlcv",
    "ohlcv-1d": "ohlcv",
    "ohlcv-eod": "ohlcv",
    "definition": "instruments",
    "statistics": "statistics",
    "status": "status",
}
# rtype → schema for files that mix schemas (live captures): the first schema of each rtype.
RTYPE_SCHEMA = {
    0xA0: "mbo",
    0x00: "trades",
    0x01: "mbp-1",
    0x0A: "mbp-10",
    0xC3: "bbo-1s",
    0xC4: "bbo-1m",
    0x20: "ohlcv-1s",
    0x21: "ohlcv-1m",
    0x22: "ohlcv-1h",
    0x23: "ohlcv-1d",
    0x24: "ohlcv-eod",
    0x13: "definition",
    0x18: "statistics",
    0x12: "status",
    0x16: "symbol_mapping",
    0x15: "error",
    0x17: "system",
}
_CONTROL_SCHEMAS = {"symbol_mapping", "error", "system"}
_CHUNK = 1_000_000


class DbnFileError(ValueError):
    """A file IFD cannot ingest; the message is one line that says what to do."""


@dataclass
class DbnBatch:
    """The decoded contents of one DBN file."""

    path: Path
    sha256: str
    dataset: str
    schema: str | None  # None for a mixed-schema (live) file
    version: int
    symbols: list[str]
    start_ns: int
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # per kept schema
    skipped: dict[str, int] = field(default_factory=dict)  # records of schemas IFD does not keep

    @property
    def synthetic(self) -> bool:
        return SYNTHETIC_MARKER in self.symbols

    def content_key(self) -> str:
        """Hash of the decoded records (v3 layout), independent of compression and DBN version."""
        h = hashlib.blake2b(digest_size=8)
        for schema in sorted(self.arrays):
            h.update(schema.encode())
            h.update(np.ascontiguousarray(self.arrays[schema]).data)
        return h.hexdigest()

    @property
    def record_count(self) -> int:
        return sum(len(a) for a in self.arrays.values())


def _decompress(data: bytes, name: str) -> bytes:
    """Decompress every zstd frame; a frame cut short is an error, not a short read."""
    out = io.BytesIO()
    rest = data
    while rest:
        magic = int.from_bytes(rest[:4], "little") if len(rest) >= 4 else -1
        if magic in ZSTD_SKIPPABLE:
            size = int.from_bytes(rest[4:8], "little")
            rest = rest[8 + size :]
            continue
        dobj = zstandard.ZstdDecompressor().decompressobj()
        try:
            out.write(dobj.decompress(rest))
        except zstandard.ZstdError as exc:
            raise DbnFileError(
                f"{name}: corrupt zstd data ({exc}); download the file again"
            ) from exc
        if not dobj.eof:
            raise DbnFileError(
                f"{name}: truncated zstd stream; the file is incomplete, fetch it again"
            )
        rest = dobj.unused_data
    return out.getvalue()


def _check_framing(body: bytes, name: str, mixed: bool) -> None:
    if not body:
        return
    if not mixed:
        rec_len = body[0] * 4
        if rec_len == 0:
            raise DbnFileError(f"{name}: corrupt DBN record (length 0)")
        lengths = np.frombuffer(body, dtype=np.uint8)[::rec_len]
        if len(body) % rec_len or np.any(lengths != body[0]):
            raise DbnFileError(
                f"{name}: truncated or corrupt DBN body ({len(body)} bytes is not a whole number "
                f"of {rec_len}-byte records); the file is incomplete, fetch it again"
            )
        return
    pos, n = 0, len(body)
    while pos < n:
        rec_len = body[pos] * 4
        if rec_len == 0 or pos + rec_len > n:
            raise DbnFileError(f"{name}: truncated or corrupt DBN record at byte {pos}")
        pos += rec_len


def sniff(path: Path) -> None:
    """Refuse what is clearly not a DBN file before reading it whole."""
    name = path.name
    if not path.exists():
        raise DbnFileError(f"{path}: no such file")
    if path.is_dir():
        raise DbnFileError(f"{path}: is a directory; pass DBN files (or use a shell glob)")
    size = path.stat().st_size
    if size == 0:
        raise DbnFileError(f"{name}: empty file (0 bytes); nothing to ingest")
    with path.open("rb") as fh:
        head = fh.read(4)
    if head[:3] != DBN_MAGIC and head != ZSTD_MAGIC:
        raise DbnFileError(
            f"{name}: not a DBN file (no DBN or zstd header); IFD reads .dbn and .dbn.zst"
        )


def read_dbn(path: Path | str, *, check_dataset: bool = True) -> DbnBatch:
    """Decode one DBN file into numpy arrays per kept schema (v3 layouts)."""
    import databento as db

    path = Path(path)
    name = path.name
    sniff(path)
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    raw = _decompress(data, name) if data[:4] == ZSTD_MAGIC else data
    if raw[:3] != DBN_MAGIC or len(raw) < 8:
        raise DbnFileError(f"{name}: not a DBN file (compressed content has no DBN header)")
    version = raw[3]
    if version not in (1, 2, 3):
        raise DbnFileError(f"{name}: DBN version {version} is not supported (1–3 are)")
    (meta_len,) = struct.unpack_from("<I", raw, 4)
    if 8 + meta_len > len(raw):
        raise DbnFileError(f"{name}: truncated DBN metadata; the file is incomplete")
    body = raw[8 + meta_len :]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # Header only: DBNStore reprs its whole buffer when built (seconds for 5 M records).
            header = db.DBNStore.from_bytes(raw[: 8 + meta_len])
        except Exception as exc:  # the decoder's own message, on one line
            raise DbnFileError(f"{name}: cannot decode DBN metadata ({exc})") from exc
        dataset = header.metadata.dataset
        schema = str(header.schema) if header.schema is not None else None
        if check_dataset and dataset != SUPPORTED_DATASET:
            raise DbnFileError(
                f"{name}: dataset {dataset} is not supported; IFD handles CME Globex, "
                f"{SUPPORTED_DATASET}"
            )
        if schema is not None and schema not in SCHEMA_TABLE:
            raise DbnFileError(
                f"{name}: schema {schema} is not kept by IFD (kept: "
                f"{', '.join(sorted(SCHEMA_TABLE))}); order-book depth is rebuilt from mbo"
            )
        _check_framing(body, name, mixed=schema is None)
        batch = DbnBatch(
            path=path,
            sha256=sha,
            dataset=dataset,
            schema=schema,
            version=version,
            symbols=list(header.metadata.symbols or []),
            start_ns=int(header.metadata.start or 0),
        )
        if schema is not None and version == 3:
            # Current-version records are read in place: the body is an array of fixed records.
            dtype = np.dtype(SCHEMA_STRUCT_MAP[schema]._dtypes)
            if body and dtype.itemsize != body[0] * 4:
                raise DbnFileError(
                    f"{name}: {schema} records of {body[0] * 4} bytes, expected {dtype.itemsize}"
                )
            batch.arrays[schema] = np.frombuffer(body, dtype=dtype)
            return batch
        store = db.DBNStore.from_file(
            path
        )  # older versions and mixed files: databento upgrades them
        if schema is not None:
            batch.arrays[schema] = _to_array(store, None)
        else:
            # A live capture mixes schemas: keep ours, count (never silently drop) the rest.
            for sch, count in _schemas_in(body).items():
                if sch in SCHEMA_TABLE:
                    batch.arrays[sch] = _to_array(store, sch)
                elif sch not in _CONTROL_SCHEMAS:
                    batch.skipped[sch] = count
    return batch


def _schemas_in(body: bytes) -> dict[str, int]:
    seen: dict[str, int] = {}
    pos, n = 0, len(body)
    while pos < n:
        rtype = body[pos + 1]
        sch = RTYPE_SCHEMA.get(rtype, f"rtype 0x{rtype:02x}")
        seen[sch] = seen.get(sch, 0) + 1
        pos += body[pos] * 4
    return seen


def _to_array(store, schema: str | None) -> np.ndarray:
    kwargs = {"schema": schema} if schema else {}
    chunks = list(store.to_ndarray(count=_CHUNK, **kwargs))
    if not chunks:
        return store.to_ndarray(**kwargs)[:0]
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
