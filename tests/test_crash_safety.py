"""Killed at every publish step, the lake shows the old state or the new one, and recovers.

For a first ingest, a re-ingest, a detection run and a compaction, each failpoint the unit
passes (enumerated from a traced run, not listed by hand) is hit by a real SIGKILL and by a real
SIGINT of the process doing the work. After each: readers (the lake's pinned reads and DuckDB
views) see exactly the rows of the complete old state or of the complete new state; the next
command (the same one again) restores the reference state; and ingest_log, dq_results and
engine_runs agree with the data. A reader polling during a clean run sees only those two states.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import polars as pl
import pytest

from ifd_core.failpoints import POINTS
from tests.conftest import NT
from tests.helpers import recut
from warehouse.lake import Lake
from warehouse.sql import query

pytestmark = pytest.mark.slow

MBO = (
    NT
    / "order_book_deltas_catalog/databento/orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst"
)  # noqa: E501
DEFS = NT / "order_book_deltas_catalog/databento/orderbooks_definition.dbn.zst"
TABLES = (
    "mbo",
    "trades",
    "pressure_windows",
    "option_flow_daily",
    "engine_runs",
    "signals",
    "signal_outcomes",
    "baselines",
    "incidents",
    "dq_results",
    "ingest_log",
)
DATA_TABLES = TABLES[:-2]  # the log tables grow by one row per (re)run: checked by agreement
SAMPLED = {"commit.pv", "commit.snap", "commit.switched"}


class Zygote:
    """tests/crash_harness.py as a child process: forks one IFD command per request."""

    def __init__(self) -> None:
        root = Path(__file__).resolve().parents[1]
        env = {**os.environ, "PYTHONPATH": str(root)}
        env.pop("IFD_FAILPOINTS", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.crash_harness"],
            cwd=root,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert json.loads(self.proc.stdout.readline())["ready"]

    def run(self, data_dir: Path, env: dict | None = None, **req) -> int:
        env = {"IFD_WAREHOUSE__DATA_DIR": str(data_dir), "IFD_FAILPOINTS": "", **(env or {})}
        self.proc.stdin.write(json.dumps({**req, "env": env}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["status"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def zygote():
    z = Zygote()
    yield z
    z.close()


def state(data_dir: Path, tables=DATA_TABLES) -> dict[str, int]:
    """Row counts as the lake's pinned reads see them, checked against the DuckDB views."""
    lake = Lake(data_dir)
    while True:
        snap = lake.snapshot_id()
        pinned = {t: lake.scan(t).select(pl.len()).collect().item() for t in tables}
        sql = " UNION ALL ".join(f"SELECT '{t}' AS t, count(*) AS n FROM {t}" for t in tables)
        views = dict(query(lake, sql).iter_rows())
        files = {f"files:{t}": len(lake.files(t)) for t in tables}
        if lake.snapshot_id() == snap:  # else a writer committed between the two reads
            assert views == pinned, (views, pinned)
            return pinned | files


def agree(data_dir: Path) -> None:
    """The logs say what the data holds."""
    lake = Lake(data_dir)
    log = lake.scan("ingest_log").collect()
    added: dict[str, int] = {}
    for rows in log["rows"]:
        for t, n in json.loads(rows).items():
            added[t] = added.get(t, 0) + n
    for t in ("mbo", "trades", "instruments"):
        n = lake.scan(t).select(pl.len()).collect().item()
        assert added.get(t, 0) == n, (t, added.get(t, 0), n)
    dq_runs = set(lake.scan("dq_results").select("run_id").unique().collect()["run_id"])
    assert dq_runs <= set(log["run_id"]), "data-quality results of an ingest that never landed"
    runs = lake.scan("engine_runs").collect()
    for day, windows in runs.group_by("date").agg(pl.col("windows").max()).iter_rows():
        stored = lake.scan("pressure_windows").filter(pl.col("date") == day).collect().height
        assert stored == windows, (day, stored, windows)


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def points_of(zygote, base: Path, tmp: Path, **req) -> list[str]:
    """The failpoints a clean run of the unit passes, in order."""
    d = copy(base, tmp / "traced")
    trace = tmp / "trace.txt"
    assert zygote.run(d, env={"IFD_FAILPOINTS_TRACE": str(trace)}, **req) == 0
    hit = list(dict.fromkeys(trace.read_text().split()))
    assert set(hit) <= set(POINTS)
    return hit


def crash_everywhere(
    zygote, base: Path, tmp: Path, unit_points: set[str], interrupt_at=None, **req
) -> None:
    """SIGKILL at every point the unit passes; SIGINT there too (or at ``interrupt_at`` only:
    Ctrl-C unwinds through the same code everywhere, proven in full on the first ingest)."""
    before = state(base)
    clean = copy(base, tmp / "clean")
    assert zygote.run(clean, **req) == 0
    after = state(clean)
    assert after != before, "the unit must change something"
    points = points_of(zygote, base, tmp, **req)
    assert unit_points <= set(points), f"not passed: {unit_points - set(points)}"
    for point in points:
        for action, sig in (("kill", -signal.SIGKILL), ("interrupt", None)):
            if action == "interrupt" and interrupt_at is not None and point not in interrupt_at:
                continue
            d = copy(base, tmp / f"{point}-{action}")
            status = zygote.run(d, env={"IFD_FAILPOINTS": f"{point}={action}"}, **req)
            if sig is not None:
                assert status == sig, (point, action, status)
            else:
                assert status != 0, (point, action, status)
            seen = state(d)
            committed = point in ("commit.switched", "commit.cleaned", "gc")
            assert seen == (after if committed else before), (point, action, seen)
            assert zygote.run(d, **req) == 0, (point, action, "the next run failed")
            assert state(d) == after, (point, action)
            agree(d)
            assert not [p for p in (d / "lake.d" / "staging").iterdir()], (point, action)
            shutil.rmtree(d)


@pytest.fixture(scope="module")
def ingested(zygote, tmp_path_factory):
    """A lake holding the ESM4 definitions (before a first ingest of its MBO)."""
    base = tmp_path_factory.mktemp("ingest") / "data"
    assert zygote.run(base, argv=["ingest", str(DEFS)]) == 0
    return base


def test_first_ingest_killed_at_every_step(zygote, ingested, tmp_path):
    crash_everywhere(
        zygote,
        ingested,
        tmp_path,
        {
            "ingest.validated",
            "ingest.raw_kept",
            "commit.locked",
            "commit.pv",
            "commit.tv",
            "commit.snap",
            "commit.switched",
        },
        argv=["ingest", str(MBO)],
    )


def test_reingest_of_an_overlapping_file_killed_at_every_step(zygote, ingested, tmp_path):
    """The lake holds the first half of the day; a file with all of it adds the second half."""
    import databento as db

    half = tmp_path / "first-half.mbo.dbn"
    store = db.DBNStore.from_file(MBO)
    records = store.to_ndarray()
    recut(MBO, half, records[: len(records) // 2])
    base = copy(ingested, tmp_path / "base")
    assert zygote.run(base, argv=["ingest", str(half)]) == 0
    assert state(base)["mbo"] == len(records) // 2
    crash_everywhere(
        zygote, base, tmp_path, {"commit.switched"}, interrupt_at=SAMPLED, argv=["ingest", str(MBO)]
    )


@pytest.fixture(scope="module")
def simulated(zygote, tmp_path_factory):
    """Two SYNTHETIC sessions ingested, the first one detected."""
    tmp = tmp_path_factory.mktemp("detect")
    sim = tmp / "sim"
    base = tmp / "data"
    assert (
        zygote.run(base, argv=["simulate", "--out", str(sim), "--days", "2", "--scale", "0.05"])
        == 0
    )
    assert zygote.run(base, argv=["ingest", str(sim)]) == 0
    days = sorted(Lake(base).days("mbo"))
    assert zygote.run(base, argv=["detect", "--date", str(days[0]), "--algo", "both"]) == 0
    return base, days[1]


def test_detection_killed_at_every_step(zygote, simulated, tmp_path):
    base, day = simulated
    crash_everywhere(
        zygote,
        base,
        tmp_path,
        {"detect.engine", "detect.signals", "commit.switched"},
        interrupt_at=SAMPLED,
        argv=["detect", "--date", str(day), "--algo", "both"],
    )


def test_compaction_killed_at_every_step(zygote, ingested, tmp_path):
    base = copy(ingested, tmp_path / "base")
    lake = Lake(base)
    old = dt.date(2020, 1, 6)
    for i in range(4):
        rows = pl.DataFrame(
            {
                "date": [old],
                "run_id": [f"r{i}"],
                "kind": ["test"],
                "state": ["open"],
                "severity": ["warning"],
                "opened_at": [dt.datetime(2020, 1, 6, tzinfo=dt.UTC)],
                "resolved_at": [None],
                "detail": [f"incident {i}"],
            },
        )
        lake.write("incidents", rows, f"ops-{i}")
    assert len(lake.files("incidents", old)) == 4
    crash_everywhere(
        zygote,
        base,
        tmp_path,
        {"compaction.merged", "commit.switched"},
        interrupt_at=SAMPLED,
        call="compact",
    )
    assert len(Lake(tmp_path / "clean").files("incidents", old)) == 1


def test_a_reader_during_an_ingest_sees_only_whole_states(zygote, ingested, tmp_path):
    base = copy(ingested, tmp_path / "base")
    first = state(base, ("mbo", "trades", "ingest_log"))
    seen: list[dict] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.append(state(base, ("mbo", "trades", "ingest_log")))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        assert zygote.run(base, argv=["ingest", str(MBO)]) == 0
    finally:
        stop.set()
        reader.join()
    after = state(base, ("mbo", "trades", "ingest_log"))
    assert after["mbo"] == 13796 and after["trades"] == 5 and after["ingest_log"] == 2
    assert seen and all(s in (first, after) for s in seen), {json.dumps(s) for s in seen}
