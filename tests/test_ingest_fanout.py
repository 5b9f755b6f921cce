"""A multi-file ingest fanned out over processes lands exactly what a sequential one does, and
several processes writing one lake at once (a fresh data root: the migrations race) lose and
double nothing (docs/operations.md, "Scaling out"; docs/lake.md, "Several writers")."""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pytest

from tests.helpers import lake_tables
from warehouse.ingest import ingest_files
from warehouse.lake import Lake

MARKET = ["instruments", "statistics", "open_interest", "settlements", "mbo", "trades"]


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """Two SYNTHETIC sessions (6 files), ingested once one after another: the reference."""
    from ifd_core.simulator.market import simulate_market

    root = tmp_path_factory.mktemp("synthetic-fanout")
    summary = simulate_market(root / "sim", 2, 11, scale=0.02)  # SYNTHETIC
    done: list[str] = []
    report = ingest_files(summary.files, Lake(root / "seq"), progress=lambda r: done.append(r))
    assert report.ok and len(done) == len(summary.files)
    return {"root": root, "files": summary.files, "seq": report}


def _summary(report) -> list[tuple]:
    return [(r.path.name, r.status, r.rows, r.duplicates, len(r.dq)) for r in report.files]


def test_fanned_out_ingest_lands_what_the_sequential_one_does(market, tmp_path):
    from expectations.data_docs import publish_data_docs
    from jobs.fanout import process_pool_mapper

    publish_data_docs(tmp_path / "other-runs")  # the reference run's results stay out of it
    seen = []
    with process_pool_mapper(2) as mapper:
        par = ingest_files(
            market["files"], Lake(tmp_path / "par"), mapper=mapper, progress=seen.append
        )
    assert par.ok
    assert _summary(par) == _summary(market["seq"])  # same files, order, rows, checks
    assert sorted(r.path for r in seen) == sorted(r.path for r in par.files)  # once per file
    assert {r.run_id for r in [par]} and all(
        row["run_id"] == par.run_id for r in par.files for row in r.dq
    )  # one run id for the run, whichever process validated
    ref, got = lake_tables(market["root"] / "seq"), lake_tables(tmp_path / "par")
    for t in ref:
        assert ref[t].equals(got[t]), t
    log = Lake(tmp_path / "par").scan("ingest_log").collect()
    assert log["run_id"].unique().to_list() == [par.run_id]
    # The workers' Great Expectations results reach the run's Data Docs (stashed on disk).
    docs = publish_data_docs(tmp_path / "par")
    assert docs.published == sum(len({row["dataset"] for row in r.dq}) for r in par.files)


def _ingest_alone(job: tuple[list[str], str]) -> list[tuple]:
    """One independent writer process: its own ingest run of ``paths`` into ``data_dir``."""
    paths, data_dir = job
    report = ingest_files(paths, Lake(Path(data_dir)))
    return [(r.path.name, r.status, r.reason, r.rows, r.duplicates) for r in report.files]


@pytest.mark.slow
def test_three_writers_at_once_on_a_fresh_root_lose_and_double_nothing(market, tmp_path):
    """Three processes start on an empty data root at once (each migrates the catalog), then
    three write the same and different dates at once, one file twice (LakeConflict retries)."""
    files = {Path(f).name: str(f) for f in market["files"]}
    defs = [n for n in files if ".definition." in n]
    rest = [n for n in files if n not in defs]
    data = str(tmp_path / "many")
    ctx = get_context("spawn")
    with ProcessPoolExecutor(3, mp_context=ctx) as pool:
        first = list(pool.map(_ingest_alone, [([files[d]], data) for d in defs] + [([], data)]))
        mbo = next(n for n in rest if ".mbo." in n)
        second = list(
            pool.map(
                _ingest_alone,
                [
                    ([files[rest[0]], files[rest[1]]], data),
                    ([files[n] for n in rest[2:]], data),
                    ([files[mbo]], data),
                ],
            )
        )
    results = [r for run in first + second for r in run]
    assert all(status == "loaded" for _, status, *_ in results), results
    ref = lake_tables(market["root"] / "seq", MARKET)
    got = lake_tables(tmp_path / "many", MARKET)
    for t in MARKET:
        assert ref[t].equals(got[t]), t  # nothing lost, nothing doubled
    twice = [r for r in results if r[0] == mbo]
    assert len(twice) == 2
    assert sorted(sum(r[3].values()) for r in twice)[0] == 0  # the later copy added nothing
    log = Lake(tmp_path / "many").scan("ingest_log").collect()
    assert log.height == len(files) + 1
    added = sum(sum(json.loads(x).values()) for x in log["rows"])
    assert added == sum(sum(r.rows.values()) for r in market["seq"].files)
    from warehouse.migrations import ALL_VERSIONS, current_state

    assert current_state(Lake(tmp_path / "many"))[0] == ALL_VERSIONS


def test_a_file_job_retried_after_its_commit_reports_the_first_attempt(market, tmp_path):
    """A worker killed after committing a file but before returning it: the retried job (Dask
    reschedules it, Prefect retries the task) reports what the first attempt added, and the
    run's log still says so (a second "0 rows" row under the same key would erase it)."""
    from jobs.fanout import inline_map

    first_call: list = []

    def mapper(fn, items, done=None):
        out = inline_map(fn, items, done=done)
        market = [i for i, job in enumerate(items) if ".mbo." in job.path.name]
        if len(items) > 1 and market and not first_call:  # a market file's job runs again
            first_call.append(items[market[-1]])
            out[market[-1]] = fn(items[market[-1]])
        return out

    report = ingest_files(market["files"], Lake(tmp_path / "retried"), mapper=mapper)
    assert first_call  # the retry path ran
    assert _summary(report) == _summary(market["seq"])
    log = Lake(tmp_path / "retried").scan("ingest_log").collect()
    assert log.height == len(market["files"])
    added = sum(sum(json.loads(x).values()) for x in log["rows"])
    assert added == sum(sum(r.rows.values()) for r in market["seq"].files) > 0


def test_a_file_named_twice_is_ingested_once(market, tmp_path):
    f = market["files"][0]
    report = ingest_files([f, str(f)], Lake(tmp_path / "twice"))
    assert [r.path for r in report.files] == [Path(f)]


def test_the_next_file_is_read_while_this_one_commits(market, tmp_path, monkeypatch):
    """In one process the next file decompresses on another thread while this one is validated
    and written (warehouse/ingest.py, ``_sequential``); the commits keep their order."""
    import threading

    import warehouse.ingest as ingest

    files = [p for p in market["files"] if ".mbo." in p.name]
    assert len(files) == 2
    read_second, events = threading.Event(), []
    read_dbn, commit_batch = ingest.read_dbn, ingest._commit_batch

    def reading(path, **kw):
        events.append(("read", Path(path).name))
        if Path(path) == files[1]:
            read_second.set()
        return read_dbn(path, **kw)

    def committing(lake, path, *args):
        if path == files[0]:  # without the read-ahead the second read would never come
            assert read_second.wait(30), "the next file was not read during this commit"
        events.append(("commit", path.name))
        return commit_batch(lake, path, *args)

    monkeypatch.setattr(ingest, "read_dbn", reading)
    monkeypatch.setattr(ingest, "_commit_batch", committing)
    lake = Lake(tmp_path / "ahead")
    assert ingest_files([p for p in market["files"] if p not in files], lake).ok
    events.clear()
    report = ingest_files(files, lake)
    assert report.ok
    names = [p.name for p in files]
    assert [e for e in events if e[0] == "commit"] == [("commit", n) for n in names]
    assert events.index(("read", names[1])) < events.index(("commit", names[0]))
