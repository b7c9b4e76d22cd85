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

from payment_window.adapters.webhook import signers
from payment_window.bootstrap import Container, bootstrap
from payment_window.config import Environment, Settings
from payment_window.domain.outgoing_webhooks import endpoint_problem, parse_events
from payment_window.loops import Loop, loops_for
from payment_window.outbox import OutboxStatus
from payment_window.outbox import status as outbox_status
from payment_window.pass_report import PassReport
from payment_window.reconcile import reconcile
from payment_window.retention import prune, prune_hourly

log = structlog.get_logger(__name__)


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Container]:
    container = await bootstrap(settings)
    try:
        await container.sync_clock()  # the one clock that stamps, before the first change
        yield container
    finally:
        await container.close()


async def expire_due_once(settings: Settings) -> PassReport:
    """One pass, as the EventBridge schedule runs it: sweep the store, then close what is due."""
    async with running(settings) as container:
        return await container.expiry_task().run_pass(sweep=True)


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
            container.read_model, container.index, progress=show if progress else None
        )
    if progress:
        print(file=sys.stderr)
    return report.as_dict()


async def run_relay(settings: Settings) -> None:
    """Deliver outbox messages until SIGTERM or SIGINT."""
    async with running(settings) as container:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        # The relay also keeps the store's size bounded: a retention pass every hour.
        pruning = asyncio.create_task(prune_hourly(container, stop), name="payment-window-prune")
        try:
            await container.outbox_relay().run(stop)
        finally:
            stop.set()
            await pruning


async def prune_store(settings: Settings) -> dict[str, int]:
    """One retention pass (`payment-window prune`)."""
    async with running(settings) as container:
        return (await prune(container)).as_dict()


async def outbox_backlog(settings: Settings) -> OutboxStatus:
    async with running(settings) as container:
        endpoints = await container.webhook_endpoints.statuses(settings.webhook_endpoints)
        return await outbox_status(container.outbox, metrics=container.metrics, endpoints=endpoints)


async def redeliver(settings: Settings, message_id: str) -> bool:
    """Make an undelivered (parked) outbox message due now; False when there is none."""
    async with running(settings) as container:
        return await container.outbox.redeliver(message_id, container.clock.now())


async def enable_endpoint(settings: Settings, url: str) -> bool:
    """Deliver again to an endpoint a 410 disabled; False when it was not disabled."""
    from payment_window.domain.outgoing_webhooks import endpoint_destination

    async with running(settings) as container:
        return await container.webhook_endpoints.enable(endpoint_destination(url))


class StartupRefused(Exception):
    """The process must not start as configured; the message says what to change."""


NO_STRIPE_MESSAGE = (
    "PW_STRIPE_API_KEY is not set: set it to a Stripe secret key, or, for development, pass "
    "--local-stripe to `payment-window serve` to start the local Stripe stand-in"
)
NO_STAND_IN_MESSAGE = (
    "the local Stripe stand-in is a development package: install it with `make install-run` "
    "(uv.lock's devstripe group)"
)


NO_TOKEN_KEY_MESSAGE = (
    "PW_JWT_SECRET (or PW_JWT_JWKS_URL) is not set: in production tokens are verified only "
    "with a configured key, never with a generated development secret"
)


def require_stripe(settings: Settings) -> None:
    """No fake Stripe unless asked for: without a key, a process that calls Stripe stops."""
    if settings.stripe_api_key is None:
        raise StartupRefused(NO_STRIPE_MESSAGE)


def require_webhooks(settings: Settings) -> None:
    """Webhook settings every process must agree on: each endpoint an https:// URL (http:// to
    loopback in development), known event types, and a whsec_ secret to sign with."""
    development = settings.env is Environment.DEVELOPMENT
    for url in settings.webhook_endpoints:
        problem = endpoint_problem(url, development=development)
        if problem:
            raise StartupRefused(f"PW_WEBHOOK_ENDPOINTS: {problem}")
    try:
        parse_events(settings.webhook_events)
    except ValueError as error:
        raise StartupRefused(f"PW_WEBHOOK_EVENTS: {error}") from None
    for secret in settings.webhook_secrets:
        if not secret.startswith("whsec_"):
            raise StartupRefused("PW_WEBHOOK_SECRET: each secret is whsec_ and base64")
        try:
            signers([secret])
        except Exception:
            raise StartupRefused("PW_WEBHOOK_SECRET: each secret is whsec_ and base64") from None


def require_for(process: str, settings: Settings) -> None:
    """What `payment-window <process>` must be given before it starts, by what it does, so
    each process is given only that (infrastructure/terraform/payments.tf): serving opens
    checkouts and verifies tokens; the expiry worker and pass close checkouts at Stripe; the
    relay, `reconcile` and `migrate` use neither Stripe nor tokens."""
    closes_checkouts = process == "expire-due" or (
        process == "worker" and Loop.WORKER in loops_for("worker", settings)
    )
    require_webhooks(settings)
    if process == "relay" and settings.webhook_endpoints and not settings.webhook_secrets:
        raise StartupRefused(
            "PW_WEBHOOK_ENDPOINTS is set but PW_WEBHOOK_SECRET is not: the relay signs every "
            "webhook (a whsec_ secret; several comma-separated during a roll)"
        )
    if process == "serve" or closes_checkouts:
        require_stripe(settings)
    token_key = settings.jwt_secret or settings.jwt_jwks_url
    if process == "serve" and settings.env is Environment.PRODUCTION and not token_key:
        raise StartupRefused(NO_TOKEN_KEY_MESSAGE)


def with_local_stripe(settings: Settings, api_url: str) -> Settings:
    """Start the local Stripe stand-in in this process, on a port it binds itself (never one
    another process may hold), and point the settings at it. Its hosted page lets a buyer
    finish a test payment, reported back to `api_url` as a signed webhook."""
    if settings.env is Environment.PRODUCTION:
        raise StartupRefused("--local-stripe is for development; PW_ENV is production")
    try:
        from devstripe.hosted import HostedCheckoutApp
        from devstripe.server import ServerThread, bind
        from devstripe.testing import TEST_API_KEY
    except ImportError as missing:
        raise StartupRefused(NO_STAND_IN_MESSAGE) from missing

    secret = (
        settings.stripe_webhook_secret.get_secret_value()
        if settings.stripe_webhook_secret
        else f"whsec_local_{secrets.token_hex(16)}"
    )
    host = "127.0.0.1"
    sock = bind(host, 0)
    url = f"http://{host}:{sock.getsockname()[1]}"
    stand_in = HostedCheckoutApp(f"{api_url}/payments/stripe/webhook", secret)
    # A daemon thread: it ends with the process, which is all a development server needs.
    ServerThread(stand_in, sock).start()
    log.warning(
        "using_local_stripe",
        url=url,
        detail="--local-stripe: checkout sessions live in a local Stripe stand-in and no "
        "money moves",
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


async def run_worker_process(settings: Settings) -> None:
    """Close windows as they fall due (and relay the outbox, if `PW_WORKER_LOOPS` asks) until
    SIGTERM or SIGINT."""
    loops = loops_for("worker", settings)
    async with running(settings) as container:
        task = container.expiry_task()
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
        expiry = container.expiry_loop(task)
        running_loops = []
        if Loop.WORKER in loops:
            running_loops.append(expiry.run())
        if Loop.RELAY in loops:
            running_loops.append(container.outbox_relay().run(relay_stop))
        await asyncio.gather(*running_loops)
        log.info("worker_stopped")
