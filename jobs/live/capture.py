"""The capture: the stream a live run consumed for one trade date, as an uncompressed DBN file.

A restart replays it through a fresh engine, and at the end of the date it is compressed and
ingested into the raw zone like a Historical download (only the records the lake lacks).
"""

from __future__ import annotations

import os
from pathlib import Path

from ifd_core.marketdata.dbn_files import SYNTHETIC_MARKER
from ifd_core.marketdata.dbn_stream import parse_records
from ifd_core.marketdata.record_source import RecordBatch


class Capture:
    """The consumed stream of one trade date as an uncompressed DBN file (header, then records
    appended in stream order). Uncompressed so a crash leaves at most a cut-off last record,
    which ``open`` trims."""

    def __init__(self, path: Path, dataset: str, start_ns: int, synthetic: bool) -> None:
        import databento_dbn as dbn

        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            symbols = ["NQ.OPT"] + ([SYNTHETIC_MARKER] if synthetic else [])
            meta = dbn.Metadata(
                dataset=dataset,
                start=start_ns,
                stype_in=dbn.SType.PARENT,
                stype_out=dbn.SType.INSTRUMENT_ID,
                schema=None,
                symbols=symbols,
                partial=[],
                not_found=[],
                mappings=[],
            )
            path.write_bytes(bytes(meta))
        self._trim()
        self._fh = path.open("ab")
        self.records = self._count()

    def _header_len(self, data: bytes) -> int:
        return 8 + int.from_bytes(data[4:8], "little")

    def _trim(self) -> None:
        data = self.path.read_bytes()
        body = data[self._header_len(data) :]
        parsed_len = parse_records(body, "capture").consumed
        if parsed_len != len(body):
            with self.path.open("r+b") as fh:
                fh.truncate(self._header_len(data) + parsed_len)

    def _count(self) -> int:
        return sum(len(b) for b in self.read())

    def read(self) -> list[RecordBatch]:
        data = self.path.read_bytes()
        return parse_records(data[self._header_len(data) :], "capture").batches

    def write(self, batch: RecordBatch) -> None:
        self._fh.write(batch.records.tobytes())
        self.records += len(batch)

    def sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def compress(self, target: Path) -> Path:
        import zstandard

        self.sync()
        tmp = target.with_suffix(target.suffix + ".inprogress")
        with self.path.open("rb") as src, tmp.open("wb") as dst:
            zstandard.ZstdCompressor(level=3).copy_stream(src, dst)
        os.replace(tmp, target)
        return target
