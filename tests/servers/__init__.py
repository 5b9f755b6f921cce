"""Loopback test doubles of outside services, each runnable with ``python -m``."""
