"""`ifd sql` hardened: every DuckDB type prints, one statement, Ctrl-C, --timeout, lock-down."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import duckdb
import polars as pl
import pytest
from typer.testing import CliRunner

from ifd_cli.app import EXIT_BUSY, EXIT_INTERRUPTED, EXIT_USAGE, app
from warehouse.lake import Lake
from warehouse.migrations import ensure_migrated
from warehouse.sql import SqlError, SqlTimeout, connect_read_only, query

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
# About a minute of work on a laptop if nothing stops it: a broken stop fails, it does not hang.
SLOW = "SELECT sum(a.range + b.range) AS s FROM range(1000000) a, range(10000) b"

EVERY_TYPE = r"""
SELECT INTERVAL 1 DAY + INTERVAL 3 HOUR AS iv,
       union_value(num := 2)::UNION(num INTEGER, str VARCHAR) AS un,
       [1, 2, NULL] AS li,
       {'a': 1, 'b': 'x'} AS st,
       MAP {'k': 1} AS mp,
       '\xAA\xBB'::BLOB AS bl,
       '0101'::BIT AS bi,
       170141183460469231731687303715884105727::HUGEINT AS hu,
       'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::UUID AS uu,
       TIME '12:34:56' AS ti,
       TIMESTAMPTZ '2026-03-31 12:00:00+00' AS tz,
       123.45::DECIMAL(10,2) AS de,
       'happy'::ENUM('sad', 'happy') AS en,
       [{'a': 1, 'b': [INTERVAL 1 DAY]}] AS ns,
       'infinity'::DATE AS inf_date,
       'nan'::DOUBLE AS nan,
       NULL AS nu
"""


def _tz_text() -> str:
    """TIMESTAMPTZ prints in the session's time zone, the same in this process as in the CLI."""
    return duckdb.sql("SELECT TIMESTAMPTZ '2026-03-31 12:00:00+00'::VARCHAR").fetchall()[0][0]


def _one_error_line(res) -> str:
    """The one error's first line; DuckDB's own hints ("Did you mean ...") may follow it."""
    assert "Traceback" not in res.output + res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines and [ln.startswith("error: ") for ln in lines].count(True) == 1, res.stderr
    assert lines[0].startswith("error: "), res.stderr
    return lines[0]


# --------------------------------------------------------------------------- every type
def test_every_type_as_csv(data_dir):
    res = runner.invoke(app, ["sql", EVERY_TYPE, "--csv"])
    assert res.exit_code == 0, res.output
    header, row = csv.reader(io.StringIO(res.stdout))
    assert header == [
        "iv",
        "un",
        "li",
        "st",
        "mp",
        "bl",
        "bi",
        "hu",
        "uu",
        "ti",
        "tz",
        "de",
        "en",
        "ns",
        "inf_date",
        "nan",
        "nu",
    ]
    assert row == [
        "1 day 03:00:00",
        "2",
        "[1,2,null]",
        '{"a":1,"b":"x"}',
        '{"k":1}',
        "aabb",
        "0101",
        "170141183460469231731687303715884105727",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "12:34:56",
        _tz_text(),
        "123.45",
        "happy",
        '[{"a":1,"b":["1 day"]}]',
        "infinity",
        "nan",
        "",
    ]


def test_every_type_as_json(data_dir):
    res = runner.invoke(app, ["sql", EVERY_TYPE, "--json"])
    assert res.exit_code == 0, res.output
    # Strict JSON (no bare NaN); numbers exact, DECIMAL included.
    records = json.loads(res.stdout, parse_float=Decimal, parse_constant=pytest.fail)
    assert records == [
        {
            "iv": "1 day 03:00:00",
            "un": {"num": 2},
            "li": [1, 2, None],
            "st": {"a": 1, "b": "x"},
            "mp": {"k": 1},
            "bl": "aabb",
            "bi": "0101",
            "hu": 170141183460469231731687303715884105727,
            "uu": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "ti": "12:34:56",
            "tz": _tz_text(),
            "de": Decimal("123.45"),
            "en": "happy",
            "ns": [{"a": 1, "b": ["1 day"]}],
            "inf_date": "infinity",
            "nan": "nan",
            "nu": None,
        }
    ]


def test_every_type_as_table(data_dir):
    res = runner.invoke(app, ["sql", EVERY_TYPE])
    assert res.exit_code == 0, res.output
    assert res.stderr == "" and "Traceback" not in res.output and "happy" in res.stdout
    # A few columns, so that no cell folds: each value as DuckDB writes it, nested ones as JSON.
    res = runner.invoke(
        app,
        ["sql", "SELECT INTERVAL 1 DAY AS iv, [{'a': 1}] AS ns, '\\xAA'::BLOB AS bl, NULL AS nu"],
    )
    assert res.exit_code == 0, res.output
    header, row = (
        [cell.strip() for cell in line.strip("│┃").split(line[-1])]
        for line in res.stdout.splitlines()
        if line[:1] in "│┃"
    )
    assert header == ["iv", "ns", "bl", "nu"]
    assert row == ["1 day", '[{"a":1}]', "aa", ""]


def test_values_and_names_are_not_rich_markup(data_dir):
    res = runner.invoke(app, ["sql", """SELECT '[bold]x[/bold] [/y]' AS "[red]c" """])
    assert res.exit_code == 0, res.output
    assert "[bold]x[/bold] [/y]" in res.stdout and "[red]c" in res.stdout
    res = runner.invoke(app, ["sql", "SELECT * FROM '[/nope]'"])
    assert res.exit_code == EXIT_USAGE
    assert "[/nope]" in _one_error_line(res)


def test_empty_result_as_json_and_csv(data_dir):
    res = runner.invoke(app, ["sql", "SELECT 1 AS x WHERE false", "--json"])
    assert res.exit_code == 0 and res.stdout == "[]\n"
    res = runner.invoke(app, ["sql", "SELECT 1 AS x WHERE false", "--csv"])
    assert res.exit_code == 0 and res.stdout == "x\n"


def test_query_gives_polars_for_every_type(lake):
    huge = "170141183460469231731687303715884105727::HUGEINT"
    df = query(lake, EVERY_TYPE.replace(huge, "12345::HUGEINT"))  # see the next test
    assert df.schema["iv"] == pl.String and df["iv"][0] == "1 day 03:00:00"
    assert df.schema["un"] == pl.String and df["un"][0] == "2"
    assert df.schema["bi"] == pl.String and df["bi"][0] == "0101"
    assert df.schema["ns"] == pl.String and json.loads(df["ns"][0]) == [{"a": 1, "b": ["1 day"]}]
    assert df.schema["li"] == pl.List(pl.Int32) and df["li"].to_list() == [[1, 2, None]]
    assert df.schema["bl"] == pl.Binary and df["bl"][0] == b"\xaa\xbb"
    assert df.schema["hu"] == pl.Decimal(38, 0) and df["hu"][0] == 12345
    assert df.schema["de"] == pl.Decimal(10, 2) and df["de"][0] == Decimal("123.45")
    # Unchanged for the types callers use, and the positional params still work.
    df = query(lake, "SELECT ?::INTEGER AS x, sum(r) AS s FROM range(4) t(r)", [5])
    assert df.rows() == [(5, Decimal(6))] and df.schema["s"] == pl.Decimal(38, 0)


def test_a_hugeint_wider_than_polars_decimals_is_an_error_not_a_rounded_number(lake):
    with pytest.raises(SqlError, match="^Conversion Error"):
        query(lake, "SELECT 170141183460469231731687303715884105727::HUGEINT AS h")


# --------------------------------------------------------------------------- statements
@pytest.mark.parametrize(
    "sql",
    [
        "-- the answer\nSELECT 42 AS answer",
        "/* the answer */ SELECT 42 AS answer",
        "SELECT 42 AS answer;",
        "SELECT 42 AS answer; -- trailing comment",
    ],
)
def test_comments_and_a_final_semicolon_are_fine(data_dir, sql):
    res = runner.invoke(app, ["sql", sql, "--csv"])
    assert res.exit_code == 0, res.output
    assert res.stdout == "answer\n42\n"
    res = runner.invoke(app, ["sql", "--json", sql])  # options before the query too
    assert res.exit_code == 0 and json.loads(res.stdout) == [{"answer": 42}]


@pytest.mark.parametrize(
    "sql", ["-- plan\nEXPLAIN SELECT 1", "EXPLAIN (FORMAT json) SELECT 1", "DESCRIBE mbo"]
)
def test_read_only_forms_are_accepted(data_dir, sql):
    res = runner.invoke(app, ["sql", sql, "--csv"])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(
    "sql",
    ["SELECT 1; SELECT 2", "SELECT 1 AS a;\nSELECT 2 AS b;", "EXPLAIN SELECT 1; DROP VIEW mbo"],
)
def test_several_statements_are_refused(data_dir, sql):
    res = runner.invoke(app, ["sql", sql])
    assert res.exit_code == EXIT_USAGE
    assert _one_error_line(res) == "error: only one statement is allowed; got 2"
    assert res.stdout == ""


@pytest.mark.parametrize(
    "sql",
    [
        "SET enable_external_access = true",
        "INSTALL httpfs",
        "LOAD httpfs",
        "ATTACH 'other.duckdb'",
        "COPY (SELECT 1) TO 'x.csv'",
        "PRAGMA show_tables",
        "CALL pragma_version()",
        "EXPLAIN ANALYZE SELECT 1",
        "-- sneaky\nEXPLAIN /* x */ ANALYZE SELECT 1",
        "EXPLAIN (ANALYZE, FORMAT json) COPY (SELECT 1) TO 'x.csv'",
        "EXPLAIN COPY (SELECT 1) TO 'x.csv'",
    ],
)
def test_writes_and_settings_are_refused(data_dir, sql):
    res = runner.invoke(app, ["sql", sql])
    assert res.exit_code == EXIT_USAGE
    line = _one_error_line(res)
    assert "read-only" in line and line.startswith("error: "), line
    assert not (data_dir / "x.csv").exists()


def test_copy_through_the_query_table_function_is_refused(data_dir):
    res = runner.invoke(
        app, ["sql", f"SELECT * FROM query('COPY (SELECT 1) TO ''{data_dir}/x.csv''')"]
    )
    assert res.exit_code == EXIT_USAGE
    _one_error_line(res)
    assert not (data_dir / "x.csv").exists()


@pytest.mark.parametrize("sql", ["", "   ", "-- nothing\n", ";"])
def test_empty_query(data_dir, sql):
    res = runner.invoke(app, ["sql", sql])
    assert res.exit_code == EXIT_USAGE
    assert _one_error_line(res) == "error: empty query"


# --------------------------------------------------------------------------- lock-down
@pytest.fixture
def outside(tmp_path) -> Path:
    """A Parquet and a CSV file outside the data root."""
    d = tmp_path / "outside"
    d.mkdir()
    pl.DataFrame({"a": [1, 2]}).write_parquet(d / "t.parquet")
    (d / "t.csv").write_text("a\n1\n2\n")
    return d


@pytest.mark.parametrize(
    "source", ["read_parquet('{d}/t.parquet')", "'{d}/t.csv'", "read_text('{d}/t.csv')"]
)
def test_files_outside_the_data_root_are_refused(data_dir, outside, source):
    res = runner.invoke(app, ["sql", f"SELECT * FROM {source.format(d=outside)}"])
    assert res.exit_code == EXIT_USAGE
    line = _one_error_line(res)
    assert line.startswith("error: Permission Error: Cannot access file") and str(outside) in line


def test_dot_dot_does_not_leave_the_data_root(data_dir, outside):
    ensure_migrated(Lake(data_dir))
    res = runner.invoke(app, ["sql", f"SELECT * FROM '{data_dir}/../outside/t.csv'"])
    assert res.exit_code == EXIT_USAGE and "Permission Error" in _one_error_line(res)


def test_allowed_directories_setting_opens_a_directory(data_dir, outside, monkeypatch):
    monkeypatch.setenv("IFD_WAREHOUSE__SQL_ALLOWED_DIRECTORIES", json.dumps([str(outside)]))
    res = runner.invoke(app, ["sql", f"SELECT sum(a) AS s FROM '{outside}/t.parquet'", "--csv"])
    assert res.exit_code == 0, res.output
    assert res.stdout == "s\n3\n"
    ensure_migrated(Lake(data_dir))
    (data_dir / "scratch.csv").write_text("a\n7\n")  # the data root is always readable
    res = runner.invoke(app, ["sql", f"SELECT a FROM '{data_dir}/scratch.csv'", "--csv"])
    assert res.exit_code == 0 and res.stdout == "a\n7\n"


def test_query_takes_allowed_directories(lake, outside):
    with pytest.raises(SqlError, match="^Permission Error"):
        query(lake, f"SELECT * FROM '{outside}/t.csv'")
    df = query(lake, f"SELECT * FROM '{outside}/t.csv'", allowed_directories=[outside])
    assert df["a"].to_list() == [1, 2]


class _Counting(BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self):  # noqa: N802 - http.server's name
        type(self).hits += 1
        self.send_response(404)
        self.end_headers()

    do_HEAD = do_GET  # noqa: N815

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("scheme", ["http", "s3"])
def test_urls_are_refused_without_any_download(data_dir, scheme):
    server = HTTPServer(("127.0.0.1", 0), _Counting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        url = f"http://127.0.0.1:{port}/x.parquet" if scheme == "http" else "s3://bucket/x.parquet"
        t0 = time.monotonic()
        res = runner.invoke(app, ["sql", f"SELECT * FROM '{url}'"])
        assert time.monotonic() - t0 < 10  # no download of httpfs
        assert res.exit_code == EXIT_USAGE
        assert _one_error_line(res) == (
            f'error: Permission Error: Cannot access file "{url}" - file system operations are '
            "disabled by configuration"
        )
        assert _Counting.hits == 0
    finally:
        server.shutdown()
        server.server_close()


def test_the_connection_is_locked_down(lake):
    con = connect_read_only(lake)
    try:
        settings = dict(
            con.execute(
                "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access',"
                " 'autoinstall_known_extensions', 'autoload_known_extensions', 'lock_configuration',"
                " 'python_enable_replacements', 'allowed_directories', 'access_mode',"
                " 'enable_progress_bar')"
            ).fetchall()
        )
        assert settings == {
            "access_mode": "read_only",
            # DuckDB adds its temp directory (<catalog>.tmp, in the data root) by itself.
            "allowed_directories": f"[{lake.root}/, {lake.root}/warehouse.duckdb.tmp/]",
            "autoinstall_known_extensions": "false",
            "autoload_known_extensions": "false",
            "enable_progress_bar": "false",
            "enable_external_access": "false",
            "lock_configuration": "true",
            "python_enable_replacements": "false",
        }
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute("SET enable_external_access = true")
    finally:
        con.close()


# --------------------------------------------------------------------------- timeout, Ctrl-C
def test_timeout_interrupts_the_query(data_dir):
    t0 = time.monotonic()
    res = runner.invoke(app, ["sql", SLOW, "--timeout", "0.5"])
    assert time.monotonic() - t0 < 8  # sql.STOP_GRACE_S is 10: the interrupt itself stopped it
    assert res.exit_code == EXIT_BUSY
    assert _one_error_line(res) == (
        "error: query timed out after 0.5 s and was interrupted; allow more with --timeout SECONDS"
    )
    assert res.stdout == ""


@pytest.mark.parametrize("value", ["0", "-1"])
def test_timeout_must_be_positive(data_dir, value):
    res = runner.invoke(app, ["sql", "SELECT 1", f"--timeout={value}"])
    assert res.exit_code == EXIT_USAGE
    assert "--timeout must be a positive number of seconds" in _one_error_line(res)


def test_a_quick_query_within_its_timeout(data_dir):
    res = runner.invoke(app, ["sql", "SELECT 1 AS x", "--timeout", "60", "--csv"])
    assert res.exit_code == 0 and res.stdout == "x\n1\n"


@pytest.mark.parametrize("migrated", [True, False])
def test_query_timeout_in_python(lake, migrated):
    """Migrated: DuckDB's interrupt stops the running query. Not: the time runs out while the
    catalog is being created, and the query never starts."""
    if migrated:
        ensure_migrated(lake)
    t0 = time.monotonic()
    with pytest.raises(SqlTimeout, match=r"^query timed out after 0.3 s and was interrupted$"):
        query(lake, SLOW, timeout_s=0.3)
    assert time.monotonic() - t0 < 8
    assert query(lake, "SELECT 1 AS x", timeout_s=30)["x"].to_list() == [1]


def _holds_open(pid: int, path: Path) -> bool:
    try:
        return any(
            os.path.realpath(f"/proc/{pid}/fd/{fd}") == str(path)
            for fd in os.listdir(f"/proc/{pid}/fd")
        )
    except OSError:
        return False


def _descendants(pid: int) -> list[int]:
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:  # "pid (comm) state ppid ...", comm may hold spaces
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, todo = [], [pid]
    while todo:
        ppid = todo.pop()
        kids = [p for p, pp in parent.items() if pp == ppid]
        out += kids
        todo += kids
    return out


# Ctrl-C as a terminal's foreground command gets it: SIGINT at its default action and not blocked.
# A runner started in the background without job control (`cmd &` in a script) hands its children
# SIGINT ignored, and `ifd sql` rightly ignores it then, as `nohup` asks; so reset it for the child.
AT_A_TERMINAL = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); os.execvp(sys.argv[1], sys.argv[1:])",
]


def _why_still_running(proc: subprocess.Popen) -> str:
    """Each descendant's signal state and where it waits, then the Python stacks (faulthandler
    on SIGABRT): what a hang after Ctrl-C needs to be understood from a CI log."""
    lines = []
    for pid in _descendants(proc.pid):
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
            keep = [x for x in status if x.split(":")[0] in ("Name", "State", "SigBlk", "SigIgn")]
            lines.append(
                f"{pid}: " + "; ".join(keep) + f"; wchan {Path(f'/proc/{pid}/wchan').read_text()}"
            )
    for pid in _descendants(proc.pid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGABRT)
    try:
        _, err = proc.communicate(timeout=10)  # faulthandler writes, the process dies
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
    return "\n".join(lines) + "\n" + err[-6000:]


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc to see the query run")
@pytest.mark.skipif(shutil.which("uv") is None, reason="needs uv on PATH")
def test_ctrl_c_stops_the_query_with_exit_130(data_dir):
    lake = Lake(data_dir)
    ensure_migrated(lake)  # so that the catalog is opened only by the query's connection
    env = {**os.environ, "IFD_WAREHOUSE__DATA_DIR": str(data_dir), "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.Popen(
        [*AT_A_TERMINAL, "uv", "run", "--no-sync", "ifd", "sql", SLOW],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: Ctrl-C reaches uv and Python alike
    )
    try:
        deadline = time.monotonic() + 60
        while not any(_holds_open(p, lake.catalog_path) for p in _descendants(proc.pid)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the query never started"
            time.sleep(0.05)
        time.sleep(0.3)  # well inside DuckDB's execution by now
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"no exit 30 s after Ctrl-C:\n{_why_still_running(proc)}"
            ) from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert time.monotonic() - t0 < 8
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "Traceback" not in err and out == ""
    assert err.splitlines() == ["error: interrupted (Ctrl-C); the query was stopped"]
