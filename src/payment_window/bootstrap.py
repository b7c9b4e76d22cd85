"""The one wiring function: settings → adapters → use cases. API, CLI and tests all call it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from payment_window import __version__
from payment_window.adapters.changes import InProcessChangeFeed, RedisChangeFeed
from payment_window.adapters.clock import ReferenceClock, StripeClock, SystemClock
from payment_window.adapters.destinations import configured_destinations
from payment_window.adapters.failover_index import FailoverWindowIndex
from payment_window.adapters.idempotency import SqlIdempotencyKeys
from payment_window.adapters.index_factory import create_resilient_index
from payment_window.adapters.leases import RenewingIndex
from payment_window.adapters.metrics import DogStatsdMetrics, NullMetrics
from payment_window.adapters.outbox_store import SqlOutboxStore
from payment_window.adapters.ratelimit import (
    BackgroundBudget,
    FailoverStripeBudget,
    LocalStripeBudget,
)
from payment_window.adapters.read_model import SqlReadModel
from payment_window.adapters.redis_index import RedisWindowIndex
from payment_window.adapters.store import SqlUnitOfWorkFactory, create_engine
from payment_window.adapters.stripe import StripeGateway
from payment_window.api.bodies import status_body
from payment_window.config import Environment, Settings
from payment_window.domain.outgoing_webhooks import (
    WebhookCopies,
    endpoint_destination,
    parse_events,
)
from payment_window.domain.policy import ExtensionPolicy
from payment_window.domain.ports import LiveChanges, Metrics, StripeBudget, WindowIndex
from payment_window.expiry import ExpiryTask
from payment_window.index_repairs import IndexRepairs
from payment_window.reconcile import reconcile
from payment_window.service import PaymentWindows
from payment_window.transitions import Transitions
from payment_window.webhooks import StripeWebhooks

log = structlog.get_logger(__name__)


@dataclass
class Container:
    """Everything a process needs, built once from its settings."""

    settings: Settings
    engine: AsyncEngine
    uow: SqlUnitOfWorkFactory
    outbox: SqlOutboxStore
    read_model: SqlReadModel
    idempotency_keys: SqlIdempotencyKeys
    index: WindowIndex
    gateway: StripeGateway
    metrics: Metrics
    changes: LiveChanges
    transitions: Transitions
    repairs: IndexRepairs
    windows: PaymentWindows
    webhooks: StripeWebhooks
    clock: ReferenceClock
    stripe_budget: StripeBudget

    def expiry_task(self) -> ExpiryTask:
        """A new expiry task (each has its own stop switch) spending the shared Stripe budget."""
        settings = self.settings

        async def rebuild() -> int:
            report = await reconcile(self.read_model, self.index)
            return report.added + report.updated

        return ExpiryTask(
            uow=self.uow,
            transitions=self.transitions,
            index=self.index,
            budget=BackgroundBudget(self.stripe_budget),
            batch_size=settings.expiry_batch_size,
            lease_seconds=settings.claim_lease_seconds,
            reminder_offsets=tuple(settings.reminder_offsets_minutes),
            rebuild=rebuild,
        )

    @asynccontextmanager
    async def repairing(self) -> AsyncIterator[None]:
        """Re-index, every second, the windows whose index update failed after a commit."""
        stop = asyncio.Event()
        running = asyncio.create_task(self.repairs.run(stop), name="payment-window-repairs")
        try:
            yield
        finally:
            stop.set()
            with suppress(asyncio.CancelledError):
                await running

    async def close(self) -> None:
        await self.gateway.close()
        await self.index.close()
        await self.changes.close()
        await self.engine.dispose()
        self.metrics.close()


def default_policy(settings: Settings) -> ExtensionPolicy:
    return ExtensionPolicy(
        max_extension_minutes=settings.default_max_extension_minutes,
        makers_may_override=settings.default_makers_may_override,
        on_expiry=settings.default_on_expiry,
    )


def webhook_copies(settings: Settings) -> WebhookCopies | None:
    """Every process that records changes writes each webhook endpoint's copies of the notices
    (the relay alone needs the signing secret)."""
    if not settings.webhook_endpoints:
        return None
    return WebhookCopies(
        destinations=tuple(endpoint_destination(url) for url in settings.webhook_endpoints),
        events=parse_events(settings.webhook_events),
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


def create_stripe_budget(
    settings: Settings, index: WindowIndex, metrics: Metrics | None = None
) -> StripeBudget:
    """Every Stripe call of the deployment, shared by every process through Redis (each
    process keeps its share while Redis is away); this process's own without Redis."""
    if isinstance(index, RenewingIndex):
        index = index.inner
    rps, background = settings.stripe_rps, settings.stripe_expire_rps
    if isinstance(index, RedisWindowIndex | FailoverWindowIndex):
        failover = index if isinstance(index, FailoverWindowIndex) else None
        return FailoverStripeBudget.over(
            index.redis_client,
            settings.redis_prefix,
            rps,
            background,
            metrics=metrics,
            redis_down=(lambda: failover.degraded) if failover is not None else lambda: False,
        )
    return LocalStripeBudget(rps, background, metrics=metrics)


async def bootstrap(settings: Settings) -> Container:
    """Build the adapters and use cases for `settings`. Connects lazily: nothing at import."""
    log.info("starting", version=__version__, env=settings.env)
    engine = create_engine(settings)
    # In production a destination that is not configured gets no outbox rows (they would wait
    # for ever); in development they wait, for `relay --status` to show.
    destinations = (
        configured_destinations(settings) if settings.env == Environment.PRODUCTION else None
    )
    uow = SqlUnitOfWorkFactory(engine, webhook_copies(settings), destinations)
    metrics = create_metrics(settings)
    index = create_resilient_index(settings, engine, metrics)
    process_clock = SystemClock(settings.dev_clock_offset_seconds)
    # One clock decides and stamps: the index's (Redis's, or the store's), read through ours.
    clock = ReferenceClock(process_clock, index.now)
    stripe_clock = StripeClock(process_clock)
    stripe_budget = create_stripe_budget(settings, index, metrics)
    gateway = StripeGateway.from_settings(
        settings, budget=stripe_budget, stripe_clock=stripe_clock, metrics=metrics
    )
    changes = create_changes(settings)
    repairs = IndexRepairs(uow, index, metrics)
    transitions = Transitions(
        index=index,
        gateway=gateway,
        clock=clock,
        stripe_clock=stripe_clock,
        metrics=metrics,
        changes=changes,
        repairs=repairs,
        default_policy=default_policy(settings),
        confirmation_recheck=timedelta(minutes=settings.confirmation_recheck_minutes),
        render=status_body,
    )
    windows = PaymentWindows(
        uow=uow,
        transitions=transitions,
        window_minutes=settings.window_minutes,
        reminder_offsets=tuple(settings.reminder_offsets_minutes),
    )
    return Container(
        settings=settings,
        engine=engine,
        uow=uow,
        outbox=SqlOutboxStore(engine),
        read_model=SqlReadModel(engine),
        idempotency_keys=SqlIdempotencyKeys(engine),
        index=index,
        gateway=gateway,
        metrics=metrics,
        changes=changes,
        transitions=transitions,
        repairs=repairs,
        windows=windows,
        webhooks=StripeWebhooks(uow, transitions, livemode=gateway.livemode),
        clock=clock,
        stripe_budget=stripe_budget,
    )
