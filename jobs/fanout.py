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

import contextlib
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Protocol, TypeVar

from ifd_core.settings import ComputeSettings

T = TypeVar("T")
R = TypeVar("R")


class Mapper(Protocol):
    def __call__(self, fn: Callable[[Any], R], items: Sequence[Any], /) -> list[R]: ...


def inline_map(fn: Callable[[T], R], items: Sequence[T], /) -> list[R]:
    """One after another in this process: what runs by default."""
    return [fn(x) for x in items]


@contextlib.contextmanager
def process_pool_mapper(workers: int) -> Iterator[Mapper]:
    """A local pool of ``workers`` processes, started by ``spawn`` (a forked child would inherit
    the parent's DuckDB and polars thread pools, which is unsafe)."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:

        def mapper(fn: Callable[[T], R], items: Sequence[T], /) -> list[R]:
            return list(pool.map(fn, items))

        yield mapper


@contextlib.contextmanager
def dask_mapper(address: str | None, workers: int) -> Iterator[Mapper]:
    """The Dask scheduler at ``address``, or a local cluster of ``workers`` single-threaded
    processes for the run. A task whose worker dies is rescheduled by Dask; one that fails
    raises here, and the caller publishes nothing."""
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

        def mapper(fn: Callable[[T], R], items: Sequence[T], /) -> list[R]:
            futures = client.map(fn, list(items), pure=False)
            return client.gather(futures)

        yield mapper


@contextlib.contextmanager
def mapper_for(compute: ComputeSettings, workers: int | None = None) -> Iterator[Mapper]:
    """The mapper the ``compute`` settings choose; ``workers`` (the command line's
    ``--workers``) overrides ``compute.workers``, and more than one worker with runner
    ``inline`` means a local process pool."""
    n = workers or compute.workers
    runner = compute.runner
    if runner == "inline" and workers is not None and workers > 1:
        runner = "processes"
    if runner == "inline" or (runner == "processes" and n == 1):
        yield inline_map
    elif runner == "processes":
        with process_pool_mapper(n) as mapper:
            yield mapper
    else:
        with dask_mapper(compute.dask_address, n) as mapper:
            yield mapper
