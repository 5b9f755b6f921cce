"""Flow runs set IFD's loggers from ``log_level`` (they run in their own process under serve)."""

from __future__ import annotations

import logging
import time

import pytest

from flows.settings import flow_settings
from ifd_core.logs import IFD_LOGGERS


@pytest.fixture
def restore_levels():
    saved = {name: logging.getLogger(name).level for name in IFD_LOGGERS}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize("level", ["DEBUG", "WARNING", "ERROR"])
def test_a_flow_run_logs_at_the_configured_level(monkeypatch, restore_levels, level):
    monkeypatch.setenv("IFD_LOG_LEVEL", level)
    settings = flow_settings()
    assert settings.log_level == level
    for name in IFD_LOGGERS:
        assert logging.getLogger(name).getEffectiveLevel() == getattr(logging, level)


def console_handlers_reached(name: str) -> list[logging.Handler]:
    """The handlers a record of logger ``name`` reaches that print it (pytest's capture and
    Prefect's API handler excluded), walking up the hierarchy as logging does."""
    from prefect.logging.handlers import APILogHandler

    out: list[logging.Handler] = []
    logger: logging.Logger | None = logging.getLogger(name)
    while logger is not None:
        out += [
            h
            for h in logger.handlers
            if not isinstance(h, APILogHandler) and not type(h).__module__.startswith("_pytest")
        ]
        logger = logger.parent if logger.propagate else None
    return out


def test_a_flow_runs_ifd_logs_reach_the_ui_once_and_print_once(
    prefect_server, restore_levels, monkeypatch
):
    """prefect.toml's extra_loggers attach Prefect's API handler to IFD's loggers, and in a flow
    run IFD adds no console handler of its own: the record is in the run's logs (the UI) and
    one console handler prints it (Prefect's, on the root logger)."""
    import anyio
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging import get_run_logger
    from prefect.logging.handlers import PrefectConsoleHandler

    monkeypatch.setenv("IFD_LOG_LEVEL", "INFO")

    printers: list[logging.Handler] = []

    @flow
    def logs_from_a_job() -> str:
        flow_settings()
        printers.extend(console_handlers_reached("jobs.logs_probe"))
        logging.getLogger("jobs.logs_probe").warning("probe-from-a-job")
        get_run_logger().info("done")
        from prefect.runtime import flow_run

        return flow_run.id

    run_id = logs_from_a_job()

    async def read():
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
            )
            assert runs
            return await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
            )

    # Logs are sent in batches: poll until they are written.
    messages: list[tuple[str, str]] = []
    for _ in range(40):
        messages = [(log.name, log.message) for log in anyio.run(read)]
        if ("jobs.logs_probe", "probe-from-a-job") in messages:
            break
        time.sleep(0.25)
    assert ("jobs.logs_probe", "probe-from-a-job") in messages
    assert [type(h) for h in printers] == [PrefectConsoleHandler]
