"""The Prefect cockpit end to end: a real server, the `ifd` process work pool, `prefect deploy
--all` from prefect.yaml and a worker run `historical-ingest` and `nightly-backtest` on a
SYNTHETIC market; their artifacts are read back through the API, and headless Chromium renders
the backtest's HTML report and the flow-run pages of the Prefect UI.

Screenshots (and the rendered DOMs) go to test-output/screenshots/, the server, worker and CLI
logs to test-output/prefect-stack/. The browser tests skip only when no Chromium is found
(`make browser` installs Debian's).
"""

from __future__ import annotations

import html
import json
import logging
import re
import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path

import anyio
import pytest

from tests.fixtures.prefect_stack import PrefectStack, prefect_stack, stop_process_tree

pytestmark = [pytest.mark.slow, pytest.mark.timeout(540)]

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "test-output"
SCREENSHOTS = OUTPUT / "screenshots"
STACK_LOGS = OUTPUT / "prefect-stack"
RUN_TIMEOUT = 240  # seconds per flow run, from creation to a final state
SESSIONS = 21  # simulated sessions: 20 ingested directly, the last through the flow


# -- helpers -----------------------------------------------------------------------------------


def find_chromium() -> str | None:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def visible_text(dom: str) -> str:
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    return re.sub(r"\s+", " ", text)


def render(chromium: str, url: str, shot: Path, profile: Path, timeout: float = 90) -> str:
    """Load `url` in headless Chromium; returns the DOM after scripts ran and saves a PNG."""
    shot.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=15000",
        "--window-size=1400,1000",
        f"--screenshot={shot}",
        "--dump-dom",
        url,
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process_tree(proc, grace=2)
        pytest.fail(f"chromium did not finish {url} within {timeout:g} s")
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    dom = out.decode(errors="replace")
    shot.with_suffix(".html").write_text(dom)
    assert proc.returncode == 0, (
        f"chromium exit {proc.returncode} on {url}:\n{err.decode()[-3000:]}"
    )
    assert shot.exists() and shot.stat().st_size > 10_000, f"no screenshot of {url}"
    return dom


def render_until(chromium, url, shot, profile, expected: list[str], attempts: int = 3) -> str:
    """`render` again (a bounded number of times) until every expected text is visible."""
    for attempt in range(attempts):
        text = visible_text(render(chromium, url, shot, profile))
        missing = [e for e in expected if e not in text]
        if not missing:
            return text
        print(f"render {attempt + 1} of {url} lacks {missing}; rendering again")
        time.sleep(2 * (attempt + 1))
    pytest.fail(f"{url} lacks {missing} after {attempts} renders; visible text:\n{text[:3000]}")


def api(stack: PrefectStack, fn):
    """Run `await fn(client)` with a Prefect client on the test server."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def main():
        async with get_client() as client:
            return await fn(client)

    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
        return anyio.run(main)


def run_logs(stack: PrefectStack, flow_run_id) -> str:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    async def fn(client):
        flt = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        return await client.read_logs(log_filter=flt, limit=200)

    try:
        logs = api(stack, fn)
    except Exception as exc:  # noqa: BLE001 - diagnostics only
        return f"(logs unavailable: {exc!r})"
    return "\n".join(
        f"{log.timestamp:%H:%M:%S} {logging.getLevelName(log.level)} {log.message}" for log in logs
    )


def run_deployment_and_wait(stack: PrefectStack, name: str, parameters: dict):
    """Create a flow run of deployment `name` ("flow/deployment") and wait for a final state;
    fails with the run's logs and the worker log unless it is Completed."""

    async def create(client):
        deployment = await client.read_deployment_by_name(name)
        return await client.create_flow_run_from_deployment(deployment.id, parameters=parameters)

    flow_run = api(stack, create)
    run_id = flow_run.id
    t0 = time.monotonic()
    deadline = t0 + RUN_TIMEOUT
    while True:
        stack.assert_running()
        flow_run = api(stack, lambda c: c.read_flow_run(run_id))
        if flow_run.state is not None and flow_run.state.is_final():
            break
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    state = flow_run.state
    assert state is not None and state.is_completed(), (
        f"{name} run {flow_run.name} ({flow_run.id}) is "
        f"{state.name if state else None} after {time.monotonic() - t0:.0f} s "
        f"(limit {RUN_TIMEOUT} s): "
        f"{state.message if state else ''}\n--- run logs ---\n{run_logs(stack, flow_run.id)}\n"
        + stack.log_tail("worker", 80)
    )
    return flow_run


def artifacts_of(stack: PrefectStack, flow_run_id) -> dict[str, object]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def fn(client):
        flt = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        return await client.read_artifacts(artifact_filter=flt)

    return {a.key: a for a in api(stack, fn)}


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cockpit(tmp_path_factory):
    """The stack with a data dir of SYNTHETIC sessions: all but the last one ingested, the last
    one's files in <data>/incoming, where `historical_ingest` looks by default."""
    root = tmp_path_factory.mktemp("cockpit")
    data_dir = root / "data"
    world: dict = {"root": root, "data_dir": data_dir}

    def prepare() -> None:  # runs while the server boots
        from ifd_core.simulator.market import simulate_market
        from warehouse.ingest import ingest_files
        from warehouse.lake import Lake

        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("IFD_WAREHOUSE__DATA_DIR", str(data_dir))
            mp.chdir(root)
            summary = simulate_market(root / "sim", SESSIONS, 23, scale=0.05)
            day = summary.days[-1]
            before = [p for p in summary.files if f"{day:%Y%m%d}" not in p.name]
            report = ingest_files(before, Lake(data_dir))
            assert report.ok, [f.reason for f in report.files if not f.ok]
            incoming = data_dir / "incoming"
            incoming.mkdir(parents=True)
            for p in summary.files:
                if f"{day:%Y%m%d}" in p.name:
                    shutil.copy2(p, incoming / p.name)
        world.update(day=day, days=summary.days, incoming=sorted(incoming.iterdir()))

    shutil.rmtree(STACK_LOGS, ignore_errors=True)
    for old in [*SCREENSHOTS.glob("prefect-ui-*"), *SCREENSHOTS.glob("nightly-backtest-report.*")]:
        old.unlink()
    with prefect_stack(
        REPO,
        root / "stack",
        flow_env={"IFD_WAREHOUSE__DATA_DIR": str(data_dir)},
        log_dir=STACK_LOGS,
        prepare=prepare,
    ) as stack:
        world["stack"] = stack
        yield world


@pytest.fixture(scope="module")
def runs(cockpit):
    """historical-ingest for the last day, then nightly-backtest over the last 2 sessions."""
    stack, day = cockpit["stack"], cockpit["day"]
    t0 = time.monotonic()
    ingest = run_deployment_and_wait(
        stack, "historical_ingest/historical-ingest", {"trade_date": day.isoformat()}
    )
    t1 = time.monotonic()
    backtest = run_deployment_and_wait(stack, "nightly_backtest/nightly-backtest", {"sessions": 2})
    t2 = time.monotonic()
    print(f"historical-ingest run {t1 - t0:.1f} s, nightly-backtest run {t2 - t1:.1f} s")
    return {"ingest": ingest, "backtest": backtest}


@pytest.fixture(scope="module")
def chromium():
    path = find_chromium()
    if path is None:
        pytest.skip(
            "no headless Chromium (/usr/bin/chromium): run `make browser` (as root it installs "
            "Debian's chromium with apt-get) or `sudo apt-get install -y chromium`"
        )
    return path


# -- tests -------------------------------------------------------------------------------------


def test_deploy_registers_every_deployment_of_prefect_yaml(cockpit):
    import yaml

    stack = cockpit["stack"]
    declared = {
        d["name"] for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
    }
    registered = {d["name"]: d for d in stack.api("POST", "/deployments/filter", {})}
    assert declared <= set(registered), f"not deployed: {declared - set(registered)}"
    for name in ("historical-ingest", "nightly-backtest"):
        d = registered[name]
        assert d["work_pool_name"] == "ifd", d
        # `{{ $IFD_REPO_DIR }}` is resolved at deploy time and stored in the deployment.
        step = d["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]
        assert step["directory"] == str(REPO), d


def test_historical_ingest_runs_on_the_worker_and_publishes(cockpit, runs):
    from jobs.backtest import trading_days
    from warehouse.lake import Lake

    stack, day, run = cockpit["stack"], cockpit["day"], runs["ingest"]
    assert run.deployment_id is not None and run.work_pool_name == "ifd"
    # The worker's environment reached the flow: the day landed in the test data dir.
    lake = Lake(cockpit["data_dir"])
    assert trading_days(lake, day, day) == [day]
    arts = artifacts_of(stack, run.id)
    assert arts["historical-ingest-files"].type == "table"
    table = json.loads(arts["historical-ingest-files"].data)
    assert sorted(r["file"] for r in table) == sorted(p.name for p in cockpit["incoming"])
    assert {r["status"] for r in table} == {"loaded"}
    assert arts["historical-ingest-summary"].type == "markdown"
    n = len(cockpit["incoming"])
    assert f"Historical ingest for {day}" in arts["historical-ingest-summary"].data
    assert f"{n} of {n} files loaded" in arts["historical-ingest-summary"].data


def test_nightly_backtest_runs_on_the_worker_and_publishes(cockpit, runs):
    stack, day, run = cockpit["stack"], cockpit["day"], runs["backtest"]
    arts = artifacts_of(stack, run.id)
    assert {"nightly-backtest-metrics", "nightly-backtest-summary", "nightly-backtest-report"} <= (
        set(arts)
    ), sorted(arts)
    assert arts["nightly-backtest-metrics"].type == "table"
    metrics = json.loads(arts["nightly-backtest-metrics"].data)
    assert {r["algo"] for r in metrics} == {"v3", "v1"}
    summary = arts["nightly-backtest-summary"]
    assert summary.type == "markdown"
    assert "SYNTHETIC data" in summary.data
    # The 2 sessions end with the day the ingest run just added.
    assert f"2 sessions {cockpit['days'][-2]} to {day}" in summary.data
    assert "A/B verdict" in summary.data
    link = arts["nightly-backtest-report"]
    assert link.type == "markdown"  # Prefect stores link artifacts as markdown: [text](url)
    report = report_path(link.data)
    assert report.is_file() and report.parent == cockpit["data_dir"] / "reports"
    assert link.data.startswith(f"[{report.name}](")


def report_path(link_markdown: str) -> Path:
    """The file behind a link artifact: its data is `[text](file:///...)`."""
    m = re.search(r"\((file://[^)\s]+)\)", link_markdown)
    assert m, f"no file:// link in {link_markdown!r}"
    return Path(urllib.parse.unquote(urllib.parse.urlparse(m.group(1)).path))


def test_backtest_report_renders_in_chromium(cockpit, runs, chromium, tmp_path):
    arts = artifacts_of(cockpit["stack"], runs["backtest"].id)
    report = report_path(arts["nightly-backtest-report"].data)
    dom = render(
        chromium, report.as_uri(), SCREENSHOTS / "nightly-backtest-report.png", tmp_path / "p"
    )
    # plotly.js (a file next to the report, no network) ran: every chart container was drawn.
    containers = len(re.findall(r'class="plotly-graph-div', dom))
    drawn = len(re.findall(r'class="plotly-graph-div js-plotly-plot"', dom))
    assert containers >= 4 and drawn == containers, (containers, drawn)
    assert dom.count('class="main-svg"') >= 2 * containers
    text = visible_text(dom)
    assert "SYNTHETIC DATA: simulated market" in text
    for title in (
        "Metrics per algorithm",
        "Monte Carlo: terminal return per path",
        "Directional accuracy per day",
        "Equity",
        "Drawdown",
        f"to {cockpit['day']}",
    ):
        assert title in text, title


# The UI is served by the server itself (assets in the wheel, no network): v2 (React, the default)
# under /v2, v1 (Vue) at the root. A flow run is /v2/runs/flow-run/<id> and /runs/flow-run/<id>;
# the v2 page opens on the Logs tab, `?tab=Artifacts` opens the run's artifacts.
@pytest.mark.parametrize(
    ("run_key", "shot_name", "path", "expected"),
    [
        pytest.param(
            "backtest",
            "v2-flow-run-nightly-backtest",
            "/v2/runs/flow-run/{id}",
            ["Finished in state Completed"],
            id="v2-backtest-logs",
        ),
        pytest.param(
            "backtest",
            "v2-flow-run-nightly-backtest-artifacts",
            "/v2/runs/flow-run/{id}?tab=Artifacts",
            ["nightly-backtest-summary", "nightly-backtest-metrics", "nightly-backtest-report"],
            id="v2-backtest-artifacts",
        ),
        pytest.param(
            "ingest",
            "v2-flow-run-historical-ingest",
            "/v2/runs/flow-run/{id}",
            ["Finished in state Completed"],
            id="v2-ingest-logs",
        ),
        pytest.param(
            "backtest", "v1-flow-run-nightly-backtest", "/runs/flow-run/{id}", [], id="v1-backtest"
        ),
    ],
)
def test_flow_run_page_renders_in_the_prefect_ui(
    cockpit, runs, chromium, tmp_path, run_key, shot_name, path, expected
):
    stack, run = cockpit["stack"], runs[run_key]
    settings = stack.http("GET", "/ui-settings")
    assert settings["default_ui"] == "v2" and settings["v2_base_url"] == "/v2", settings
    deployment = {"backtest": "nightly-backtest", "ingest": "historical-ingest"}[run_key]
    url = stack.base_url + path.format(id=run.id)
    shot = SCREENSHOTS / f"prefect-ui-{shot_name}.png"
    day = cockpit["day"]
    expected = [run.name, "Completed", deployment, "ifd", *(e.format(day=day) for e in expected)]
    render_until(chromium, url, shot, tmp_path / "p", expected)
    if shot_name == "v2-flow-run-nightly-backtest":
        # The run's own day lines are in its logs (the page loads the first lines only, and
        # the per-day and per-session task runs of issue 20's fan-out log before them).
        logs = stack.api("POST", "/logs/filter", {"logs": {"flow_run_id": {"any_": [str(run.id)]}}})
        assert any(f"{day}: 2/2 days" in log["message"] for log in logs), logs[-5:]
