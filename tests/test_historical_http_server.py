"""``python -m tests.servers.historical_http`` serves by hand: the real databento.Historical client
gets a quote from it over TLS, trusting the certificate the server prints."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import databento
import pytest

from tests.servers.historical_http import TEST_API_KEY

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(60)
def test_main_serves_on_loopback_and_answers_the_real_client(monkeypatch: pytest.MonkeyPatch):
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.servers.historical_http", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        m = re.search(r"listening on (https://127\.0\.0\.1:\d+) \(REQUESTS_CA_BUNDLE=(\S+)\)", line)
        assert m, line
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", m[2])
        client = databento.Historical(TEST_API_KEY, gateway=m[1])
        cost = client.metadata.get_cost(
            dataset="GLBX.MDP3",
            symbols=["NQ.OPT"],
            stype_in="parent",
            schema="mbo",
            start="2026-04-17",
            end="2026-04-18",
        )
        assert cost == 3.0
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
