"""Run independent days or files side by side: in this process, a local process pool, or Dask.

The jobs take a :data:`Mapper` (``mapper(fn, items) -> results in the order of items``) for the
parts that do not depend on each other (a day's detection pass, a file's decode and checks);
what is sequential by nature, an account's equity path across days, stays in the caller. The
flows pass a mapper that runs each item as a Prefect task on the flow's task runner
(flows/fanout.py); the command line passes one of these. ``fn`` and the items must pickle
(module-level functions, paths and plain values, not open lakes). docs/operations.md,
"Scaling out".
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Protocol, TypeVar

from ifd_core.settings import ComputeSettings

T = TypeVar("T")
R = TypeVar("R")


Done = Callable[[int, Any], None]
"""``done(index, result)``: called in the caller's process as each item finishes, in the order
of completion (a progress bar counts them; the returned list keeps the order of the items)."""


class Mapper(Protocol):
    def __call__(
        self, fn: Callable[[Any], R], items: Sequence[Any], /, done: Done | None = None
    ) -> list[R]: ...


def inline_map(fn: Callable[[T], R], items: Sequence[T], /, done: Done | None = None) -> list[R]:
    """One after another in this process: what runs by default."""
    out = []
    for i, x in enumerate(items):
        out.append(fn(x))
        if done:
            done(i, out[-1])
    return out


def in_order(futures: list, wait_each: Callable, done: Done | None) -> list:
    """Results of ``futures`` in their order, ``done`` told of each as ``wait_each`` yields it
    finished; the first failure raises (the others are left to the pool's shutdown)."""
    index = {id(f): i for i, f in enumerate(futures)}
    results: list = [None] * len(futures)
    for f in wait_each(futures):
        i = index[id(f)]
        results[i] = f.result()
        if done:
            done(i, results[i])
    return results


def _ready() -> None:
    """A no-op task: submitting one per worker makes the pool start them all now."""


@contextlib.contextmanager
def process_pool_mapper(workers: int, warm: Callable[[], None] | None = None) -> Iterator[Mapper]:
    """A local pool of ``workers`` processes, started by ``spawn`` (a forked child would inherit
    the parent's DuckDB and polars thread pools, which is unsafe). The workers start at once
    (not at the first item), each running ``warm`` first (``jobs.detect.warm_engine``), so
    their start-up overlaps the caller's own preparation."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=warm) as pool:
        for _ in range(workers):  # each submit to a pool with no idle worker starts one
            pool.submit(_ready)

        def mapper(
            fn: Callable[[T], R], items: Sequence[T], /, done: Done | None = None
        ) -> list[R]:
            return in_order([pool.submit(fn, x) for x in items], as_completed, done)

        yield mapper


async def _warm_dask_worker(warm: Callable[[], None]) -> None:
    """``warm`` on a Dask worker, in a thread: ``Client.run`` does not wait only for coroutines,
    and the worker's event loop keeps answering its scheduler meanwhile."""
    await asyncio.to_thread(warm)


@contextlib.contextmanager
def dask_mapper(
    address: str | None, workers: int, warm: Callable[[], None] | None = None
) -> Iterator[Mapper]:
    """The Dask scheduler at ``address``, or a local cluster of ``workers`` single-threaded
    processes for the run. A task whose worker dies is rescheduled by Dask; one that fails
    raises here, and the caller publishes nothing. ``warm`` runs on each worker there at the
    start (not on one that joins later), as in :func:`process_pool_mapper`."""
    import distributed
    from distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if address:
            client = stack.enter_context(Client(address))
        else:
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                )
            )
            client = stack.enter_context(Client(cluster))
        if warm is not None:  # on the workers there now, not waited for: it overlaps our work
            client.run(_warm_dask_worker, warm, wait=False)

        def mapper(
            fn: Callable[[T], R], items: Sequence[T], /, done: Done | None = None
        ) -> list[R]:
            futures = client.map(fn, list(items), pure=False)
            return in_order(futures, distributed.as_completed, done)

        yield mapper


@contextlib.contextmanager
def mapper_for(
    compute: ComputeSettings, workers: int | None = None, warm: Callable[[], None] | None = None
) -> Iterator[Mapper]:
    """The mapper the ``compute`` settings choose; ``workers`` (the command line's
    ``--workers``) overrides ``compute.workers``, and more than one worker with runner
    ``inline`` means a local process pool. ``warm``: what each worker runs first."""
    n = workers or compute.workers
    runner = compute.runner
    if runner == "inline" and workers is not None and workers > 1:
        runner = "processes"
    if runner == "inline" or (runner == "processes" and n == 1):
        yield inline_map
    elif runner == "processes":
        with process_pool_mapper(n, warm) as mapper:
            yield mapper
    else:
        with dask_mapper(compute.dask_address, n, warm) as mapper:
            yield mapper
