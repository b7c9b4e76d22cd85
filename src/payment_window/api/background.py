"""`serve`'s in-process loops: the expiry worker and the outbox relay, where `loops_for` says.

Neither loop ends on a Redis or store error (each logs, backs off and goes on); should one end
anyway, it is started again after a pause, so an API process never silently stops closing
windows or delivering events while it still answers requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress

import structlog

from payment_window.backoff import loop_backoff
from payment_window.bootstrap import Container
from payment_window.loops import Loop, loops_for
from payment_window.retention import prune_hourly

log = structlog.get_logger(__name__)

STOP_GRACE_SECONDS = 10.0


async def _supervised(
    name: str, run: Callable[[], Awaitable[None]], stopping: asyncio.Event
) -> None:
    """Run `run` until `stopping` is set, starting it again if it ends before that."""
    failures = 0
    while not stopping.is_set():
        try:
            await run()
        except Exception:
            log.exception("background_loop_failed", loop=name)
        if stopping.is_set():
            return
        failures += 1
        delay = loop_backoff(failures)
        log.error("background_loop_restarting", loop=name, retry_in_seconds=round(delay, 2))
        with suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), delay)


@asynccontextmanager
async def background_loops(container: Container) -> AsyncIterator[frozenset[Loop]]:
    """Run the loops `serve` runs with these settings until the app shuts down."""
    loops = loops_for("serve", container.settings)
    async with AsyncExitStack() as stack:
        if Loop.WORKER in loops:
            await stack.enter_async_context(background_expiry(container))
        if Loop.RELAY in loops:
            await stack.enter_async_context(background_relay(container))
        log.info("serve_loops", loops=sorted(loops))
        yield loops


@asynccontextmanager
async def background_expiry(container: Container) -> AsyncIterator[None]:
    """Run the expiry loop until the app shuts down; a pass in flight may finish first."""
    task = container.expiry_task()
    expiry = container.expiry_loop(task)
    stopping = asyncio.Event()
    running = asyncio.create_task(
        _supervised("expiry_worker", expiry.run, stopping), name="payment-window-expiry-worker"
    )
    log.info("background_worker_started")
    try:
        yield
    finally:
        stopping.set()
        task.stop()
        with suppress(Exception):
            await container.index.wake()
        await _finish(running, "background_worker_cancelled")


@asynccontextmanager
async def background_relay(container: Container) -> AsyncIterator[None]:
    """Deliver outbox messages until the app shuts down."""
    stop = asyncio.Event()
    relay = container.outbox_relay()
    running = asyncio.create_task(
        _supervised("outbox_relay", lambda: relay.run(stop), stop), name="payment-window-relay"
    )
    # The relay also keeps the store's size bounded: a retention pass every hour.
    pruning = asyncio.create_task(prune_hourly(container, stop), name="payment-window-prune")
    try:
        yield
    finally:
        stop.set()
        await _finish(running, "background_relay_cancelled")
        await _finish(pruning, "background_prune_cancelled")


async def _finish(running: asyncio.Task[None], event: str) -> None:
    try:
        await asyncio.wait_for(running, STOP_GRACE_SECONDS)
    except TimeoutError:
        log.warning(event, grace_seconds=STOP_GRACE_SECONDS)
    with suppress(asyncio.CancelledError):
        await running
