"""The one wiring function: settings → adapters → use cases. API, CLI and tests all call it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from payment_window.adapters.changes import InProcessChangeFeed, RedisChangeFeed
from payment_window.adapters.clock import SystemClock
from payment_window.adapters.index_factory import create_resilient_index
from payment_window.adapters.metrics import DogStatsdMetrics, NullMetrics
from payment_window.adapters.store import SqlUnitOfWorkFactory, create_engine
from payment_window.adapters.stripe import StripeGateway
from payment_window.config import Settings
from payment_window.domain.policy import ExtensionPolicy
from payment_window.domain.ports import LiveChanges, Metrics, WindowIndex
from payment_window.service import PaymentWindows
from payment_window.webhooks import StripeWebhooks

log = structlog.get_logger(__name__)


@dataclass
class Container:
    """Everything a process needs, built once from its settings."""

    settings: Settings
    engine: AsyncEngine
    uow: SqlUnitOfWorkFactory
    index: WindowIndex
    gateway: StripeGateway
    metrics: Metrics
    changes: LiveChanges
    windows: PaymentWindows
    webhooks: StripeWebhooks
    clock: SystemClock
    _closers: list[Any] = field(default_factory=list)

    async def close(self) -> None:
        await self.gateway.close()
        await self.index.close()
        await self.changes.close()
        await self.engine.dispose()
        self.metrics.close()
        for closer in self._closers:
            closer()


def default_policy(settings: Settings) -> ExtensionPolicy:
    return ExtensionPolicy(
        max_extension_minutes=settings.default_max_extension_minutes,
        makers_may_override=settings.default_makers_may_override,
        on_expiry=settings.default_on_expiry,
    )


def create_metrics(settings: Settings) -> Metrics:
    if not settings.dogstatsd_host:
        log.info("integration_off", integration="dogstatsd", hint="set PW_DOGSTATSD_HOST")
        return NullMetrics()
    return DogStatsdMetrics(settings.dogstatsd_host, settings.dogstatsd_port)


def create_changes(settings: Settings) -> LiveChanges:
    """Redis pub/sub when Redis is configured (viewers hear every process), else this process."""
    if settings.redis_url:
        return RedisChangeFeed.from_url(settings.redis_url, settings.redis_prefix)
    return InProcessChangeFeed()


def create_gateway(settings: Settings) -> StripeGateway:
    return StripeGateway.from_settings(settings)


async def bootstrap(settings: Settings) -> Container:
    """Build the adapters and use cases for `settings`. Connects lazily: nothing at import."""
    engine = create_engine(settings)
    uow = SqlUnitOfWorkFactory(engine)
    metrics = create_metrics(settings)
    index = create_resilient_index(settings, engine, metrics)
    gateway = create_gateway(settings)
    changes = create_changes(settings)
    clock = SystemClock()
    windows = PaymentWindows(
        uow=uow,
        index=index,
        gateway=gateway,
        clock=clock,
        metrics=metrics,
        changes=changes,
        default_policy=default_policy(settings),
        window_minutes=settings.window_minutes,
        reminder_offsets=settings.reminder_offsets_minutes,
    )
    return Container(
        settings=settings,
        engine=engine,
        uow=uow,
        index=index,
        gateway=gateway,
        metrics=metrics,
        changes=changes,
        windows=windows,
        webhooks=StripeWebhooks(windows, gateway),
        clock=clock,
    )
