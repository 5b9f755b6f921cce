"""`ifd serve` builds its deployments from prefect.yaml, the same source `prefect deploy --all`
reads: every flow importable, every schedule in New York time (or UTC for the ledger's month end),
inactive unless asked, typed parameters that the UI renders as a form."""

from __future__ import annotations

import pytest

from flows.serve import build_deployments, deployment_specs, load_flow

EXPECTED = {
    "historical-ingest",
    "baseline-refresh",
    "nightly-backtest",
    "extended-test",
    "cost-report",
    "lake-compaction",
    "live-stream",
    "detection",
}


def test_every_flow_of_the_issue_has_a_deployment_with_a_schedule():
    specs = deployment_specs()
    names = {s["name"] for s in specs}
    assert names >= EXPECTED
    for s in specs:
        assert s["schedules"], f"{s['name']} has no schedule"
        for sch in s["schedules"]:
            assert sch["timezone"] in ("America/New_York", "UTC")
    live = next(s for s in specs if s["name"] == "live-stream")
    assert live["concurrency_limit"] == 1  # one run per session


def test_served_deployments_match_the_yaml_and_stay_inactive_unless_asked():
    specs = deployment_specs()
    deps = build_deployments(specs)
    assert [d.name for d in deps] == [s["name"] for s in specs]
    for d, s in zip(deps, specs, strict=True):
        assert [sch.schedule.cron for sch in d.schedules] == [x["cron"] for x in s["schedules"]]
        assert not any(sch.active for sch in d.schedules)
        assert d.parameters == (s.get("parameters") or {})
    assert all(sch.active for d in build_deployments(specs, activate=True) for sch in d.schedules)


def test_dates_and_numbers_render_as_typed_form_fields():
    from prefect.utilities.callables import parameter_schema

    flows = {s["name"]: load_flow(s["entrypoint"]) for s in deployment_specs()}
    ingest = parameter_schema(flows["historical-ingest"].fn).model_dump()["properties"]
    assert "date" in str(ingest["trade_date"])  # a date picker, not free text
    refresh = parameter_schema(flows["baseline-refresh"].fn).model_dump()["properties"]
    assert "date" in str(refresh["trade_date"])
    compaction = parameter_schema(flows["lake-compaction"].fn).model_dump()["properties"]
    assert compaction["min_files"]["type"] == "integer"


def test_every_form_field_has_a_description_and_every_deployment_tags():
    """The `Args:` of each flow's docstring become the run form's help texts; tags filter the
    UI's lists (an area and a cadence)."""
    specs = deployment_specs()
    for d, s in zip(build_deployments(specs), specs, strict=True):
        props = d._parameter_openapi_schema.model_dump()["properties"]
        assert props, d.name
        for name, field in props.items():
            assert len(field.get("description") or "") > 10, f"{d.name}.{name}"
        assert d.tags == s["tags"] and "ifd" in d.tags and len(d.tags) >= 3, d.name


def _clean_env(tmp_path) -> dict[str, str]:
    """This machine's environment without the developer's PREFECT_* (a personal API URL must not
    be reused) and with a private PREFECT_HOME and data root."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["IFD_WAREHOUSE__DATA_DIR"] = os.environ["IFD_WAREHOUSE__DATA_DIR"]
    return env


@pytest.mark.timeout(300)
def test_ifd_serve_on_any_port_gives_a_ui_that_calls_that_port(tmp_path):
    """The UI fetches /ui-settings for its API URL; with `--port N` that must be port N (it was
    Prefect's default 4200: "Can't connect to Server API"), and the printed hint names it."""
    import json
    import subprocess
    import sys
    import time
    import urllib.request

    from flows.serve import api_healthy
    from tests.fixtures.prefect_stack import free_port, stop_process_tree

    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ifd_cli.app", "serve", "--port", str(port)],
            env=_clean_env(tmp_path),
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while "deployments served" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        assert api_healthy(f"{base}/api")
        with urllib.request.urlopen(f"{base}/ui-settings", timeout=10) as r:
            told = json.loads(r.read())
        assert told["api_url"] == f"{base}/api"
        printed = log.read_text()
        assert f"UI: {base}" in printed
        assert "note:" not in printed  # no mismatch between the UI's API and the served one
        assert ":4200" not in printed
    finally:
        stop_process_tree(proc, grace=30)
