"""Outgoing webhooks (Standard Webhooks): which messages go to which endpoint, and in what body.

Every configured endpoint is an outbox destination of its own (`webhook:<hash of its URL>`), so
one failing endpoint never holds another one or SNS and Segment. A change's notices (maker,
buyer, auction and operations messages; analytics is Segment's own shape) are copied once per
endpoint when they are recorded: a message SNS sends to both the maker and the buyer topic
reaches an endpoint once. Pure rules, no I/O.
"""

from __future__ import annotations

import hashlib
import ipaddress
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from payment_window.domain.events import Destination, OutboxEnvelope, OutboxMessage
from payment_window.domain.times import iso

PREFIX = "webhook:"
# A failing message is retried with backoff for this long, then parked (and alerted).
PARK_AFTER = timedelta(days=3)
# Every message of docs/events.md a webhook may carry (PW_WEBHOOK_EVENTS picks among them).
EVENT_TYPES = frozenset(
    {
        "payment_window.expired",
        "payment_window.terminated",
        "payment_window.extended",
        "payment_window.paid",
        "payment_window.reminder",
        "auction.relist_requested",
        "auction.maker_review_requested",
        "auction.second_chance_requested",
        "auction.payment_received",
        "operations.late_payment_after_expiry",
        "operations.checkout_missing",
        "payment.duplicate_detected",
    }
)
NOTICES = frozenset(
    {Destination.MAKER, Destination.BUYER, Destination.AUCTION, Destination.OPERATIONS}
)
LOOPBACK_NAMES = frozenset({"localhost"})


def endpoint_destination(url: str) -> str:
    """The outbox destination of the endpoint at `url`: stable while its URL stays the same."""
    return PREFIX + hashlib.sha256(url.encode()).hexdigest()[:12]


def is_webhook(destination: str) -> bool:
    return destination.startswith(PREFIX)


def parse_events(text: str | None) -> frozenset[str] | None:
    """`PW_WEBHOOK_EVENTS`: unset, empty or `all` → every type (None); else the named types.
    Unknown names are an error, not ignored: a typo would silently send nothing."""
    if text is None or text.strip() in ("", "all"):
        return None
    wanted = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = wanted - EVENT_TYPES
    if unknown:
        known = ", ".join(sorted(EVENT_TYPES))
        raise ValueError(f"unknown webhook event types {sorted(unknown)}; known: {known}")
    return wanted


def endpoint_problem(url: str, *, development: bool) -> str | None:
    """Why `url` may not be a webhook endpoint, or None. HTTPS only; plain HTTP only to a
    loopback address in development (a receiver on this machine while building one)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname:
        if not _is_loopback(parts.hostname):
            return f"{url}: webhook endpoints must be https:// (http:// only to a loopback address)"
        if not development:
            return (
                f"{url}: http:// webhook endpoints are for development; use https:// in production"
            )
        return None
    return f"{url}: not an https:// URL"


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class WebhookCopies:
    """What the store records beside each change's messages: their copies for the endpoints."""

    destinations: tuple[str, ...]
    events: frozenset[str] | None = None

    def __call__(self, messages: Sequence[OutboxMessage]) -> list[OutboxMessage]:
        return fan_out(messages, self.destinations, self.events)


def fan_out(
    messages: Sequence[OutboxMessage],
    destinations: Collection[str],
    events: frozenset[str] | None,
) -> list[OutboxMessage]:
    """One copy of each distinct notice among `messages` per endpoint destination; each copy has
    its own id (its `webhook-id`), fixed from here on, so a retry carries the same id."""
    if not destinations:
        return []
    distinct: list[OutboxMessage] = []
    for message in messages:
        if message.destination not in NOTICES:
            continue
        if events is not None and message.event_type not in events:
            continue
        if any(
            seen.event_type == message.event_type and seen.payload == message.payload
            for seen in distinct
        ):
            continue
        distinct.append(message)
    return [
        OutboxMessage(destination, message.event_type, message.payload, id=str(uuid.uuid4()))
        for message in distinct
        for destination in destinations
    ]


def webhook_body(message: OutboxEnvelope) -> dict[str, Any]:
    """The Standard Webhooks payload: `{type, timestamp, data}`; `timestamp` is when the change
    happened (the header `webhook-timestamp` is when this attempt was signed)."""
    return {
        "type": message.event_type,
        "timestamp": iso(message.created_at),
        "data": message.payload,
    }


def parked(created_at: datetime, now: datetime, park_after: timedelta = PARK_AFTER) -> bool:
    """Has a message that keeps failing been retried long enough to be set aside?"""
    return now - created_at >= park_after
