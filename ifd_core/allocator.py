"""How long polars' allocator keeps freed memory before giving it back to the kernel.

A batch allocates and frees a few GB of column buffers; polars' jemalloc returns them to the
kernel within a second, so the next batch page-faults the same memory in again (kernel time was
up to a fifth of an ingest's CPU; docs/operations.md §Ingest, Memory). Keeping freed pages for 30 s
lets the next file reuse them. jemalloc reads this once, when polars loads, so it is set when
``ifd_core`` is imported: every IFD package imports ``ifd_core`` before it imports polars.
A value the operator set in the environment wins.
"""

from __future__ import annotations

import os

ENV = "_RJEM_MALLOC_CONF"  # the variable polars' prefixed jemalloc reads
CONF = "dirty_decay_ms:30000,muzzy_decay_ms:30000"


def configure() -> None:
    os.environ.setdefault(ENV, CONF)
