"""Reading DBN files within memory limits, frame by frame: decompression bombs, multi-frame zstd,
files cut at a frame boundary, and paths that are not regular files."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import databento_dbn as dbn
import pytest
import zstandard

from ifd_core.marketdata import dbn_files
from ifd_core.marketdata.dbn_files import DEFAULT_LIMITS, DbnFileError, DecodeLimits, read_dbn
from tests.conftest import DBPY, NT, SAMPLES
from tests.fixtures import dbn_factory as f

MiB = 1024 * 1024
SYMBOLS = {"NQM6 C21000": 5001}
SKIPPABLE = (0x184D2A53).to_bytes(4, "little") + (6).to_bytes(4, "little") + b"ignore"


def header() -> bytes:
    return bytes(f._meta(dbn.Schema.MBO, SYMBOLS))


def bomb(path, zero_mib: int):
    """A valid DBN header, then ``zero_mib`` MiB of zero bytes, streamed through zstd: the test
    never holds more than 1 MiB of it."""
    block = bytes(MiB)
    with path.open("wb") as fh, zstandard.ZstdCompressor().stream_writer(fh, closefd=False) as w:
        w.write(header())
        for _ in range(zero_mib):
            w.write(block)
    return path


def plain_mbo(tmp_path, copies: int = 20) -> bytes:
    rows = f.simple_book_rows(5001) * copies
    return f.mbo_file(tmp_path / "plain.mbo.dbn", rows, SYMBOLS, compress=False).read_bytes()


def frames(raw: bytes, cuts: list[int]) -> list[bytes]:
    """``raw`` compressed as one zstd frame per piece between ``cuts``."""
    c = zstandard.ZstdCompressor()
    edges = [0, *cuts, len(raw)]
    return [c.compress(raw[a:b]) for a, b in zip(edges, edges[1:], strict=False)]


def first_line_of(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------ decompression limits


def test_the_default_limits_are_the_settings_defaults(monkeypatch):
    from ifd_core.settings import get_settings

    assert DecodeLimits.from_settings(get_settings()) == DEFAULT_LIMITS == DecodeLimits()
    assert DEFAULT_LIMITS.max_bytes == 16 * 1024**3 and DEFAULT_LIMITS.ratio_floor == 64 * MiB
    monkeypatch.setenv("IFD_WAREHOUSE__MAX_DECOMPRESSED_BYTES", "123456789")
    monkeypatch.setenv("IFD_WAREHOUSE__MAX_COMPRESSION_RATIO", "42")
    limits = DecodeLimits.from_settings(get_settings())
    assert (limits.max_bytes, limits.max_ratio) == (123456789, 42.0)
    with pytest.raises(ValueError):
        DecodeLimits(max_ratio=1)


def test_a_bomb_is_refused_by_the_ratio_limit(tmp_path):
    p = bomb(tmp_path / "bomb.mbo.dbn.zst", 48)
    limits = DecodeLimits(max_bytes=1024 * MiB, max_ratio=100, ratio_floor=4 * MiB)
    with pytest.raises(DbnFileError) as exc:
        read_dbn(p, limits=limits)
    msg = first_line_of(exc)
    assert "expands more than 100x" in msg and "warehouse.max_compression_ratio" in msg
    assert "IFD_WAREHOUSE__MAX_COMPRESSION_RATIO" in msg
    # Refused at a check soon past the floor, long before the 48 MiB were decompressed.
    reached = float(re.search(r"\((\d+\.\d) MiB from", msg).group(1))
    assert 4 <= reached <= 16


def test_a_bomb_is_refused_by_the_size_limit(tmp_path):
    p = bomb(tmp_path / "bomb.mbo.dbn.zst", 48)
    limits = DecodeLimits(max_bytes=5 * MiB, max_ratio=1e9)
    with pytest.raises(DbnFileError) as exc:
        read_dbn(p, limits=limits)
    msg = first_line_of(exc)
    assert "decompresses to more than 5.0 MiB (refused at 5.0 MiB)" in msg
    assert "warehouse.max_decompressed_bytes" in msg
    assert "IFD_WAREHOUSE__MAX_DECOMPRESSED_BYTES" in msg
    assert "ratio" not in msg


def test_the_ratio_is_not_checked_below_its_floor(tmp_path):
    """A small file may compress extremely well: below the floor only the size limit applies."""
    p = bomb(tmp_path / "zeros.mbo.dbn.zst", 2)
    with pytest.raises(DbnFileError, match="corrupt DBN record"):  # decoded, then refused
        read_dbn(p, limits=DecodeLimits(max_ratio=2, ratio_floor=8 * MiB))


def test_a_plain_file_is_held_to_the_size_limit_by_its_size(tmp_path):
    raw = plain_mbo(tmp_path)
    p = tmp_path / "big.mbo.dbn"
    p.write_bytes(raw)
    assert read_dbn(p, limits=DecodeLimits(max_bytes=len(raw))).record_count == 120
    with pytest.raises(DbnFileError) as exc:
        read_dbn(p, limits=DecodeLimits(max_bytes=len(raw) - 1))
    msg = first_line_of(exc)
    assert f"is {len(raw) / 1024:.1f} KiB, more than" in msg
    assert "IFD_WAREHOUSE__MAX_DECOMPRESSED_BYTES" in msg


def test_a_2_gib_bomb_is_refused_with_a_small_memory_peak(tmp_path):
    """The hostile tester's case: a ~64 KB .dbn.zst holding 2 GiB of zeros, default limits, in a
    process of its own whose peak resident memory is measured (it used 4.3 GB before)."""
    p = bomb(tmp_path / "bomb.mbo.dbn.zst", 2048)
    assert p.stat().st_size < 200_000
    root = Path(dbn_files.__file__).parents[2]  # the code under test, wherever it is
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(root)!r})
        import databento  # imported before the baseline is taken
        from ifd_core.marketdata.dbn_files import DbnFileError, read_dbn

        def hwm():  # this process's peak (ru_maxrss would start at the forking parent's)
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])

        base = hwm()
        try:
            read_dbn({str(p)!r})
            sys.exit("the bomb was decoded")
        except DbnFileError as exc:
            print(exc)
        print(base, hwm())
        """
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert res.returncode == 0, res.stderr
    message, numbers = res.stdout.strip().splitlines()
    base_kib, peak_kib = map(int, numbers.split())
    assert "warehouse.max_compression_ratio" in message
    # Decompressing stops at the 64 MiB floor: imports + buffer + a chunk, nowhere near 2 GiB.
    assert peak_kib < 400 * 1024, f"peak RSS {peak_kib // 1024} MB: {res.stdout}"
    assert peak_kib - base_kib < 150 * 1024, f"grew {(peak_kib - base_kib) // 1024} MB"


# ------------------------------------------------------------------ zstd frames


def test_a_multi_frame_file_with_skippable_frames_reads_like_the_plain_file(tmp_path):
    raw = plain_mbo(tmp_path)
    expected = read_dbn(tmp_path / "plain.mbo.dbn")
    parts = frames(raw, [5, 300, 301, 2000, len(raw) - 7])  # cuts mid-header and mid-record
    p = tmp_path / "multi.mbo.dbn.zst"
    p.write_bytes(SKIPPABLE.join([b"", *parts]) + SKIPPABLE)
    got = read_dbn(p)
    assert got.arrays["mbo"].tobytes() == expected.arrays["mbo"].tobytes()
    assert got.content_key() == expected.content_key() and got.record_count == 120


def test_a_file_cut_at_a_frame_boundary_mid_record_is_named(tmp_path):
    raw = plain_mbo(tmp_path)
    meta_end = len(raw) - 120 * 56
    parts = frames(raw, [meta_end + 10 * 56 + 20])  # frame 1 ends inside record 11
    p = tmp_path / "cut.mbo.dbn.zst"
    p.write_bytes(parts[0])
    with pytest.raises(DbnFileError) as exc:
        read_dbn(p)
    assert first_line_of(exc) == (
        "cut.mbo.dbn.zst: the file ends mid-record at a zstd frame boundary: it was cut short; "
        "fetch it again"
    )


def test_a_file_cut_at_a_frame_boundary_inside_the_metadata_is_named(tmp_path):
    parts = frames(plain_mbo(tmp_path), [40])
    p = tmp_path / "cut.mbo.dbn.zst"
    p.write_bytes(parts[0])
    with pytest.raises(DbnFileError, match="ends inside the DBN metadata at a zstd frame"):
        read_dbn(p)


def test_a_cut_on_both_a_frame_and_a_record_boundary_cannot_be_seen(tmp_path):
    """Documented limit: nothing in the bytes (nor in DBN metadata) says records are missing."""
    raw = plain_mbo(tmp_path)
    parts = frames(raw, [len(raw) - 60 * 56])
    p = tmp_path / "half.mbo.dbn.zst"
    p.write_bytes(parts[0])
    assert read_dbn(p).record_count == 60


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda parts: parts[0] + parts[1][:-5], id="inside-the-last-frame"),
        pytest.param(lambda parts: parts[0] + parts[1][:2], id="inside-the-next-magic"),
        pytest.param(lambda parts: parts[0] + parts[1][:6], id="inside-a-frame-header"),
        pytest.param(lambda parts: parts[0] + parts[1] + SKIPPABLE[:-2], id="inside-a-skippable"),
    ],
)
def test_a_stream_cut_inside_a_frame_is_truncated(tmp_path, cut):
    raw = plain_mbo(tmp_path)
    p = tmp_path / "cut.mbo.dbn.zst"
    p.write_bytes(cut(frames(raw, [len(raw) // 2])))
    with pytest.raises(DbnFileError, match="truncated zstd stream"):
        read_dbn(p)


def test_bytes_after_the_last_frame_are_corrupt_data(tmp_path):
    raw = plain_mbo(tmp_path)
    p = tmp_path / "tail.mbo.dbn.zst"
    p.write_bytes(b"".join(frames(raw, [100])) + b"not zstd at all")
    with pytest.raises(DbnFileError, match="corrupt zstd data"):
        read_dbn(p)


@pytest.mark.usefixtures("samples")
def test_a_mixed_live_file_cut_at_a_frame_boundary_mid_record_is_named(tmp_path):
    raw = zstandard.ZstdDecompressor().stream_reader(
        (DBPY / "LIVE/test_data.live.dbn.zst").open("rb")
    )
    data = raw.read()
    p = tmp_path / "live.dbn.zst"
    p.write_bytes(frames(data, [len(data) - 9])[0])
    with pytest.raises(DbnFileError, match="ends mid-record at a zstd frame boundary"):
        read_dbn(p)


@pytest.mark.usefixtures("samples")
def test_old_versions_and_mixed_files_are_decoded_from_memory(monkeypatch):
    """v1/v2 and live files are not read (and decompressed) a second time by databento."""
    import databento as db

    expected = {
        NT / "esh4-glbx-mdp3-20231225.mbo.dbn.zst": ("mbo", 68_792),
        NT / "esh4-glbx-mdp3-20231224.mbo.dbn.zst": ("mbo", 8_725),
        DBPY / "LIVE/test_data.live.dbn.zst": ("mbo", 5),
    }

    def no_second_read(*args, **kwargs):
        raise AssertionError("DBNStore.from_file called")

    monkeypatch.setattr(db.DBNStore, "from_file", no_second_read)
    for path, (schema, n) in expected.items():
        assert len(read_dbn(path).arrays[schema]) == n
    v2 = SAMPLES / "dbn/tests/data/test_data.mbo.v2.dbn.zst"
    v3 = SAMPLES / "dbn/tests/data/test_data.mbo.v3.dbn"
    assert read_dbn(v2).content_key() == read_dbn(v3).content_key()


# ------------------------------------------------------------------ what a path is


def test_a_symlink_loop_is_named(tmp_path):
    p = tmp_path / "loop.dbn.zst"
    p.symlink_to(tmp_path / "loop.dbn.zst")
    with pytest.raises(DbnFileError, match="is a symlink loop"):
        read_dbn(p)


def test_a_broken_symlink_is_named_with_its_target(tmp_path):
    p = tmp_path / "link.dbn.zst"
    p.symlink_to(tmp_path / "gone.dbn.zst")
    with pytest.raises(DbnFileError) as exc:
        read_dbn(p)
    assert first_line_of(exc).endswith(f"is a broken symlink to {tmp_path / 'gone.dbn.zst'}")


@pytest.mark.timeout(30)
def test_a_fifo_is_named_without_being_opened(tmp_path):
    p = tmp_path / "pipe.dbn.zst"
    os.mkfifo(p)
    with pytest.raises(DbnFileError) as exc:
        read_dbn(p)
    assert first_line_of(exc) == "pipe.dbn.zst: is a FIFO (named pipe), not a regular file"


def test_a_socket_and_a_device_are_named(tmp_path):
    path = tmp_path / "s.dbn"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        with pytest.raises(DbnFileError, match="is a socket, not a regular file"):
            read_dbn(path)
    with pytest.raises(DbnFileError, match="is a character device, not a regular file"):
        read_dbn("/dev/null")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_permission_denied_is_named(tmp_path):
    p = tmp_path / "secret.mbo.dbn"
    p.write_bytes(plain_mbo(tmp_path))
    p.chmod(0)
    with pytest.raises(DbnFileError, match="permission denied"):
        read_dbn(p)


# ------------------------------------------------------------------ header text


@pytest.mark.parametrize(
    ("good", "bad", "field"),
    [
        (b"GLBX.MDP3", b"GLBX\xff\xfeDP3", "dataset"),
        (b"NQM6 C21000", b"NQM6 \xc3(1000", "symbol at index 0"),
    ],
)
@pytest.mark.parametrize("compress", [True, False])
def test_header_text_that_is_not_utf8_is_said_in_words(tmp_path, good, bad, field, compress):
    meta = header()
    assert good in meta
    raw = meta.replace(good, bad, 1) + f.mbo_array(f.simple_book_rows(5001)).tobytes()
    p = tmp_path / ("bad.mbo.dbn.zst" if compress else "bad.mbo.dbn")
    p.write_bytes(zstandard.ZstdCompressor().compress(raw) if compress else raw)
    with pytest.raises(DbnFileError) as exc:
        read_dbn(p)
    assert first_line_of(exc) == (
        f"{p.name}: the DBN header holds text that is not valid UTF-8 ({field}); "
        "the file is corrupt"
    )
