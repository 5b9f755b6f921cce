"""Retries for the tasks that are safe to repeat, and only for failures a retry can cure.

Safe to repeat (docs/operations.md): ``ingest-file`` (the lake commits a file whole, and a file
already loaded adds nothing: ``duplicates``) and ``evaluate-against-ground-truth`` (reads the lake,
writes one artifact). Not retried: ``simulate-market`` (deterministic CPU work: a repeat fails
the same way) and the flows themselves (a deployment run is re-run by hand or by its schedule).
A retry is for an outside moment: an I/O error, the catalog busy with another writer, a
conflicting commit. A bad file
or a bug fails at once instead of three times.
"""

from __future__ import annotations

from typing import Any

RETRIES = 2
RETRY_DELAY_SECONDS = [10, 60]
# I/O errors that a second try meets again.
PERMANENT_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def transient_failure(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's ``retry_condition_fn``: retry an I/O error, a busy catalog or a lake conflict
    (a partition changed under the transaction: "recompute and retry"), nothing else."""
    from warehouse.lake import LakeConflict
    from warehouse.migrations import CatalogBusy

    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        try:
            exc = state.result(raise_on_failure=False)
        except Exception as err:  # the result could not be read: judge by that error
            exc = err
    if isinstance(exc, PERMANENT_OS_ERRORS):
        return False
    return isinstance(exc, OSError | CatalogBusy | LakeConflict)


SAFE_RETRY: dict[str, Any] = {
    "retries": RETRIES,
    "retry_delay_seconds": RETRY_DELAY_SECONDS,
    "retry_condition_fn": transient_failure,
}
