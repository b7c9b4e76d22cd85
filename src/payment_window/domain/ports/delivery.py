"""What leaves the service after a commit: live changes for viewers, outbox messages for
their sinks, and the outgoing webhook endpoints' state."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from payment_window.domain.events import OutboxEnvelope
from payment_window.domain.views import EndpointStatus, FailingMessage


@dataclass(frozen=True, slots=True)
class WindowChange:
    """A committed change, for live viewers (server-sent events)."""

    session_id: str
    event: str  # extended | terminated | expired | paid | awaiting_confirmation | rotated
    data: dict[str, Any]


class ChangeFeed(Protocol):
    async def publish(self, change: WindowChange) -> None: ...


class ChangeSubscription(Protocol):
    async def get(self) -> WindowChange:
        """The next change to the subscribed window, waiting for one."""
        ...


class ChangeSubscriptions(Protocol):
    def subscribe(self, session_id: str) -> AbstractAsyncContextManager[ChangeSubscription]:
        """Hear the window's changes, published in any process, while the context is open."""
        ...


class LiveChanges(ChangeFeed, ChangeSubscriptions, Protocol):
    """Publishing and subscribing: what server-sent events need."""

    async def close(self) -> None: ...


class Sink(Protocol):
    """Delivers one message to one destination; raises on failure (the relay retries)."""

    async def deliver(self, message: OutboxEnvelope) -> None: ...


class DeliveryFailed(Exception):
    """A sink could not deliver (the vendor refused or was unreachable); worth a retry."""


class OutboxStore(Protocol):
    """The committed outbox messages, as the relay sees them; many relays may share one store."""

    async def claim(
        self, destinations: Collection[str], now: datetime, lease: timedelta, limit: int
    ) -> list[OutboxEnvelope]:
        """Take up to `limit` due, unparked messages for these destinations until
        `now + lease`."""
        ...

    async def mark_delivered(self, message_id: str, at: datetime) -> None: ...

    async def mark_failed(self, message_id: str, error: str, retry_at: datetime) -> None:
        """Count a failed attempt and make the message due again at `retry_at`, unless some
        relay has delivered it meanwhile."""
        ...

    async def park(self, message_id: str, error: str, at: datetime) -> None:
        """Count a last failed attempt and set the message aside until it is redelivered."""
        ...

    async def redeliver(self, message_id: str, now: datetime) -> bool:
        """Make an undelivered message (parked or not) due at `now`; False if there is none."""
        ...

    async def undelivered_counts(self) -> dict[str, int]:
        """Undelivered, uncancelled messages per destination (every destination, zeros too)."""
        ...

    async def failing(self, limit: int) -> list[FailingMessage]:
        """Undelivered messages that failed at least once, most attempts first."""
        ...


class WebhookEndpointsView(Protocol):
    """Outgoing webhook endpoints' state, as operators see it."""

    async def statuses(self, urls: Sequence[str]) -> list[EndpointStatus]:
        """The endpoints at `urls`, in that order, with their backlog."""
        ...
