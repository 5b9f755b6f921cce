"""The synthetic NQ futures-and-options market: SYNTHETIC data with a known answer.

It is the ground truth detection is scored against, so its pricing is its own and independent of
``ifd_core.analysis`` on purpose: a shared bug there would be invisible in every score.
``market.simulate_market`` is the entry point (docs/simulator.md)."""
