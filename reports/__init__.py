"""Static HTML reports under ``<data>/reports/``, built on one page/figure/table kit."""

import ifd_core  # noqa: F401  (first: polars' allocator settings, ifd_core/allocator.py)
