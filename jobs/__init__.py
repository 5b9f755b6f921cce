"""Application services over the lake, without Prefect: detect, backtest, A/B, extended test,
rollout, health, cost report, calibration and the live run (docs/architecture.md)."""

import ifd_core  # noqa: F401  (first: polars' allocator settings, ifd_core/allocator.py)
