"""The flows' fan-out: independent days and files as Prefect tasks on the runner settings choose.

``compute.runner`` picks the task runner (docs/operations.md, "Scaling out"): ``inline`` runs
the tasks one after another in the flow's process (what ran before), ``processes`` Prefect's
``ProcessPoolTaskRunner``, ``dask`` prefect-dask's ``DaskTaskRunner`` on the scheduler at
``compute.dask_address`` or on a local cluster. Each item is one task run (one per day or file,
never per record), so the UI shows them and a failed one names its day or file. The mapper has
the shape of jobs/fanout.py's, so the jobs do not know which runner they are given.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from ifd_core.settings import ComputeSettings
from jobs.fanout import Done, Mapper, in_order

R = TypeVar("R")


def task_runner_for(compute: ComputeSettings, workers: int | None = None):
    """A Prefect task runner for ``compute`` (``workers`` overrides ``compute.workers``)."""
    from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

    n = workers or compute.workers
    if compute.runner == "inline":
        return ThreadPoolTaskRunner(max_workers=1)
    if compute.runner == "processes":
        return ProcessPoolTaskRunner(max_workers=n)
    from prefect_dask import DaskTaskRunner

    if compute.dask_address:
        return DaskTaskRunner(address=compute.dask_address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": n,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
        }
    )


@contextlib.contextmanager
def prefect_mapper(
    compute: ComputeSettings, workers: int | None = None, **task_options: Any
) -> Iterator[Mapper]:
    """Inside a flow run: map each item to a task run of ``fn`` on the chosen task runner;
    results come back in the order of the items, and the first failure raises.
    ``task_options`` go to ``prefect.task`` (retries, cache policy, ...)."""
    from prefect import task
    from prefect.futures import as_completed

    with task_runner_for(compute, workers) as runner:

        def mapper(
            fn: Callable[[Any], R], items: Sequence[Any], /, done: Done | None = None
        ) -> list[R]:
            name = getattr(fn, "__name__", "item").replace("_", "-")
            param = next(iter(inspect.signature(fn).parameters))  # the item's parameter
            options = {"name": name, "task_run_name": f"{name}-{{{param}}}", **task_options}
            as_task = task(fn, **options)
            futures = [runner.submit(as_task, parameters={param: x}) for x in items]
            return in_order(futures, as_completed, done)

        yield mapper
