"""Each outgoing webhook endpoint's state (SQLAlchemy Core over `webhook_endpoints`).

Written by the relay after each attempt: last success, failures, and `disabled_at` when the
endpoint answered 410 Gone. Read by every relay before each pass (a disabled endpoint's messages
wait in the outbox) and by `relay --status` and the operations view.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from payment_window.adapters.outbox_store import parked_counts, undelivered_counts
from payment_window.adapters.tables import webhook_endpoints
from payment_window.domain.outgoing_webhooks import endpoint_destination
from payment_window.domain.views import EndpointStatus

MAX_ERROR_LENGTH = 500


class SqlWebhookEndpoints:
    """The endpoints' state; one row per endpoint, made when a relay first serves it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def ensure(self, destination: str, url: str) -> None:
        async with self._engine.begin() as connection:
            dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
            await connection.execute(
                dialect.insert(webhook_endpoints)
                .values(destination=destination, url=url, consecutive_failures=0, failures=0)
                .on_conflict_do_nothing()
            )

    async def is_active(self, destination: str) -> bool:
        async with self._engine.connect() as connection:
            disabled = await connection.scalar(
                select(webhook_endpoints.c.disabled_at).where(
                    webhook_endpoints.c.destination == destination
                )
            )
        return disabled is None

    async def record_success(self, destination: str, at: datetime) -> None:
        await self._update(destination, last_success_at=at, consecutive_failures=0)

    async def record_failure(self, destination: str, error: str, at: datetime) -> None:
        await self._update(
            destination,
            last_failure_at=at,
            last_error=error[:MAX_ERROR_LENGTH],
            consecutive_failures=webhook_endpoints.c.consecutive_failures + 1,
            failures=webhook_endpoints.c.failures + 1,
        )

    async def disable(self, destination: str, reason: str, at: datetime) -> None:
        await self._update(destination, disabled_at=at, disabled_reason=reason[:MAX_ERROR_LENGTH])

    async def enable(self, destination: str) -> bool:
        """Deliver to a disabled endpoint again; False when it was not disabled."""
        async with self._engine.begin() as connection:
            result = await connection.execute(
                update(webhook_endpoints)
                .where(webhook_endpoints.c.destination == destination)
                .where(webhook_endpoints.c.disabled_at.is_not(None))
                .values(disabled_at=None, disabled_reason=None, consecutive_failures=0)
            )
            return bool(result.rowcount)

    async def statuses(self, urls: Sequence[str]) -> list[EndpointStatus]:
        """The configured endpoints' state and backlog, in the order they are configured."""
        async with self._engine.connect() as connection:
            backlog = await undelivered_counts(connection)
            parked = await parked_counts(connection)
            rows = {
                row.destination: row for row in await connection.execute(select(webhook_endpoints))
            }
        found: list[EndpointStatus] = []
        for url in urls:
            destination = endpoint_destination(url)
            row = rows.get(destination)
            waiting, set_aside = backlog.get(destination, 0), parked.get(destination, 0)
            if row is None:
                found.append(EndpointStatus(url, destination, backlog=waiting, parked=set_aside))
                continue
            found.append(
                EndpointStatus(
                    url=url,
                    destination=destination,
                    last_success_at=row.last_success_at,
                    last_failure_at=row.last_failure_at,
                    last_error=row.last_error,
                    consecutive_failures=row.consecutive_failures,
                    failures=row.failures,
                    disabled_at=row.disabled_at,
                    disabled_reason=row.disabled_reason,
                    backlog=waiting,
                    parked=set_aside,
                )
            )
        return found

    async def _update(self, destination: str, **values: object) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(
                update(webhook_endpoints)
                .where(webhook_endpoints.c.destination == destination)
                .values(**values)
            )
