"""The fan-out mappers (jobs/fanout.py): results in the order of the items whatever the order
of completion, ``done`` told of every item once with its result, the first failure raised, and
``mapper_for`` choosing what the compute settings and ``--workers`` say."""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from ifd_core.settings import ComputeSettings
from jobs.fanout import inline_map, mapper_for, process_pool_mapper


def slow_square(x: int) -> int:
    """Later items finish first: completion order is not item order."""
    time.sleep(0.05 * (3 - x) if x < 3 else 0)
    return x * x


def fail_on_two(x: int) -> int:
    if x == 2:
        raise ValueError("item 2 is bad")
    return x


_WARMED_IN: int | None = None


def mark_warm() -> None:
    """A worker's ``warm``: notes the process it ran in."""
    global _WARMED_IN
    _WARMED_IN = os.getpid()


def warmed_here(x: int) -> bool:
    time.sleep(0.05)
    return os.getpid() == _WARMED_IN


def _check(mapper) -> None:
    heard: list[tuple[int, int]] = []
    out = mapper(slow_square, [0, 1, 2, 3], done=lambda i, r: heard.append((i, r)))
    assert out == [0, 1, 4, 9]
    assert sorted(heard) == [(0, 0), (1, 1), (2, 4), (3, 9)]
    with pytest.raises(ValueError, match="item 2 is bad"):
        mapper(fail_on_two, [1, 2, 3])


def test_inline_map_keeps_order_and_reports_each_item():
    heard: list[int] = []
    assert inline_map(slow_square, [2, 0], done=lambda i, r: heard.append(i)) == [4, 0]
    assert heard == [0, 1]
    _check(inline_map)


def test_process_pool_keeps_order_reports_each_item_and_raises():
    with process_pool_mapper(2) as mapper:
        _check(mapper)


def test_a_process_pool_starts_its_workers_at_once_and_warms_each_first():
    before = len(multiprocessing.active_children())
    with process_pool_mapper(2, mark_warm) as mapper:
        assert len(multiprocessing.active_children()) == before + 2  # before any item
        assert mapper(warmed_here, list(range(6))) == [True] * 6
        _check(mapper)


@pytest.mark.slow
def test_local_dask_cluster_keeps_order_reports_each_item_and_raises():
    from jobs.fanout import dask_mapper

    with dask_mapper(None, 2) as mapper:
        _check(mapper)


@pytest.mark.slow
def test_a_local_dask_cluster_warms_its_workers():
    from jobs.fanout import dask_mapper

    with dask_mapper(None, 2, mark_warm) as mapper:
        deadline = time.monotonic() + 60  # the warm-up is not waited for: it overlaps the caller
        while not all(mapper(warmed_here, list(range(4)))):
            assert time.monotonic() < deadline, "the workers were not warmed"
            time.sleep(0.2)
        _check(mapper)


def test_mapper_for_follows_settings_and_workers():
    with mapper_for(ComputeSettings()) as m:
        assert m is inline_map  # the default: what ran before
    with mapper_for(ComputeSettings(), workers=1) as m:
        assert m is inline_map
    with mapper_for(ComputeSettings(runner="processes", workers=1)) as m:
        assert m is inline_map
    with mapper_for(ComputeSettings(), workers=2) as m:  # --workers 2 means a process pool
        assert m is not inline_map
        assert m(slow_square, [1, 2]) == [1, 4]
