"""Translations between the domain's values and the store's rows, shared by the adapters."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from payment_window.domain.errors import WindowUnreadable
from payment_window.domain.events import AuditEntry, OutboxMessage
from payment_window.domain.session import PaymentSession, Status, close_reason

_SESSION_FIELDS = [f.name for f in fields(PaymentSession)]
_AUDIT_FIELDS = [f.name for f in fields(AuditEntry)]
UNSETTLED = (Status.OPEN.value, Status.AWAITING_PAYMENT_CONFIRMATION.value)


def session_from_row(row: Row[Any]) -> PaymentSession:
    """The window a row holds; `WindowUnreadable` when this version cannot read it (a status
    a newer version wrote during a rolling deploy, say)."""
    values = row._mapping
    data = {name: values[name] for name in _SESSION_FIELDS}
    try:
        data["status"] = Status(data["status"])
        data["reason"] = close_reason(data["reason"])
    except ValueError as error:
        raise WindowUnreadable(str(data["id"]), str(error)) from None
    data["reminders_sent"] = tuple(data["reminders_sent"] or ())
    return PaymentSession(**data)


def readable_sessions(rows: Any) -> tuple[list[PaymentSession], list[WindowUnreadable]]:
    """The rows this version can read, and what was wrong with the others."""
    sessions: list[PaymentSession] = []
    unreadable: list[WindowUnreadable] = []
    for row in rows:
        try:
            sessions.append(session_from_row(row))
        except WindowUnreadable as problem:
            unreadable.append(problem)
    return sessions, unreadable


def session_values(session: PaymentSession) -> dict[str, Any]:
    # Shallow on purpose: `asdict` deep-copies every value, a measurable cost per closed window.
    values = {name: getattr(session, name) for name in _SESSION_FIELDS}
    values["status"] = session.status.value
    values["reminders_sent"] = list(session.reminders_sent)
    return values


def audit_values(entry: AuditEntry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in _AUDIT_FIELDS}


def outbox_values(message: OutboxMessage, session_id: str | None, now: datetime) -> dict[str, Any]:
    return {
        "id": message.id,
        "session_id": session_id,
        "destination": str(message.destination),
        "event_type": message.event_type,
        "payload": message.payload,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def insert_ignoring_duplicates(connection: AsyncConnection, table: Any) -> Any:
    """INSERT … ON CONFLICT DO NOTHING on either backend."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()
