"""The one wiring function: settings → adapters → use cases. API, CLI and tests all call it."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypedDict, Unpack

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
from payment_window.adapters.retention import SqlRetention
from payment_window.adapters.sinks import create_sinks, create_webhook_sinks
from payment_window.adapters.store import SqlUnitOfWorkFactory, create_engine
from payment_window.adapters.store_probe import SqlStoreProbe
from payment_window.adapters.stripe import StripeGateway
from payment_window.adapters.webhook_endpoints import SqlWebhookEndpoints
from payment_window.api.bodies import status_body
from payment_window.config import Environment, Settings
from payment_window.domain.outgoing_webhooks import (
    PARK_AFTER,
    WebhookCopies,
    endpoint_destination,
    parse_events,
)
from payment_window.domain.policy import ExtensionPolicy
from payment_window.domain.ports import (
    CheckoutGateway,
    Clock,
    LiveChanges,
    Metrics,
    OutboxStore,
    RateLimiter,
    Reachable,
    ReadModel,
    Retention,
    Sink,
    StripeBudget,
    UnitOfWorkFactory,
    WindowIndex,
)
from payment_window.expiry import ExpiryTask
from payment_window.expiry_loop import ExpiryLoop
from payment_window.index_repairs import IndexRepairs
from payment_window.operations import Operations
from payment_window.outbox import OutboxRelay, RelayGroup
from payment_window.reconcile import reconcile
from payment_window.service import PaymentWindows
from payment_window.transitions import Transitions
from payment_window.webhooks import StripeWebhooks

log = structlog.get_logger(__name__)


@dataclass
class Container:
    """Everything a process needs, built once from its settings. Fields are the ports where
    one exists, so a test's fakes stand in for the adapters."""

    settings: Settings
    engine: AsyncEngine
    uow: UnitOfWorkFactory
    outbox: OutboxStore
    read_model: ReadModel
    idempotency_keys: SqlIdempotencyKeys
    webhook_endpoints: SqlWebhookEndpoints
    store_probe: Reachable
    retention: Retention
    index: WindowIndex
    gateway: CheckoutGateway
    metrics: Metrics
    changes: LiveChanges
    transitions: Transitions
    repairs: IndexRepairs
    windows: PaymentWindows
    webhooks: StripeWebhooks
    operations: Operations
    clock: Clock
    stripe_budget: StripeBudget
    expiry_budget: RateLimiter
    sinks: Mapping[str, Sink] | None = None
    # What bootstrap made and must close; what a caller passed in, its caller closes.
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def sync_clock(self) -> None:
        """Measure the reference clock's offset before the first change is stamped (a clock a
        test passed in needs none)."""
        if isinstance(self.clock, ReferenceClock):
            await self.clock.sync()

    async def rebuild_index(self) -> int:
        """Put every unsettled window of the store back in the index; how many it fixed."""
        report = await reconcile(self.read_model, self.index)
        return report.added + report.updated

    def expiry_task(self) -> ExpiryTask:
        """A new expiry task (each has its own stop switch) spending the shared Stripe budget."""
        settings = self.settings
        return ExpiryTask(
            uow=self.uow,
            transitions=self.transitions,
            index=self.index,
            budget=self.expiry_budget,
            batch_size=settings.expiry_batch_size,
            lease_seconds=settings.claim_lease_seconds,
            reminder_offsets=tuple(settings.reminder_offsets_minutes),
            rebuild=self.rebuild_index,
        )

    def expiry_loop(self, task: ExpiryTask) -> ExpiryLoop:
        """The long-running expiry: `task`'s passes back to back, sleeping until the next
        deadline (`task.stop()` ends it)."""
        return ExpiryLoop(
            task,
            self.index,
            max_sleep_seconds=self.settings.worker_max_sleep_seconds,
            metrics=self.metrics,
        )

    def outbox_relay(self) -> RelayGroup:
        """The vendor sinks' relay, and one relay per webhook endpoint beside it: each endpoint
        claims only its own messages, skips its passes while disabled (a 410), and parks a
        message that still fails after three days."""
        sinks = self.sinks if self.sinks is not None else create_sinks(self.settings)
        vendor = OutboxRelay(self.outbox, dict(sinks), self.metrics, self.clock)
        state = self.webhook_endpoints
        webhooks = create_webhook_sinks(self.settings, state, self.clock, self.metrics)
        relays = [vendor]
        for sink in webhooks:
            relays.append(
                OutboxRelay(
                    self.outbox,
                    {sink.destination: sink},
                    self.metrics,
                    self.clock,
                    park_after=PARK_AFTER,
                    active=functools.partial(state.is_active, sink.destination),
                    reports=False,
                )
            )
        closers = [webhooks[0].close] if webhooks else []
        return RelayGroup(relays, closers)

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
        for close in self.closers:
            await close()


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


class Outside(TypedDict, total=False):
    """The pieces of the outside world a caller may pass to `bootstrap` instead of those the
    settings describe (the unit tests pass their fakes)."""

    clock: Clock
    gateway: CheckoutGateway
    index: WindowIndex
    uow: UnitOfWorkFactory
    read_model: ReadModel
    outbox: OutboxStore
    metrics: Metrics
    changes: LiveChanges
    stripe_budget: StripeBudget
    expiry_budget: RateLimiter
    sinks: Mapping[str, Sink]


def build_container(settings: Settings, **given: Unpack[Outside]) -> Container:
    """Build the adapters and use cases for `settings`. Connects lazily: nothing at import.

    Each keyword replaces one piece of the outside world (tests pass their fakes); whoever
    passes a piece closes it, `Container.close` closes only what was built here. Plain, not
    async: it awaits nothing, so a test can build its world in a constructor."""
    log.info("starting", version=__version__, env=settings.env)
    engine = create_engine(settings)
    closers: list[Callable[[], Awaitable[None]]] = [engine.dispose]
    uow = given.get("uow")
    if uow is None:
        # In production a destination that is not configured gets no outbox rows (they would
        # wait for ever); in development they wait, for `relay --status` to show.
        destinations = (
            configured_destinations(settings) if settings.env == Environment.PRODUCTION else None
        )
        uow = SqlUnitOfWorkFactory(engine, webhook_copies(settings), destinations)
    read_model = given.get("read_model")
    if read_model is None:
        read_model = SqlReadModel(engine)
    metrics = given.get("metrics")
    if metrics is None:
        built_metrics = metrics = create_metrics(settings)
        closers.append(_closing(built_metrics.close))
    index = given.get("index")
    if index is None:
        built_index = index = create_resilient_index(
            settings, engine, metrics, rebuild=_rebuild_after_outage(read_model)
        )
        closers.append(built_index.close)
    process_clock = SystemClock(settings.dev_clock_offset_seconds)
    # One clock decides and stamps: the index's (Redis's, or the store's), read through ours.
    clock = given.get("clock")
    if clock is None:
        clock = ReferenceClock(process_clock, index.now)
    stripe_clock = StripeClock(process_clock)
    stripe_budget = given.get("stripe_budget")
    if stripe_budget is None:
        stripe_budget = create_stripe_budget(settings, index, metrics)
    livemode = None
    gateway = given.get("gateway")
    if gateway is None:
        stripe = StripeGateway.from_settings(
            settings, budget=stripe_budget, stripe_clock=stripe_clock, metrics=metrics
        )
        closers.append(stripe.close)
        gateway, livemode = stripe, stripe.livemode
    changes = given.get("changes")
    if changes is None:
        built_changes = changes = create_changes(settings)
        closers.append(built_changes.close)
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
    webhook_endpoints = SqlWebhookEndpoints(engine)
    return Container(
        settings=settings,
        engine=engine,
        uow=uow,
        outbox=given.get("outbox", SqlOutboxStore(engine)),
        read_model=read_model,
        idempotency_keys=SqlIdempotencyKeys(engine),
        webhook_endpoints=webhook_endpoints,
        store_probe=SqlStoreProbe(engine),
        retention=SqlRetention(engine),
        index=index,
        gateway=gateway,
        metrics=metrics,
        changes=changes,
        transitions=transitions,
        repairs=repairs,
        windows=windows,
        webhooks=StripeWebhooks(uow, transitions, livemode=livemode),
        operations=Operations(read_model, clock, webhook_endpoints, settings.webhook_endpoints),
        clock=clock,
        stripe_budget=stripe_budget,
        expiry_budget=given.get("expiry_budget", BackgroundBudget(stripe_budget)),
        sinks=given.get("sinks"),
        # Closed in the reverse order of building: the engine last.
        closers=closers[::-1],
    )


async def bootstrap(settings: Settings, **given: Unpack[Outside]) -> Container:
    """`build_container` for the processes, which await it at start-up."""
    return build_container(settings, **given)


def _closing(close: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def closed() -> None:
        close()

    return closed


def _rebuild_after_outage(read_model: ReadModel) -> Callable[[WindowIndex], Awaitable[object]]:
    """What the failover index runs when Redis answers again: the store's windows put back."""

    async def rebuild(redis_index: WindowIndex) -> object:
        report = await reconcile(read_model, redis_index)
        log.warning("window_index_rebuilt_after_outage", **report.as_dict())
        return report

    return rebuild
