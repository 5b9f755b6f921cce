"""Shared fixtures: every test gets its own data root and a clean IFD_ environment."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "databento-samples"
NT = SAMPLES / "nautilus_trader" / "tests" / "test_data" / "databento"
DBPY = SAMPLES / "databento-python" / "tests" / "data"


def pytest_configure(config):
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    for key in list(os.environ):
        if key.startswith("IFD_"):
            monkeypatch.delenv(key)
    monkeypatch.delenv("DATABENTO_API_KEY", raising=False)  # the SDK's key is IFD's fallback
    monkeypatch.setenv("IFD_WAREHOUSE__DATA_DIR", str(tmp_path / "data"))
    # A developer's .env must not leak into tests: run from a directory without one.
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def lake(data_dir):
    from warehouse.lake import Lake

    return Lake(data_dir)


@pytest.fixture
def loop():
    """An asyncio loop of the test's own, for ib_async's blocking calls (and closed after)."""
    lp = asyncio.new_event_loop()
    asyncio.set_event_loop(lp)
    yield lp
    lp.run_until_complete(asyncio.sleep(0.01))
    lp.close()
    asyncio.set_event_loop(None)


@pytest.fixture(scope="session")
def samples() -> Path:
    if not SAMPLES.exists():
        pytest.skip(f"sample DBN files not found at {SAMPLES}")
    return SAMPLES


@pytest.fixture(autouse=True)
def _fresh_historical_breakers():
    """Each test starts with closed Historical API breakers (they are per process)."""
    from ifd_core.marketdata.historical import reset_breakers

    reset_breakers()
    yield
    reset_breakers()


@pytest.fixture
def transitions() -> list:
    """Every breaker transition of the test, in order (a sink on the Historical breakers)."""
    from ifd_core.marketdata.historical import add_breaker_sink

    seen: list = []
    add_breaker_sink("test", seen.append)
    return seen


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect server (and database) for the session's flow-running tests: a
    server per test costs 10-15 s, and without one flows start an ephemeral
    server that logs into closed streams at exit."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
