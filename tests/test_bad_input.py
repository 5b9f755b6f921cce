"""Bad input gets one clear line, a non-zero exit, and leaves the warehouse unchanged."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ifd_cli.app import EXIT_DATA, EXIT_USAGE, app
from tests.conftest import DBPY
from tests.fixtures import dbn_factory as f
from tests.helpers import lake_fingerprint

runner = CliRunner()
SYMBOLS = {"NQM6 C21000": (5001, 21000.0)}


@pytest.fixture
def loaded(tmp_path, data_dir):
    """A warehouse that already holds a definition and a valid day of MBO."""
    d = f.definition_file(tmp_path / "def.dbn.zst", SYMBOLS)
    m = f.mbo_file(tmp_path / "ok.mbo.dbn.zst", f.simple_book_rows(5001), {"NQM6 C21000": 5001})
    res = runner.invoke(app, ["ingest", str(d), str(m)])
    assert res.exit_code == 0, res.output
    return lake_fingerprint(data_dir)


def ingest_fails(path, data_dir, before, expect: str) -> str:
    res = runner.invoke(app, ["ingest", str(path)])
    assert res.exit_code == EXIT_DATA, res.output
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert expect in lines[0], lines[0]
    assert lake_fingerprint(data_dir) == before
    return lines[0]


def test_truncated_file(tmp_path, data_dir, loaded):
    good = f.mbo_file(
        tmp_path / "x.mbo.dbn.zst", f.simple_book_rows(5001) * 50, {"NQM6 C21000": 5001}
    )
    cut = tmp_path / "cut.mbo.dbn.zst"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size - 40])
    ingest_fails(cut, data_dir, loaded, "truncated")


def test_truncated_uncompressed_file(tmp_path, data_dir, loaded):
    good = f.mbo_file(
        tmp_path / "x.mbo.dbn", f.simple_book_rows(5001), {"NQM6 C21000": 5001}, compress=False
    )
    cut = tmp_path / "cut.mbo.dbn"
    cut.write_bytes(good.read_bytes()[:-10])
    ingest_fails(cut, data_dir, loaded, "truncated")


def test_non_dbn_file(tmp_path, data_dir, loaded):
    p = tmp_path / "notes.dbn.zst"
    p.write_text("date,price\n2026-03-02,21000\n")
    ingest_fails(p, data_dir, loaded, "not a DBN file")


def test_unsupported_dataset(data_dir, loaded):
    ingest_fails(
        DBPY / "OPRA.PILLAR/test_data.trades.dbn.zst", data_dir, loaded, "IFD handles CME Globex"
    )


def test_unsupported_schema(data_dir, loaded):
    ingest_fails(
        DBPY / "GLBX.MDP3/test_data.mbp-10.dbn.zst", data_dir, loaded, "schema mbp-10 is not kept"
    )


def test_mbo_without_definition(tmp_path, data_dir, loaded):
    p = f.mbo_file(tmp_path / "orphan.mbo.dbn.zst", f.simple_book_rows(7777), {"NQM6 P20000": 7777})
    line = ingest_fails(p, data_dir, loaded, "no definition")
    assert "7777" in line
    quarantined = list((data_dir / "quarantine").iterdir())
    assert len(quarantined) == 1 and (quarantined[0] / "orphan.mbo.dbn.zst").exists()


def test_empty_file(tmp_path, data_dir, loaded):
    p = tmp_path / "empty.mbo.dbn.zst"
    p.write_bytes(b"")
    ingest_fails(p, data_dir, loaded, "empty file")


def test_file_with_no_records(tmp_path, data_dir, loaded):
    p = f.mbo_file(tmp_path / "none.mbo.dbn.zst", [], {"NQM6 C21000": 5001})
    ingest_fails(p, data_dir, loaded, "no records")


def test_missing_path_is_a_usage_error(tmp_path, data_dir, loaded):
    res = runner.invoke(app, ["ingest", str(tmp_path / "nope.dbn.zst")])
    assert res.exit_code == EXIT_USAGE, res.output
    assert "no such file" in res.stderr
    assert lake_fingerprint(data_dir) == loaded


def test_a_file_name_of_240_characters_ingests(tmp_path, data_dir):
    d = f.definition_file(tmp_path / "def.dbn.zst", SYMBOLS)
    long = tmp_path / ("glbx-mdp3-20260302-" + "x" * 220 + ".mbo.dbn.zst")
    f.mbo_file(long, f.simple_book_rows(5001), {"NQM6 C21000": 5001})
    assert len(long.name) > 240
    res = runner.invoke(app, ["ingest", str(d), str(long)])
    assert res.exit_code == 0, res.output
    raw = [p for p in (data_dir / "raw").rglob("*.mbo.dbn.zst")]
    assert len(raw) == 1 and len(raw[0].name.encode()) <= 200 and "~" in raw[0].name


def test_a_long_named_file_that_fails_validation_is_quarantined(tmp_path, data_dir):
    long = tmp_path / ("z" * 230 + ".mbo.dbn.zst")  # no definitions: fails validation
    f.mbo_file(long, f.simple_book_rows(5001), {"NQM6 C21000": 5001})
    res = runner.invoke(app, ["ingest", str(long)])
    assert res.exit_code == EXIT_DATA, res.output
    (qdir,) = list((data_dir / "quarantine").iterdir())
    assert (qdir / "reason.txt").read_text().startswith(long.name)
