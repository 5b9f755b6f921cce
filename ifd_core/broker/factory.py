"""Brokers and traders from settings: ``execution.broker`` picks the broker, nothing else."""

from __future__ import annotations

from collections.abc import Callable

from ifd_core.broker.base import Broker, OrderRefused
from ifd_core.broker.trader import SignalTrader, TraderConfig
from ifd_core.ops.resilience import Breaker
from ifd_core.settings import Settings
from ifd_core.trading.paper import limits_from_settings


def broker_from_settings(settings: Settings, *, confirm_live: bool = False) -> Broker:
    if settings.execution.broker == "ib":
        from ifd_core.broker.ib_broker import IBBroker

        return IBBroker(settings.ib, confirm_live=confirm_live)
    from ifd_core.broker.paper_broker import PaperBroker

    return PaperBroker(fee_per_contract=settings.paper.commission_per_contract)


def broker_breaker(settings: Settings, broker: Broker, on_change=None) -> Breaker:
    """The broker's circuit breaker; an order it refused before sending is not a broker fault."""
    return Breaker(
        f"broker:{broker.name}",
        settings.resilience.breaker,
        on_change=on_change,
        exclude=(OrderRefused,),
    )


def trader_from_settings(
    algo: str,
    settings: Settings,
    broker: Broker,
    breaker: Breaker,
    *,
    quote: Callable[[int], tuple[float, float] | None],
    halted: Callable[[], str | None],
    run_id: str,
    id_tag: str = "",
) -> SignalTrader:
    p, r = settings.paper, settings.risk
    cfg = TraderConfig(
        order_type=p.order_type,
        stop_fraction=r.stop_loss_percent / 100.0,
        target_fraction=r.take_profit_percent / 100.0,
        time_stop_s=p.time_stop_s,
        min_confidence=r.min_signal_confidence,
        stack_episodes=p.stack_episodes,
    )
    return SignalTrader(
        algo,
        broker,
        breaker,
        cfg,
        limits_from_settings(settings),
        capital=p.capital,
        quote=quote,
        halted=halted,
        run_id=run_id,
        id_tag=id_tag,
    )
