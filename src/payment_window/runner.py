"""The long-running and one-shot processes, built from settings (the CLI and Lambda call these)."""

from __future__ import annotations

import asyncio
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from pydantic import SecretStr

from payment_window.adapters.failover_index import FailoverWindowIndex
from payment_window.adapters.leases import RenewingIndex
from payment_window.adapters.ratelimit import (
    FailoverRateLimiter,
    LocalRateLimiter,
    RedisRateLimiter,
)
from payment_window.adapters.redis_index import RedisWindowIndex
from payment_window.adapters.sinks import create_sinks
from payment_window.bootstrap import Container, bootstrap
from payment_window.config import Environment, Settings
from payment_window.domain.ports import RateLimiter
from payment_window.expiry import ExpiryTask, PacedGateway, PassReport, Worker
from payment_window.loops import Loop, loops_for
from payment_window.outbox import OutboxRelay, OutboxStatus
from payment_window.outbox import status as outbox_status
from payment_window.reconcile import reconcile

log = structlog.get_logger(__name__)


def stripe_budget(container: Container) -> RateLimiter:
    settings = container.settings
    index = container.index
    if isinstance(index, RenewingIndex):
        index = index.inner
    if isinstance(index, RedisWindowIndex | FailoverWindowIndex):
        key = f"{settings.redis_prefix}payment:stripe:{{expire-budget}}"
        shared = RedisRateLimiter(index.redis_client, key, settings.stripe_expire_rps)
        local = LocalRateLimiter(settings.stripe_expire_rps)
        if isinstance(index, FailoverWindowIndex):
            return FailoverRateLimiter(shared, local, redis_down=lambda: index.degraded)
        return FailoverRateLimiter(shared, local)
    return LocalRateLimiter(settings.stripe_expire_rps)


def expiry_task(container: Container) -> ExpiryTask:
    settings = container.settings
    paced = container.windows.with_gateway(
        PacedGateway(container.gateway, stripe_budget(container))
    )

    async def rebuild() -> int:
        report = await reconcile(container.engine, container.index)
        return report.added + report.updated

    return ExpiryTask(
        paced,
        container.index,
        batch_size=settings.expiry_batch_size,
        lease_seconds=settings.claim_lease_seconds,
        rebuild=rebuild,
    )


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Container]:
    container = await bootstrap(settings)
    try:
        yield container
    finally:
        await container.close()


async def expire_due_once(settings: Settings) -> PassReport:
    """One pass, as the EventBridge schedule runs it: sweep the store, then close what is due."""
    async with running(settings) as container:
        return await expiry_task(container).run_pass(sweep=True)


async def reconcile_index(settings: Settings, *, progress: bool = False) -> dict[str, int]:
    """Rebuild the index from the store, printing progress when asked."""
    last_shown = -1

    def show(done: int, total: int) -> None:
        nonlocal last_shown
        percent = 100 * done // max(1, total)
        if percent != last_shown:
            last_shown = percent
            print(f"\rreconciled {done}/{total} ({percent}%)", end="", file=sys.stderr, flush=True)

    async with running(settings) as container:
        report = await reconcile(
            container.engine, container.index, progress=show if progress else None
        )
    if progress:
        print(file=sys.stderr)
    return report.as_dict()


def outbox_relay(container: Container) -> OutboxRelay:
    return OutboxRelay(
        container.engine, create_sinks(container.settings), container.metrics, container.clock
    )


async def run_relay(settings: Settings) -> None:
    """Deliver outbox messages until SIGTERM or SIGINT."""
    async with running(settings) as container:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await outbox_relay(container).run(stop)


async def outbox_backlog(settings: Settings) -> OutboxStatus:
    async with running(settings) as container:
        return await outbox_status(container.engine, metrics=container.metrics)


def with_embedded_stripe(settings: Settings, api_url: str) -> Settings:
    """Without a Stripe key in development, serve a local Stripe stand-in too: its hosted page
    lets a buyer finish a test payment, reported back to `api_url` as a signed webhook."""
    if settings.stripe_api_key is not None or settings.env is Environment.PRODUCTION:
        return settings
    from payment_window.devstripe.hosted import HostedCheckoutApp
    from payment_window.devstripe.server import DEFAULT_PORT, ServerThread, bind
    from payment_window.devstripe.testing import TEST_API_KEY

    secret = (
        settings.stripe_webhook_secret.get_secret_value()
        if settings.stripe_webhook_secret
        else f"whsec_local_{secrets.token_hex(16)}"
    )
    host = "127.0.0.1"
    try:
        sock = bind(host, DEFAULT_PORT)
    except OSError:
        log.warning("local_stripe_port_taken", port=DEFAULT_PORT, detail="using the one there")
    else:
        stand_in = HostedCheckoutApp(f"{api_url}/payments/stripe/webhook", secret)
        ServerThread(stand_in, sock).start()
    url = f"http://{host}:{DEFAULT_PORT}"
    log.warning(
        "using_local_stripe",
        url=url,
        detail="PW_STRIPE_API_KEY is not set: checkout sessions live in a local Stripe "
        "stand-in and no money moves",
    )
    return settings.model_copy(
        update={
            "stripe_api_key": SecretStr(TEST_API_KEY),
            "stripe_api_base": url,
            "stripe_webhook_secret": SecretStr(secret),
            "public_base_url": api_url
            if settings.public_base_url == Settings.model_fields["public_base_url"].default
            else settings.public_base_url,
        }
    )


async def run_worker(settings: Settings) -> None:
    """Close windows as they fall due (and relay the outbox, if `PW_WORKER_LOOPS` asks) until
    SIGTERM or SIGINT."""
    loops = loops_for("worker", settings)
    async with running(settings) as container:
        task = expiry_task(container)
        relay_stop = asyncio.Event()

        def stop() -> None:
            task.stop()
            relay_stop.set()

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop)
        log.info(
            "worker_started",
            max_sleep_seconds=settings.worker_max_sleep_seconds,
            loops=sorted(loops),
        )
        worker = Worker(
            task,
            container.index,
            max_sleep_seconds=settings.worker_max_sleep_seconds,
            metrics=container.metrics,
            windows=container.windows,
        )
        running_loops = []
        if Loop.WORKER in loops:
            running_loops.append(worker.run())
        if Loop.RELAY in loops:
            running_loops.append(outbox_relay(container).run(relay_stop))
        await asyncio.gather(*running_loops)
        log.info("worker_stopped")
