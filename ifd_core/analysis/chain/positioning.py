"""The dealer-positioning assumption shared by the gamma map and the risk analysis.

No CME feed says who holds open interest, so any dealer exposure is an *assumption*: one explicit,
configurable object instead of a sign buried in a formula. By default dealers are long calls and
short puts of prior open interest and take the other side of every aggressor print; exposures
are position × Black-76 gamma and × delta. The assumption and what positive or negative gamma
means: docs/algorithms.md §9 (Dealer positioning).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class DealerPositioning:
    call_oi_sign: float = 1.0
    put_oi_sign: float = -1.0
    include_flow: bool = True

    def describe(self) -> str:
        side = {1.0: "long", -1.0: "short", 0.0: "flat"}
        flow = "minus today's net customer buys" if self.include_flow else "OI only"
        return (
            f"dealers {side.get(self.call_oi_sign, str(self.call_oi_sign))} call OI, "
            f"{side.get(self.put_oi_sign, str(self.put_oi_sign))} put OI, {flow}"
        )

    def position(self) -> pl.Expr:
        """Dealer position in contracts per option row (needs open_interest and volumes)."""
        sign = (
            pl.when(pl.col("right") == "C")
            .then(pl.lit(self.call_oi_sign))
            .otherwise(pl.lit(self.put_oi_sign))
        )
        pos = sign * pl.col("open_interest").fill_null(0).cast(pl.Float64)
        if self.include_flow:
            net = pl.col("buy_volume").cast(pl.Float64) - pl.col("sell_volume").cast(pl.Float64)
            pos = pos - net
        return pos.alias("dealer_position")
