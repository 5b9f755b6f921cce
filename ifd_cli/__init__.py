"""The ``ifd`` command: one module per command group, mounted by ``ifd_cli.app``."""
