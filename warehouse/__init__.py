import ifd_core  # noqa: F401  (first: polars' allocator settings, ifd_core/allocator.py)
