"""`serve`: the expiry worker and the outbox relay inside the API process (embedded default)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import structlog

from payment_window.bootstrap import Container
from payment_window.expiry import Worker
from payment_window.runner import expiry_task, outbox_relay

log = structlog.get_logger(__name__)

STOP_GRACE_SECONDS = 10.0


@asynccontextmanager
async def background_worker(container: Container) -> AsyncIterator[None]:
    """Run the expiry worker until the app shuts down; a pass in flight may finish first."""
    task = expiry_task(container)
    worker = Worker(
        task,
        container.index,
        max_sleep_seconds=container.settings.worker_max_sleep_seconds,
        metrics=container.metrics,
        windows=task,
    )
    running = asyncio.create_task(worker.run(), name="payment-window-expiry-worker")
    log.info("background_worker_started")
    try:
        yield
    finally:
        task.stop()
        await container.index.wake()
        try:
            await asyncio.wait_for(running, STOP_GRACE_SECONDS)
        except TimeoutError:
            log.warning("background_worker_cancelled", grace_seconds=STOP_GRACE_SECONDS)
        with suppress(asyncio.CancelledError):
            await running


@asynccontextmanager
async def background_relay(container: Container) -> AsyncIterator[None]:
    """Deliver outbox messages until the app shuts down."""
    stop = asyncio.Event()
    running = asyncio.create_task(outbox_relay(container).run(stop), name="payment-window-relay")
    try:
        yield
    finally:
        stop.set()
        try:
            await asyncio.wait_for(running, STOP_GRACE_SECONDS)
        except TimeoutError:
            log.warning("background_relay_cancelled", grace_seconds=STOP_GRACE_SECONDS)
        with suppress(asyncio.CancelledError):
            await running
