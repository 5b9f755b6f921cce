"""`ifd serve --port <random>` the way a user meets it, in headless Chromium: the UI lists the
deployments of prefect.yaml, and a report written into the data dir opens from the reports URL
serve prints (http://HOST:PORT+1/). Screenshots go to test-output/screenshots/serve-*.png."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from tests.test_prefect_cockpit import SCREENSHOTS, find_chromium, render_until
from tests.test_serve import EXPECTED, _clean_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


def test_serve_ui_shows_the_deployments_and_a_report_opens(tmp_path, data_dir):
    from tests.fixtures.prefect_stack import free_port, stop_process_tree

    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no headless Chromium (/usr/bin/chromium): run `make browser`")
    title = "SYNTHETIC serve check report"
    report = data_dir / "reports" / "serve-check.html"
    report.parent.mkdir(parents=True)
    rows = "".join(  # enough ink for render()'s screenshot-size check
        f"<tr><td>SYNTHETIC row {i}</td><td>{i * 7 % 13}</td></tr>" for i in range(40)
    )
    report.write_text(
        f"<html><head><title>{title}</title></head><body><h1>{title}</h1>"
        f"<table border=1>{rows}</table></body></html>"
    )
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
    try:
        deadline = time.monotonic() + 240
        while "deployments served" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        printed = log.read_text()
        m = re.search(r"reports: (http://\S+/) \(serving (\S+),", printed)
        assert m, printed
        reports_url, served_dir = m.groups()
        assert reports_url == f"http://127.0.0.1:{port + 1}/"
        assert served_dir == str(data_dir / "reports")

        base = f"http://127.0.0.1:{port}"
        names = sorted(EXPECTED)
        render_until(
            chromium,
            f"{base}/deployments",
            SCREENSHOTS / "serve-deployments.png",
            tmp_path / "p1",
            names,
        )
        render_until(
            chromium,
            reports_url + report.name,
            SCREENSHOTS / "serve-report.png",
            tmp_path / "p2",
            [title],
        )
    finally:
        stop_process_tree(proc, grace=30)
