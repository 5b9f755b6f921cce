"""The dealer-positioning assumption shared by the gamma map and the risk analysis.

No CME feed says who holds open interest (docs/algorithms.md §3): any dealer gamma or delta
exposure is an *assumption*, so it is one explicit, configurable object instead of a sign buried
in a formula (the reference's untested "steering" signs, docs/algorithms.md §9).

Default assumption, stated once:

* prior-session open interest — dealers are **long calls** (customers overwrite / sell calls)
  and **short puts** (customers buy protection): ``call_oi_sign = +1``, ``put_oi_sign = −1``;
* today's aggressor-signed flow — dealers take the other side of every aggressive customer
  trade: customers' net buys (buy − sell aggressor contracts) are subtracted from the dealers'
  position. Unsigned prints (spread legs) are ignored because their side is unknown.

The dealer position of an option in contracts is then
``sign_right × open_interest − include_flow × (buy_volume − sell_volume)``, and its exposures are
position × Black-76 gamma (futures per index point) and position × delta (futures).
Positive dealer gamma means dealers sell rallies and buy dips (price is pinned, *attracted*, to
the strike); negative means they chase the move (*repelled*).
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
