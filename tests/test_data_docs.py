"""Great Expectations Data Docs: built from the validations of an ingest run into
<data>/reports/data-docs/ (served by `ifd serve`), kept across runs, linked from the DQ report."""

from __future__ import annotations

import time

from expectations.data_docs import publish_data_docs
from reports.dq import write_dq_report
from tests.fixtures import dbn_factory as f
from warehouse.ingest import ingest_files

SYM = {"NQM6 C21000": 5001}


def _drain(tmp_path) -> None:
    """Results other tests of this process left in GX's in-memory store go elsewhere."""
    publish_data_docs(tmp_path / "other-tests")


def _ingest(tmp_path, lake, name: str, rows):
    d = f.definition_file(tmp_path / f"{name}.def.dbn.zst", {"NQM6 C21000": (5001, 21000.0)})
    p = f.mbo_file(tmp_path / f"{name}.mbo.dbn.zst", rows, SYM)
    return ingest_files([d, p], lake)


def test_data_docs_index_names_the_suites_and_the_dq_report_links_it(tmp_path, lake, data_dir):
    _drain(tmp_path)
    report = _ingest(tmp_path, lake, "a", f.simple_book_rows(5001))
    assert report.ok
    t0 = time.perf_counter()
    docs = publish_data_docs(data_dir)
    print(f"Data Docs build: {time.perf_counter() - t0:.2f} s for {docs.published} results")
    assert docs.index == data_dir / "reports" / "data-docs" / "index.html"
    assert docs.index.is_file()
    assert docs.published == 2 and docs.suites == ("ifd_instruments", "ifd_mbo")
    index = docs.index.read_text()
    assert "ifd_mbo" in index and "ifd_instruments" in index
    pages = sorted((docs.index.parent / "validations" / "ifd_mbo").rglob("*.html"))
    assert len(pages) == 1
    page = pages[0].read_text()
    assert "values must belong to this set" in page and "Succeeded" in page
    assert report.run_id in str(pages[0]) and report.run_id in page  # IFD's run id names it

    dq = write_dq_report(lake, data_dir, report.run_id).read_text()
    assert 'href="data-docs/index.html"' in dq and "Data Docs" in dq


def test_data_docs_keep_earlier_runs_and_show_failures(tmp_path, lake, data_dir):
    _drain(tmp_path)
    assert _ingest(tmp_path, lake, "a", f.simple_book_rows(5001)).ok
    first = publish_data_docs(data_dir)
    rows = f.simple_book_rows(5001)
    rows[1] = {**rows[1], "price": 12.10}  # off the option's tick grid: quarantined
    bad = _ingest(tmp_path, lake, "b", rows)
    assert not bad.ok
    second = publish_data_docs(data_dir)
    assert second.published >= 1
    listed = second.index.read_text()
    pages = sorted((second.index.parent / "validations" / "ifd_mbo").rglob("*.html"))
    assert len(pages) == 2, pages  # the first run's page survived the second build
    assert first.index == second.index
    assert bad.run_id in listed
    failed = [p for p in pages if bad.run_id in str(p)]
    assert len(failed) == 1 and "Failed" in failed[0].read_text()


def test_dq_report_says_when_there_are_no_data_docs_yet(tmp_path, lake, data_dir):
    report = _ingest(tmp_path, lake, "a", f.simple_book_rows(5001))
    page = write_dq_report(lake, data_dir, report.run_id).read_text()
    assert "No Great Expectations Data Docs yet" in page
