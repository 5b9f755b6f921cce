"""Chain analyzers as pure functions of one snapshot (docs/algorithms.md §9).

``snapshot``             MarketSnapshot, build_snapshot, with_greeks (the column contract)
``positioning``          DealerPositioning: the explicit who-holds-the-OI assumption
``expiration_pressure``  dealer-gamma pin map per expiry
``volume_shock``         signed flow shocks and the dealer hedge they force
``expected_value``       first-passage EV of futures trades, reliability curve
``risk_analysis``        premium at stake, support/resistance, dealer exposure
``signals``              ChainSignal, composite_score
``pipeline``             run_chain_analyzers: order, conflict netting, ranking
"""

from ifd_core.analysis.chain.pipeline import ChainParams, ChainState, run_chain_analyzers
from ifd_core.analysis.chain.signals import ChainSignal, composite_score
from ifd_core.analysis.chain.snapshot import MarketSnapshot, build_snapshot, with_greeks

__all__ = [
    "ChainParams",
    "ChainSignal",
    "ChainState",
    "MarketSnapshot",
    "build_snapshot",
    "composite_score",
    "run_chain_analyzers",
    "with_greeks",
]
