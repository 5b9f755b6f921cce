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


# -- the reports over HTTP ---------------------------------------------------------------------


def _get(base: str, path: str, method: str = "GET") -> tuple[int, str, bytes]:
    """A raw request (http.client sends the path as given: no client-side `..` folding)."""
    import http.client
    import urllib.parse

    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type") or "", r.read()
    finally:
        conn.close()


def test_reports_server_serves_reports_read_only_and_refuses_escapes(tmp_path):
    from flows.serve import reports_server

    reports = tmp_path / "data" / "reports"
    reports.mkdir(parents=True)
    (reports / "dq-run1.html").write_text("<html><title>DQ run1</title><body>ok</body></html>")
    (reports / "data-docs").mkdir()
    (reports / "data-docs" / "index.html").write_text("<html>docs</html>")
    (tmp_path / "data" / "secret.txt").write_text("not for the web")
    (reports / "out").symlink_to(tmp_path / "data")
    with reports_server("127.0.0.1", 0, reports) as base:
        assert base.startswith("http://127.0.0.1:") and base.endswith("/")
        status, ctype, body = _get(base, "/dq-run1.html")
        assert (status, ctype) == (200, "text/html") and b"DQ run1" in body
        assert _get(base, "/data-docs/index.html")[0] == 200
        assert _get(base, "/data-docs/")[0] == 200  # index.html of a folder
        assert _get(base, "/../secret.txt")[0] == 403
        assert _get(base, "/data-docs/../../secret.txt")[0] == 403
        assert _get(base, "/%2e%2e/secret.txt")[0] == 403
        assert _get(base, "/out/secret.txt")[0] == 403  # a symlink pointing out of the folder
        assert _get(base, "/missing.html")[0] == 404
        assert _get(base, "/dq-run1.html", "PUT")[0] == 501  # read-only
        assert _get(base, "/dq-run1.html", "DELETE")[0] == 501
    assert (reports / "dq-run1.html").read_text().startswith("<html>")


def test_a_busy_reports_port_is_one_clear_error(tmp_path):
    import socket

    from flows.serve import reports_server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with (
            pytest.raises(RuntimeError, match="--reports-port"),
            reports_server("127.0.0.1", port, tmp_path / "reports"),
        ):
            pass


def test_report_link_prefers_the_setting_then_serve_then_says_file(tmp_path, monkeypatch):
    from flows.report_links import SERVED_URL_ENV, report_link
    from ifd_core.settings import get_settings

    report = tmp_path / "data" / "reports" / "nightly backtest.html"
    report.parent.mkdir(parents=True)
    report.write_text("<html></html>")

    link = report_link(report, get_settings())  # a flow run outside `ifd serve`
    assert link.url == report.resolve().as_uri() and link.source == "file"
    text = link.description("Nightly backtest")
    assert str(report.resolve()) in text and "file://" in text and "not started by" in text

    monkeypatch.setenv(SERVED_URL_ENV, "http://127.0.0.1:4312/")
    link = report_link(report, get_settings())
    assert link.url == "http://127.0.0.1:4312/nightly%20backtest.html"
    assert str(report.resolve()) in link.description("x") and "ifd serve" in link.description("x")

    monkeypatch.setenv("IFD_REPORTS__BASE_URL", "https://ifd.example.org/reports/")
    link = report_link(report, get_settings())
    assert link.url == "https://ifd.example.org/reports/nightly%20backtest.html"
    assert link.source == "reports.base_url" and str(report.resolve()) in link.description("x")

    outside = tmp_path / "elsewhere.html"  # no server serves it: its file, said so
    assert report_link(outside, get_settings()).source == "file"


def test_reports_base_url_must_be_http(monkeypatch):
    from ifd_core.settings import get_settings

    monkeypatch.setenv("IFD_REPORTS__BASE_URL", "ifd.example.org/reports")
    with pytest.raises(ValueError, match="http"):
        get_settings()


@pytest.mark.timeout(300)
def test_link_artifact_uses_the_base_url_setting(prefect_server, tmp_path, monkeypatch):
    """The artifact Prefect stores: the link under reports.base_url, the path still as text."""
    import anyio
    from prefect import flow
    from prefect.client.orchestration import get_client

    from flows.report_links import publish_report_link
    from ifd_core.settings import get_settings

    report = tmp_path / "data" / "reports" / "cost-2026-03.html"
    report.parent.mkdir(parents=True)
    report.write_text("<html></html>")
    monkeypatch.setenv("IFD_REPORTS__BASE_URL", "http://reports.example:8080/r")

    @flow
    def publishes() -> None:
        publish_report_link("test-serve-report-link", report, "Cost report", get_settings())

    publishes()

    async def read():
        async with get_client() as client:
            return await client.read_latest_artifacts()

    art = next(a for a in anyio.run(read) if a.key == "test-serve-report-link")
    assert art.data == "[cost-2026-03.html](http://reports.example:8080/r/cost-2026-03.html)"
    assert str(report.resolve()) in art.description
