"""Reading DBN files (v1–v3, plain or zstd) into numpy record arrays, with integrity checks.

databento's decoder silently stops at a truncated zstd frame or a cut-off record, so files are
decompressed and framed here first (complete frames, record lengths tiling the body), within
``DecodeLimits`` (size and expansion ratio: no decompression bomb), then read in place with the
record layout of the file's DBN version. What a cut-short file looks like and what cannot be
detected: docs/operations.md §Ingest.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import stat
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import databento_dbn
import numpy as np
import zstandard
from databento_dbn import Metadata, RType, Schema, VersionUpgradePolicy

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
# rtype → schema for files that mix schemas (live captures). The record types come from
# databento_dbn (``RType.from_schema``), not a hand-kept hex table; where two schemas share a
# record type (tbbo and mbp-1 are both MBP-1 records) the first listed here names it.
_MIXED_SCHEMAS = (
    "mbo",
    "trades",
    "mbp-1",
    "mbp-10",
    "bbo-1s",
    "bbo-1m",
    "ohlcv-1s",
    "ohlcv-1m",
    "ohlcv-1h",
    "ohlcv-1d",
    "ohlcv-eod",
    "definition",
    "statistics",
    "status",
)
_CONTROL_RTYPES = {
    RType.SYMBOL_MAPPING: "symbol_mapping",
    RType.ERROR: "error",
    RType.SYSTEM: "system",
}


def _rtype_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for schema in _MIXED_SCHEMAS:
        table.setdefault(int(RType.from_schema(Schema.from_str(schema)).value), schema)
    for rtype, name in _CONTROL_RTYPES.items():
        table[int(rtype.value)] = name
    return table


RTYPE_SCHEMA = _rtype_table()
_CONTROL_SCHEMAS = set(_CONTROL_RTYPES.values())
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


MiB = 1024 * 1024
_READ_SIZE = 1 * MiB  # compressed bytes read (hashed, followed) per step
_OUT_SIZE = 8 * MiB  # decompressed bytes produced per step: the most held beside the buffer
# The record class of each fixed schema, per DBN version: databento's SCHEMA_STRUCT_MAP(_V1,
# _V2) for the schemas IFD keeps, taken from databento_dbn itself. Importing ``databento`` (its
# client, pandas, aiohttp) costs each worker process 1.5 s; only mixed-schema files need it.
_STRUCT_NAMES = {
    "mbo": "MBOMsg",
    "trades": "TradeMsg",
    "tbbo": "MBP1Msg",
    "mbp-1": "MBP1Msg",
    "bbo-1s": "BBOMsg",
    "bbo-1m": "BBOMsg",
    "ohlcv-1s": "OHLCVMsg",
    "ohlcv-1m": "OHLCVMsg",
    "ohlcv-1h": "OHLCVMsg",
    "ohlcv-1d": "OHLCVMsg",
    "ohlcv-eod": "OHLCVMsg",
    "definition": "InstrumentDefMsg",
    "statistics": "StatMsg",
    "status": "StatusMsg",
}
_STRUCTS = {
    version: {
        schema: getattr(module, cls)
        for schema, cls in _STRUCT_NAMES.items()
        if version == 3 or schema != "ohlcv-eod"  # databento maps EOD bars from DBN v3 only
    }
    for version, module in ((1, databento_dbn.v1), (2, databento_dbn.v2), (3, databento_dbn))
}


@dataclass(frozen=True)
class DecodeLimits:
    """How far one DBN file may expand in memory while it is read.

    ``max_bytes``: the decompressed size (the whole file, for a plain ``.dbn``). ``max_ratio``:
    decompressed bytes per compressed byte, checked once ``ratio_floor`` bytes have been
    decompressed (small files may compress extremely well; real DBN days compress 3-30x).
    """

    max_bytes: int = 16 * 1024**3
    max_ratio: float = 100.0
    ratio_floor: int = 64 * MiB

    def __post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        if not self.max_ratio > 1:
            raise ValueError("max_ratio must be greater than 1")
        if self.ratio_floor < 0:
            raise ValueError("ratio_floor must not be negative")

    @classmethod
    def from_settings(cls, settings) -> DecodeLimits:
        """The limits of ``settings.warehouse`` (``max_decompressed_bytes``,
        ``max_compression_ratio``)."""
        w = settings.warehouse
        return cls(
            max_bytes=int(w.max_decompressed_bytes), max_ratio=float(w.max_compression_ratio)
        )


DEFAULT_LIMITS = DecodeLimits()  # the defaults of WarehouseSettings


def _size(n: float) -> str:
    if n < 1024:
        return f"{int(n)} bytes"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}"
    raise AssertionError  # unreachable


class _ZstdFrames:
    """Follows the zstd frame layout (RFC 8878) over compressed bytes as they stream, without
    decompressing them: frame headers, block headers, skippable frames, checksums.

    libzstd's streaming decoder cannot say whether its input stopped inside a frame (it simply
    waits for more), so this is what tells a truncated stream from a complete one. The cost is a
    few Python operations per block (a block decompresses to at most 128 KiB).
    """

    _MAGIC, _SKIP_SIZE, _FRAME_HEADER, _BLOCK = range(4)
    _DICT_ID = (0, 1, 2, 4)
    _CONTENT_SIZE = (0, 2, 4, 8)

    def __init__(self, name: str) -> None:
        self.name = name
        self.frames = 0  # complete frames, skippable ones included
        self._offset = 0  # compressed bytes followed
        self._state = self._MAGIC  # the header awaited next…
        self._need = 4  # …its size…
        self._hdr = b""  # …what of it has arrived
        self._skip = 0  # bytes to pass over before it (block content, skippable frame)
        self._checksum = False

    @property
    def at_frame_boundary(self) -> bool:
        return self._state == self._MAGIC and not self._hdr and not self._skip

    def feed(self, data: bytes) -> None:
        i, n = 0, len(data)
        while i < n:
            if self._skip:
                k = min(self._skip, n - i)
                i += k
                self._skip -= k
                continue
            k = min(self._need - len(self._hdr), n - i)
            self._hdr += data[i : i + k]
            i += k
            if len(self._hdr) == self._need:
                hdr, self._hdr = self._hdr, b""
                self._header(hdr, self._offset + i - len(hdr))
        self._offset += n

    def _expect(self, state: int, need: int, skip: int = 0) -> None:
        self._state, self._need, self._skip = state, need, skip

    def _header(self, hdr: bytes, at: int) -> None:
        if self._state == self._MAGIC:
            magic = int.from_bytes(hdr, "little")
            if hdr == ZSTD_MAGIC:
                self._expect(self._FRAME_HEADER, 1)
            elif magic in ZSTD_SKIPPABLE:
                self._expect(self._SKIP_SIZE, 4)
            else:
                raise self._corrupt(f"no zstd frame starts at byte {at}")
        elif self._state == self._SKIP_SIZE:
            self.frames += 1
            self._expect(self._MAGIC, 4, skip=int.from_bytes(hdr, "little"))
        elif self._state == self._FRAME_HEADER:
            fhd = hdr[0]
            if fhd & 0x08:
                raise self._corrupt(f"reserved bit set in the frame header at byte {at}")
            single_segment = (fhd >> 5) & 1
            fcs = self._CONTENT_SIZE[fhd >> 6] or single_segment
            self._checksum = bool(fhd & 0x04)
            rest = (1 - single_segment) + self._DICT_ID[fhd & 0x03] + fcs
            self._expect(self._BLOCK, 3, skip=rest)
        else:
            b = int.from_bytes(hdr, "little")
            kind, size = (b >> 1) & 3, b >> 3
            if kind == 3:
                raise self._corrupt(f"reserved block type at byte {at}")
            content = 1 if kind == 1 else size  # an RLE block holds one byte
            if b & 1:  # the frame's last block, then its checksum
                self.frames += 1
                self._expect(self._MAGIC, 4, skip=content + 4 * self._checksum)
            else:
                self._expect(self._BLOCK, 3, skip=content)

    def _corrupt(self, what: str) -> DbnFileError:
        return DbnFileError(f"{self.name}: corrupt zstd data ({what}); download the file again")


class _HashedSource:
    """The compressed file as zstandard reads it: hashed and followed frame by frame on the way."""

    def __init__(self, fh, name: str) -> None:
        self._fh = fh
        self.sha = hashlib.sha256()
        self.frames = _ZstdFrames(name)
        self.consumed = 0

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size if size > 0 else _READ_SIZE)
        if data:
            self.sha.update(data)
            self.frames.feed(data)
            self.consumed += len(data)
        return data


def _inflate(fh, name: str, limits: DecodeLimits) -> tuple[bytearray, str]:
    """Decompress every zstd frame of ``fh`` into one buffer, within ``limits``; returns it and
    the sha256 of the compressed bytes."""
    src = _HashedSource(fh, name)
    reader = zstandard.ZstdDecompressor().stream_reader(
        src, read_size=_READ_SIZE, read_across_frames=True, closefd=False
    )
    buf = bytearray()
    try:
        while chunk := reader.read(min(_OUT_SIZE, limits.max_bytes - len(buf) + 1)):
            reached = len(buf) + len(chunk)
            if reached > limits.max_bytes:
                raise DbnFileError(
                    f"{name}: decompresses to more than {_size(limits.max_bytes)} (refused at "
                    f"{_size(reached)}), the limit warehouse.max_decompressed_bytes; if the file "
                    f"is genuine, raise it (IFD_WAREHOUSE__MAX_DECOMPRESSED_BYTES)"
                )
            buf += chunk
            del chunk
            if len(buf) >= limits.ratio_floor and len(buf) > limits.max_ratio * src.consumed:
                raise DbnFileError(
                    f"{name}: expands more than {limits.max_ratio:g}x ({_size(len(buf))} from "
                    f"{_size(src.consumed)} compressed, refused), the limit "
                    f"warehouse.max_compression_ratio: a decompression bomb or a corrupt file; if "
                    f"it is genuine, raise IFD_WAREHOUSE__MAX_COMPRESSION_RATIO"
                )
            if len(buf) >= 3 and buf[:3] != DBN_MAGIC:
                raise DbnFileError(f"{name}: not a DBN file (compressed content has no DBN header)")
    except zstandard.ZstdError as exc:
        raise DbnFileError(f"{name}: corrupt zstd data ({exc}); download the file again") from exc
    if src.read(_READ_SIZE):  # the decoder stopped before the end of the file
        raise DbnFileError(f"{name}: corrupt zstd data (data after the end of the stream)")
    if not src.frames.at_frame_boundary:
        raise DbnFileError(f"{name}: truncated zstd stream; the file is incomplete, fetch it again")
    return buf, src.sha.hexdigest()


def _kind(mode: int) -> str | None:
    """What a file that is not a regular file is, for the message that refuses it."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "not a regular file"


def _stat(path: Path) -> os.stat_result:
    """``path.stat()``, with every way it fails named (``Path.exists`` hides them all)."""
    try:
        return path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DbnFileError(
                f"{path}: is a symlink loop (its links lead back to themselves); there is no "
                "file behind it"
            ) from None
        if isinstance(exc, PermissionError):
            raise DbnFileError(
                f"{path}: permission denied (a folder on the way cannot be searched); check "
                "its permissions"
            ) from None
        try:
            target = os.readlink(path)
        except OSError:
            target = None
        if target is not None:
            raise DbnFileError(f"{path}: is a broken symlink to {target}") from None
        if isinstance(exc, FileNotFoundError | NotADirectoryError):
            raise DbnFileError(f"{path}: no such file") from None
        raise DbnFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _open_regular(path: Path):
    """Open a regular file for reading, unbuffered. Opened non-blocking and checked before a byte
    is read: a FIFO swapped in after ``sniff`` must be refused, not block forever."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except PermissionError:
        raise DbnFileError(
            f"{path.name}: permission denied; IFD cannot read it (check the file's permissions)"
        ) from None
    except OSError as exc:
        _stat(path)  # names a vanished file, a loop, a broken link
        raise DbnFileError(f"{path.name}: cannot be opened ({exc.strerror or exc})") from None
    try:
        kind = _kind(os.fstat(fd).st_mode)
        if kind:
            raise DbnFileError(f"{path.name}: is {kind}, not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def _is_zstd(head: bytes) -> bool:
    return head == ZSTD_MAGIC or (
        len(head) == 4 and int.from_bytes(head, "little") in ZSTD_SKIPPABLE
    )


def sniff(path: Path) -> None:
    """Refuse what is clearly not a DBN file, saying what it is, before reading it.

    Only a regular file is ever opened: a FIFO, a socket or a device is named from its ``stat``
    (reading a FIFO would block forever). Missing files, symlink loops, broken symlinks and
    permission errors are told apart.
    """
    name = path.name
    st = _stat(path)
    if stat.S_ISDIR(st.st_mode):
        raise DbnFileError(f"{path}: is a directory; pass DBN files (or use a shell glob)")
    kind = _kind(st.st_mode)
    if kind:
        raise DbnFileError(f"{name}: is {kind}, not a regular file")
    if st.st_size == 0:
        raise DbnFileError(f"{name}: empty file (0 bytes); nothing to ingest")
    with _open_regular(path) as fh:
        head = fh.read(4)
    if head[:3] != DBN_MAGIC and not _is_zstd(head):
        raise DbnFileError(
            f"{name}: not a DBN file (no DBN or zstd header); IFD reads .dbn and .dbn.zst"
        )


def _load(path: Path, limits: DecodeLimits) -> tuple[bytes | bytearray, str, bool]:
    """The file's decompressed content, the sha256 of its bytes, and whether it was zstd."""
    name = path.name
    with _open_regular(path) as fh:
        head = fh.read(4)
        fh.seek(0)
        if _is_zstd(head):
            raw, sha = _inflate(fh, name, limits)
            return raw, sha, True
        size = os.fstat(fh.fileno()).st_size
        if size > limits.max_bytes:
            raise DbnFileError(
                f"{name}: is {_size(size)}, more than {_size(limits.max_bytes)}, the limit "
                f"warehouse.max_decompressed_bytes; if the file is genuine, raise it "
                f"(IFD_WAREHOUSE__MAX_DECOMPRESSED_BYTES)"
            )
        data = fh.read(limits.max_bytes + 1)
        if len(data) > limits.max_bytes:  # it grew since fstat
            raise DbnFileError(
                f"{name}: grew past {_size(limits.max_bytes)} while being read, the limit "
                f"warehouse.max_decompressed_bytes; ingest it once it is complete"
            )
        return data, hashlib.sha256(data).hexdigest(), False


def _check_framing(body, name: str, mixed: bool, compressed: bool) -> None:
    """The record lengths must tile the body: no zero-length record, no record cut short."""
    if not body:
        return
    cut = (
        f"{name}: the file ends mid-record at a zstd frame boundary: it was cut short; fetch it "
        "again"
    )
    if not mixed:
        rec_len = body[0] * 4
        if rec_len == 0:
            raise DbnFileError(f"{name}: corrupt DBN record (length 0)")
        lengths = np.frombuffer(body, dtype=np.uint8)[::rec_len]
        if np.any(lengths != body[0]) or (len(body) % rec_len and not compressed):
            raise DbnFileError(
                f"{name}: truncated or corrupt DBN body ({len(body)} bytes is not a whole number "
                f"of {rec_len}-byte records); the file is incomplete, fetch it again"
            )
        if len(body) % rec_len:
            raise DbnFileError(cut)
        return
    pos, n = 0, len(body)
    while pos < n:
        rec_len = body[pos] * 4
        if rec_len and pos + rec_len > n and compressed:
            raise DbnFileError(cut)
        if rec_len == 0 or pos + rec_len > n:
            raise DbnFileError(f"{name}: truncated or corrupt DBN record at byte {pos}")
        pos += rec_len


_UTF8_FIELD = re.compile(r"while (?:reading|decoding) (.+?)(?: from metadata)?\W*$")


def _decode_error(name: str, exc: Exception, what: str) -> DbnFileError:
    """databento's own message, on one line; text that is not UTF-8 said in words."""
    text = " ".join(str(exc).split())
    if "utf-8" in text.lower() or "utf8" in text.lower():
        m = _UTF8_FIELD.search(text)
        where = f" ({m.group(1)})" if m else ""
        place = "DBN header" if what == "metadata" else "a DBN record"
        return DbnFileError(
            f"{name}: the {place} holds text that is not valid UTF-8{where}; the file is corrupt"
        )
    return DbnFileError(f"{name}: cannot decode DBN {what} ({text})")


def read_dbn(
    path: Path | str, *, check_dataset: bool = True, limits: DecodeLimits | None = None
) -> DbnBatch:
    """Decode one DBN file into numpy arrays per kept schema.

    Fixed-schema files come out in their version's record layout (v3, or v1/v2 as
    ``DBNStore.to_ndarray`` gives them); mixed-schema files are upgraded to v3. ``limits`` bound
    the memory a file may take while it decompresses (``DEFAULT_LIMITS`` when None; use
    ``DecodeLimits.from_settings`` for the configured ones).
    """
    path = Path(path)
    name = path.name
    limits = limits or DEFAULT_LIMITS
    sniff(path)
    raw, sha, compressed = _load(path, limits)
    if raw[:3] != DBN_MAGIC or len(raw) < 8:
        raise DbnFileError(f"{name}: not a DBN file (compressed content has no DBN header)")
    version = raw[3]
    if version not in (1, 2, 3):
        raise DbnFileError(f"{name}: DBN version {version} is not supported (1–3 are)")
    (meta_len,) = struct.unpack_from("<I", raw, 4)
    if 8 + meta_len > len(raw):
        if compressed:
            raise DbnFileError(
                f"{name}: the file ends inside the DBN metadata at a zstd frame boundary: it was "
                "cut short; fetch it again"
            )
        raise DbnFileError(f"{name}: truncated DBN metadata; the file is incomplete")
    body = memoryview(raw)[8 + meta_len :]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # The header as DBNStore decodes it (the same bytes, the same call), without
            # importing databento for a fixed-schema file.
            metadata = Metadata.decode(
                bytes(raw[: 8 + meta_len]), upgrade_policy=VersionUpgradePolicy.AS_IS
            )
        except Exception as exc:
            raise _decode_error(name, exc, "metadata") from exc
        dataset = metadata.dataset
        schema = str(Schema(metadata.schema)) if metadata.schema else None
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
        _check_framing(body, name, mixed=schema is None, compressed=compressed)
        batch = DbnBatch(
            path=path,
            sha256=sha,
            dataset=dataset,
            schema=schema,
            version=version,
            symbols=list(metadata.symbols or []),
            start_ns=int(metadata.start or 0),
        )
        if schema is not None:
            # The body is an array of fixed records: read in place, in the version's layout.
            dtype = np.dtype(_STRUCTS[version][schema]._dtypes)
            if body and dtype.itemsize != body[0] * 4:
                raise DbnFileError(
                    f"{name}: {schema} records of {body[0] * 4} bytes, expected {dtype.itemsize}"
                )
            arr = np.frombuffer(body, dtype=dtype)
            arr.flags.writeable = False  # as from bytes: the decoded file is not to be edited
            batch.arrays[schema] = arr
            return batch
        # A live capture mixes schemas: databento upgrades and sorts out its records. Built from
        # a BytesIO (from bytes, DBNStore would repr the whole buffer), decoded in memory.
        import databento as db

        try:
            store = db.DBNStore.from_bytes(io.BytesIO(raw))
            # Keep ours, count (never silently drop) the rest.
            for sch, count in _schemas_in(body).items():
                if sch in SCHEMA_TABLE:
                    batch.arrays[sch] = _to_array(store, sch)
                elif sch not in _CONTROL_SCHEMAS:
                    batch.skipped[sch] = count
        except DbnFileError:
            raise
        except Exception as exc:
            raise _decode_error(name, exc, "records") from exc
    return batch


def _schemas_in(body) -> dict[str, int]:
    seen: dict[str, int] = {}
    pos, n = 0, len(body)
    while pos < n:
        rtype = body[pos + 1]
        sch = RTYPE_SCHEMA.get(rtype, f"rtype 0x{rtype:02x}")
        seen[sch] = seen.get(sch, 0) + 1
        pos += body[pos] * 4
    return seen


def _to_array(store, schema: str) -> np.ndarray:
    chunks = list(store.to_ndarray(count=_CHUNK, schema=schema))
    if not chunks:
        return store.to_ndarray(schema=schema)[:0]
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
