"""Tasks safe to repeat retry an outside failure (flows/retries.py); a bad file or a bug fails at
once instead of three times."""

from __future__ import annotations

import pytest
from prefect.states import Failed

from flows.retries import RETRIES, transient_failure
from warehouse.lake import LakeConflict
from warehouse.migrations import CatalogBusy


@pytest.mark.parametrize(
    ("exc", "retried"),
    [
        (OSError(5, "Input/output error"), True),
        (TimeoutError("read timed out"), True),
        (CatalogBusy("catalog held by pid 7"), True),
        (LakeConflict("mbo date=2026-03-30 changed"), True),
        (FileNotFoundError(2, "No such file"), False),
        (PermissionError(13, "Permission denied"), False),
        (ValueError("origin must be one of ..."), False),
        (KeyError("unknown lake table"), False),
    ],
)
def test_only_outside_failures_are_retried(exc, retried):
    assert transient_failure(None, None, Failed(data=exc)) is retried


def test_the_idempotent_tasks_retry_and_the_others_do_not():
    from prefect import task as make_task

    from flows.demo import evaluate_days, simulate
    from flows.historical_ingest import FILE_TASK
    from warehouse.ingest import ingest_file_job

    ingest_file = make_task(ingest_file_job, **FILE_TASK)  # as flows/fanout.py makes it
    for task in (ingest_file, evaluate_days):
        assert task.retries == RETRIES and task.retry_condition_fn is transient_failure
        assert task.retry_delay_seconds
    assert simulate.retries == 0  # deterministic CPU work: a repeat fails the same way
