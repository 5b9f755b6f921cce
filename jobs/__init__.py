"""Application services over the lake, without Prefect: detect, backtest, A/B, extended test,
rollout, health, cost report, calibration and the live run (docs/architecture.md)."""
