"""A fan-out worker's start-up (issue 20): the detection pass must not import ``databento`` or
``scipy.stats`` (1.5 s and 1.3 s of every worker process), and what replaces them must give the
same results as the libraries they stand in for."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from ifd_core.analysis.black76 import gamma, norm_pdf
from ifd_core.marketdata.dbn_files import _STRUCTS, SCHEMA_TABLE, read_dbn
from tests.fixtures import dbn_factory as f


def test_the_density_is_scipys_bit_for_bit():
    from scipy.stats import norm

    rng = np.random.default_rng(7)
    x = np.concatenate(
        [
            rng.normal(0, 3, 200_000),
            rng.uniform(-40, 40, 200_000),
            [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-300, 38.5, -38.5, 1e10],
        ]
    )
    assert np.array_equal(norm_pdf(x), norm.pdf(x), equal_nan=True)


def test_gamma_is_the_textbook_formula():
    f_, k, tau, vol = 20_000.0, 20_100.0, 0.05, 0.22
    d1 = (np.log(f_ / k) + 0.5 * vol * vol * tau) / (vol * np.sqrt(tau))
    want = np.exp(-0.04 * tau) * np.exp(-0.5 * d1 * d1) / np.sqrt(2 * np.pi) / (f_ * vol * tau**0.5)
    assert np.isclose(gamma(f_, k, tau, vol), want, rtol=1e-12)


def test_the_record_layouts_are_databentos():
    from databento.common import constants as c

    for version, table in (
        (1, c.SCHEMA_STRUCT_MAP_V1),
        (2, c.SCHEMA_STRUCT_MAP_V2),
        (3, c.SCHEMA_STRUCT_MAP),
    ):
        theirs = {str(s): cls for s, cls in table.items() if str(s) in SCHEMA_TABLE}
        assert _STRUCTS[version] == theirs, version


def test_the_header_reads_as_dbnstore_reads_it(tmp_path):
    import databento as db

    path = f.mbo_file(tmp_path / "a.mbo.dbn.zst", f.simple_book_rows(7), {"NQ 1": 7})
    batch = read_dbn(path)
    store = db.DBNStore.from_file(path)
    assert batch.dataset == store.metadata.dataset
    assert batch.schema == str(store.schema) == "mbo"
    assert batch.symbols == list(store.metadata.symbols)
    assert batch.start_ns == store.metadata.start
    assert np.array_equal(batch.arrays["mbo"], store.to_ndarray())


def test_the_detection_pass_does_not_import_databento_or_scipy_stats(tmp_path):
    path = f.mbo_file(tmp_path / "a.mbo.dbn.zst", f.simple_book_rows(7), {"NQ 1": 7})
    code = (
        "import sys, jobs.backtest\n"
        "from ifd_core.marketdata.dbn_files import read_dbn\n"
        f"assert len(read_dbn({str(path)!r}).arrays['mbo']) == 6\n"
        "print(sorted(m for m in ('databento', 'scipy.stats', 'pandas') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
