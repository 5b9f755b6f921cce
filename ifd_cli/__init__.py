"""The ``ifd`` command: one module per command group, mounted by ``ifd_cli.app``.

``common`` (exit codes, consoles, settings and logging, shared option parsing) · ``data``
(simulate, ingest, fetch, sql) · ``detect`` (detect, evaluate, chain) · ``live`` (gateway, live,
halt, resume) · ``research`` (backtest, ab, extended-test) · ``ops`` (status, repair, serve) ·
``demo`` · groups ``config``, ``cost``, ``rollout``, ``ib``.
"""

import ifd_core  # noqa: F401  (first: polars' allocator settings, ifd_core/allocator.py)
