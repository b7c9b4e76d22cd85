"""The operations view: every window, the figures that say whether expiry keeps up, audit trails.

Read-only, straight from the store (the truth; the Redis index is never asked), through
SQLAlchemy Core.

Listing pages with a keyset on `(expires_at, id)`, ascending; the cursor is the last row handed
out. A row whose key does not change while someone pages is therefore seen exactly once, however
many rows are added or removed around it. Rows whose deadline moves are the exception, and
only deadlines that move *later* exist (extensions): such a row not yet reached is seen once,
at its new deadline; one already handed out that moves past the cursor is handed out again, at
its new deadline and with a higher `version` (keep the higher one). New windows whose deadline
is behind the cursor, and rows that stop matching the filters (a window that closes while one
pages `status=open`), are not seen: the next listing from the start has them right.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from payment_window.adapters.store import session_from_row
from payment_window.adapters.tables import audit_log, payment_sessions
from payment_window.domain import access
from payment_window.domain.access import Actor
from payment_window.domain.errors import DomainError, OverrideNotAllowed, SessionNotFound
from payment_window.domain.ports import Clock
from payment_window.domain.session import PaymentSession, Status
from payment_window.outbox import undelivered_counts

MAX_PAGE = 200
DEFAULT_PAGE = 50
DUE_SOON = timedelta(hours=1)
RECENT = timedelta(hours=24)
AWAITING_TOO_LONG = timedelta(days=1)
DUPLICATES_SHOWN = timedelta(days=30)

_T = payment_sessions.c


class InvalidCursor(DomainError):
    """A cursor this service did not hand out, or handed out for another query."""

    code = "invalid_cursor"


@dataclass(frozen=True, slots=True)
class WindowFilter:
    """Which windows to list. Times bound the deadline: `due_after <= expires_at < due_before`.

    `overdue` means open with its deadline already passed; False means no such condition (not
    "only windows that are not overdue").
    """

    status: Status | None = None
    maker_id: str | None = None
    auction_id: str | None = None
    due_before: datetime | None = None
    due_after: datetime | None = None
    overdue: bool = False

    def fingerprint(self) -> str:
        """Ties a cursor to the filters it was made for (not to `now`, which moves)."""
        parts = [
            self.status.value if self.status else "",
            self.maker_id or "",
            self.auction_id or "",
            self.due_before.isoformat() if self.due_before else "",
            self.due_after.isoformat() if self.due_after else "",
            "overdue" if self.overdue else "",
        ]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class WindowPage:
    """One page of windows, the instant it was read, and where the next page starts."""

    sessions: list[PaymentSession]
    next_cursor: str | None
    now: datetime


@dataclass(frozen=True, slots=True)
class Summary:
    """The figures at the top of the operations view, at `now`."""

    now: datetime
    open_count: int
    due_within_hour: int
    overdue_count: int
    oldest_overdue_seconds: int | None
    failing_at_stripe: int
    awaiting_confirmation_over_day: int
    duplicate_payments: int
    undelivered_outbox: int
    expired_last_24h_by_reason: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One stored line of a session's history."""

    id: int
    action: str
    actor: str
    from_status: str | None
    to_status: str | None
    details: dict[str, Any]
    at: datetime


def encode_cursor(expires_at: datetime, session_id: str, query: WindowFilter) -> str:
    text = json.dumps([expires_at.astimezone(UTC).isoformat(), session_id, query.fingerprint()])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# The ids we hand out; a NUL or other control character would only fail in the store.
_CURSOR_ID = re.compile(r"[^\x00-\x1f\x7f]{1,128}")


def decode_cursor(cursor: str, query: WindowFilter) -> tuple[datetime, str]:
    """The `(expires_at, id)` a cursor stands for; InvalidCursor if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, session_id, fingerprint = json.loads(raw)
        parsed = datetime.fromisoformat(at)
        # In UTC at once: a time with no UTC form (year 10000 once shifted) is no cursor of ours.
        expires_at = parsed.astimezone(UTC) if parsed.tzinfo is not None else None
    except (binascii.Error, ValueError, TypeError, OverflowError, RecursionError):
        raise InvalidCursor("the cursor is not one this service handed out") from None
    if (
        expires_at is None
        or not isinstance(session_id, str)
        or not _CURSOR_ID.fullmatch(session_id)
    ):
        raise InvalidCursor("the cursor is not one this service handed out")
    if fingerprint != query.fingerprint():
        raise InvalidCursor("the cursor belongs to a listing with other filters")
    return expires_at, session_id


def _conditions(query: WindowFilter, now: datetime) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if query.status is not None:
        conditions.append(_T.status == query.status.value)
    if query.maker_id is not None:
        conditions.append(_T.maker_id == query.maker_id)
    if query.auction_id is not None:
        conditions.append(_T.auction_id == query.auction_id)
    if query.due_before is not None:
        conditions.append(_T.expires_at < query.due_before)
    if query.due_after is not None:
        conditions.append(_T.expires_at >= query.due_after)
    if query.overdue:
        conditions.extend([_T.status == Status.OPEN.value, _T.expires_at < now])
    return conditions


def _count(condition: ColumnElement[bool]) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


class Operations:
    """Read-only queries for operators: list windows, sum them up, read a session's trail."""

    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    async def windows(
        self,
        query: WindowFilter,
        viewer: Actor,
        *,
        limit: int = DEFAULT_PAGE,
        cursor: str | None = None,
    ) -> WindowPage:
        """A page of windows matching `query`, by deadline then id (see the module's notes)."""
        if not access.may_operate(viewer):
            raise OverrideNotAllowed("only admins may list payment windows")
        limit = max(1, min(MAX_PAGE, limit))
        now = self._clock.now()
        statement = select(payment_sessions).where(*_conditions(query, now))
        if cursor is not None:
            after_at, after_id = decode_cursor(cursor, query)
            statement = statement.where(tuple_(_T.expires_at, _T.id) > tuple_(after_at, after_id))
        statement = statement.order_by(_T.expires_at, _T.id).limit(limit + 1)
        async with self._engine.connect() as connection:
            rows = list(await connection.execute(statement))
        sessions = [session_from_row(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = sessions[-1]
            next_cursor = encode_cursor(last.expires_at, last.id, query)
        return WindowPage(sessions, next_cursor, now)

    async def summary(self, viewer: Actor) -> Summary:
        """How many windows are open, due soon, overdue, stuck at Stripe; what closed lately."""
        if not access.may_operate(viewer):
            raise OverrideNotAllowed("only admins may read the operations summary")
        now = self._clock.now()
        is_open = _T.status == Status.OPEN.value
        overdue = and_(is_open, _T.expires_at < now)
        figures = select(
            _count(is_open).label("open_count"),
            _count(and_(is_open, _T.expires_at >= now, _T.expires_at < now + DUE_SOON)).label(
                "due_within_hour"
            ),
            _count(overdue).label("overdue_count"),
            func.min(case((overdue, _T.expires_at), else_=None)).label("oldest_overdue"),
            _count(and_(is_open, _T.expiry_attempts > 0)).label("failing_at_stripe"),
            _count(
                and_(
                    _T.status == Status.AWAITING_PAYMENT_CONFIRMATION.value,
                    _T.updated_at < now - AWAITING_TOO_LONG,
                )
            ).label("awaiting_confirmation_over_day"),
        )
        duplicates = (
            select(func.count())
            .select_from(audit_log)
            .where(
                audit_log.c.action == "duplicate_payment_detected",
                audit_log.c.at >= now - DUPLICATES_SHOWN,
            )
        )
        reasons = (
            select(_T.reason, func.count())
            .where(_T.status == Status.EXPIRED.value, _T.expired_at >= now - RECENT)
            .group_by(_T.reason)
        )
        async with self._engine.connect() as connection:
            row = (await connection.execute(figures)).one()
            duplicate_payments = int(await connection.scalar(duplicates) or 0)
            by_reason = {
                str(reason or "unknown"): int(count)
                for reason, count in await connection.execute(reasons)
            }
        backlog = await undelivered_counts(self._engine)
        oldest: datetime | None = row.oldest_overdue
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)  # SQLite's MIN loses the column type
        return Summary(
            now=now,
            open_count=int(row.open_count),
            due_within_hour=int(row.due_within_hour),
            overdue_count=int(row.overdue_count),
            oldest_overdue_seconds=(
                int((now - oldest).total_seconds()) if oldest is not None else None
            ),
            failing_at_stripe=int(row.failing_at_stripe),
            awaiting_confirmation_over_day=int(row.awaiting_confirmation_over_day),
            duplicate_payments=duplicate_payments,
            undelivered_outbox=sum(backlog.values()),
            expired_last_24h_by_reason=dict(sorted(by_reason.items())),
        )

    async def audit_trail(self, session_id: str, viewer: Actor) -> list[AuditRecord]:
        """The session's history, oldest first: admins, and the session's maker.

        Buyers and services are refused by role (403) before anything is looked up; a maker
        asking about another maker's session learns nothing: it does not exist for them (404).
        """
        if not access.may_read_audit_of_some(viewer):
            raise OverrideNotAllowed(f"a {viewer.role.value} may not read audit trails")
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(select(payment_sessions).where(_T.id == session_id))
            ).first()
            if row is None or not access.may_read_audit(viewer, session_from_row(row)):
                raise SessionNotFound(session_id)
            result = await connection.execute(
                select(audit_log)
                .where(audit_log.c.session_id == session_id)
                .order_by(audit_log.c.id)
            )
            return [_audit_record(row._mapping) for row in result]


def _audit_record(values: Any) -> AuditRecord:
    return AuditRecord(
        id=int(values["id"]),
        action=values["action"],
        actor=values["actor"],
        from_status=values["from_status"],
        to_status=values["to_status"],
        details=dict(values["details"] or {}),
        at=values["at"],
    )


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `1h`, `2h30m`, `1d` (for the command line)."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    total, number = 0, ""
    for char in text.strip().lower():
        if char.isdigit():
            number += char
        elif char in units and number:
            total += int(number) * units[char]
            number = ""
        else:
            raise ValueError(f"not a duration: {text!r} (try 30m, 1h, 2h30m)")
    if number or total <= 0:
        raise ValueError(f"not a duration: {text!r} (try 30m, 1h, 2h30m)")
    return timedelta(seconds=total)
