"""What a state change leaves behind: its audit entry and the messages it must send."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Destination(StrEnum):
    """Where an outbox message goes; the relay has one sink per destination."""

    MAKER = "maker"
    BUYER = "buyer"
    AUCTION = "auction"
    ANALYTICS = "analytics"
    OPERATIONS = "operations"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of a session's append-only history."""

    session_id: str
    action: str
    actor: str
    from_status: str | None
    to_status: str | None
    details: dict[str, Any]
    at: datetime


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A message committed with the change that caused it; its id lets consumers deduplicate.

    `destination` is a `Destination`, or one webhook endpoint's `webhook:…` (outgoing_webhooks).
    """

    destination: Destination | str
    event_type: str
    payload: dict[str, Any]
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass(frozen=True, slots=True)
class OutboxEnvelope:
    """One stored outbox message on its way out: what a sink needs to deliver it."""

    id: str
    destination: Destination | str
    event_type: str
    payload: dict[str, Any]
    session_id: str | None
    created_at: datetime
    attempts: int = 0
