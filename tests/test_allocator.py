"""polars' allocator keeps freed memory for the next batch: set before polars loads, by every
IFD package, and an operator's own setting wins (ifd_core/allocator.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ifd_core.allocator import CONF, ENV

POLARS_DEFAULT = "dirty_decay_ms:500,muzzy_decay_ms:1000"  # what polars sets on import


def _conf_after_import(module: str, env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if env_value is not None:
        env[ENV] = env_value
    code = f"import os, {module}, polars; print(os.environ[{ENV!r}])"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


@pytest.mark.parametrize(
    "module",
    [
        "ifd_core",
        "warehouse.lake",
        "expectations.runner",
        "jobs.fanout",
        "reports",
        "flows",
        "ifd_cli",
    ],
)
def test_every_package_sets_the_allocator_before_polars_loads(module: str) -> None:
    # polars appends the environment's value to its own defaults when it is imported; had it
    # been imported first, the variable would hold its defaults alone.
    assert _conf_after_import(module, None) == f"{POLARS_DEFAULT},{CONF}"


def test_an_operator_setting_wins() -> None:
    assert _conf_after_import("warehouse.lake", "dirty_decay_ms:0") == (
        f"{POLARS_DEFAULT},dirty_decay_ms:0"
    )
