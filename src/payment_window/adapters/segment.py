"""Segment: analytics events as `track` calls, one HTTP request per outbox message."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import requests
from segment.analytics import Client  # type: ignore[import-untyped]
from segment.analytics.request import APIError  # type: ignore[import-untyped]

from payment_window.domain.events import OutboxEnvelope
from payment_window.domain.ports import DeliveryFailed


@dataclass(frozen=True, slots=True)
class SegmentOptions:
    """Seconds the HTTP request may take; the outbox, not the library, retries failures."""

    timeout: float = 5.0


def create_segment_client(
    write_key: str, host: str | None, options: SegmentOptions = SegmentOptions()
) -> Client:
    """A synchronous client: `track` posts at once and raises on failure, so nothing is queued
    in memory where a crash would lose it. (Sync mode never retries; `max_retries` is moot.)"""
    return Client(write_key, host=host, sync_mode=True, max_retries=0, timeout=options.timeout)


class SegmentSink:
    """Tracks each message as an event of its buyer; the outbox id is Segment's `messageId`, so
    a redelivery is deduplicated by Segment."""

    def __init__(self, client: Client) -> None:
        self._client = client

    async def deliver(self, message: OutboxEnvelope) -> None:
        buyer = message.payload.get("buyerId")
        try:
            await asyncio.to_thread(
                self._client.track,
                user_id=str(buyer) if buyer else None,
                anonymous_id=None if buyer else (message.session_id or message.id),
                event=message.event_type,
                properties=dict(message.payload),
                timestamp=message.created_at,
                message_id=message.id,
            )
        except (APIError, requests.RequestException) as error:
            raise DeliveryFailed(f"Segment track: {error}") from error
