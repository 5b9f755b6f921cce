"""The domain: market data, analysis, trading, simulator and calendar, with no I/O framework."""

from ifd_core.allocator import configure as _configure_allocator

_configure_allocator()  # before anything imports polars (ifd_core/allocator.py)
