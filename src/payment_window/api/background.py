"""`serve --background`: the expiry worker inside the API process (the embedded default)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import structlog

from payment_window.bootstrap import Container
from payment_window.expiry import Worker
from payment_window.runner import expiry_task

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
        windows=container.windows,
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
