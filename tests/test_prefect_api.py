"""`ifd demo` needs a Prefect API: the temporary server gets IFD's 120 s to start unless Prefect's
own setting says otherwise, and when no server answers the command exits 5 with one line on
stderr (no traceback). Run as subprocesses: Prefect reads its settings once per process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.fixtures.prefect_stack import free_port


def _run_demo(tmp_path, **prefect_env: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), **prefect_env)
    return subprocess.run(
        [sys.executable, "-m", "ifd_cli.app", "demo", "--days", "21"],
        env=env,
        cwd=tmp_path,  # not the repository root: its prefect.toml must not be what makes it work
        capture_output=True,
        text=True,
        timeout=180,
    )


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.timeout(240)
def test_a_temporary_server_that_cannot_start_exits_5_with_one_line(tmp_path):
    # 0 s is a start no server makes: the honest stand-in for a machine too busy to start it.
    run = _run_demo(tmp_path, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="0")
    assert run.returncode == 5, run.stderr
    line = _one_line(run.stderr)
    assert "temporary server did not start within 0 s" in line
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in line


@pytest.mark.timeout(240)
def test_a_configured_server_that_does_not_answer_exits_5_with_one_line(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    run = _run_demo(tmp_path, PREFECT_API_URL=url)
    assert run.returncode == 5, run.stderr
    assert f"PREFECT_API_URL={url} does not answer" in _one_line(run.stderr)


def test_the_temporary_server_gets_ifds_startup_time_unless_prefect_is_told_otherwise(tmp_path):
    code = "from flows.prefect_api import ephemeral_startup_timeout as t; print(t())"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = repo

    def timeout(**extra: str) -> int:
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={**env, **extra},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return int(out.stdout.strip())

    assert timeout() == 120  # Prefect's own default would be 20
    assert timeout(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="300") == 300


def test_the_demo_names_the_ui_it_can_be_seen_in():
    from flows.prefect_api import PrefectApi
    from ifd_cli.demo import ui_hint

    assert "http://10.0.0.5:4311 " in ui_hint(PrefectApi("http://10.0.0.5:4311/api", False))
    temp = ui_hint(PrefectApi("http://127.0.0.1:8123/api", True))
    assert "uv run ifd serve" in temp and "8123" not in temp  # the temporary server is gone
