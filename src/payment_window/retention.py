"""Retention: `payment-window prune` (one pass) and the relay's hourly pass.

Delivered or cancelled outbox rows go after `PW_OUTBOX_RETENTION_HOURS` (168: a week to look
into what was sent), ids of processed Stripe events after `PW_WEBHOOK_EVENT_RETENTION_DAYS`
(30: Stripe retries an event for 3 days), Idempotency-Keys after their 24 hours. The audit log,
the sessions and the policy audit are kept: they are the record.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict, dataclass
from datetime import timedelta

import structlog

from payment_window.bootstrap import Container

log = structlog.get_logger(__name__)

EVERY_SECONDS = 3600.0
# An Idempotency-Key answers for 24 hours (DESIGN; api/idempotency.py KEPT_FOR).
IDEMPOTENCY_KEPT_FOR = timedelta(hours=24)


@dataclass
class PruneReport:
    outbox: int = 0
    stripe_events: int = 0
    idempotency_keys: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


async def prune(container: Container) -> PruneReport:
    """One retention pass over the store."""
    settings = container.settings
    now = container.clock.now()
    retention = container.retention
    report = PruneReport(
        outbox=await retention.delete_finished_outbox(
            now - timedelta(hours=settings.outbox_retention_hours)
        ),
        stripe_events=await retention.delete_stripe_events(
            now - timedelta(days=settings.webhook_event_retention_days)
        ),
        idempotency_keys=await retention.delete_idempotency_keys(now - IDEMPOTENCY_KEPT_FOR),
    )
    for table, count in report.as_dict().items():
        container.metrics.increment("payments.store.pruned", count, tags=[f"table:{table}"])
    log.info("store_pruned", **report.as_dict())
    return report


async def prune_hourly(container: Container, stop: asyncio.Event) -> None:
    """A pass now and every hour until `stop`; a failed pass is logged and tried next hour."""
    while not stop.is_set():
        try:
            await prune(container)
        except Exception as error:
            log.warning("store_prune_failed", error=repr(error))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), EVERY_SECONDS)
