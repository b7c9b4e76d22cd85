"""The operations read model: SQLAlchemy Core queries straight from the store (the truth)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, case, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from payment_window.adapters.outbox_store import undelivered_counts
from payment_window.adapters.rows import UNSETTLED, session_from_row
from payment_window.adapters.tables import audit_log, payment_sessions
from payment_window.domain.buyers import (
    UNKNOWN_REASON,
    BuyerRecord,
    OutcomeCount,
    Period,
    RepeatNonPayer,
    UnpaidWindow,
)
from payment_window.domain.session import PaymentSession, Status
from payment_window.domain.views import (
    AWAITING_TOO_LONG,
    DUE_SOON,
    DUPLICATES_SHOWN,
    RECENT,
    AuditRecord,
    Summary,
    WindowFilter,
)

_T = payment_sessions.c


def _conditions(query: WindowFilter, now: datetime) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if query.status is not None:
        conditions.append(_T.status == query.status.value)
    if query.maker_id is not None:
        conditions.append(_T.maker_id == query.maker_id)
    if query.buyer_id is not None:
        conditions.append(_T.buyer_id == query.buyer_id)
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


def buyer_record_statements(buyer_id: str, since: datetime) -> tuple[Select[Any], Select[Any]]:
    """The buyer's windows opened since `since`, counted by (status, reason); and the last one
    closed unpaid. Both walk the buyer's slice of ix_payment_sessions_buyer_id_created_at: a
    few hundred rows for a busy buyer, whatever the store's size. (Public for the benchmark,
    which prints their plans.)"""
    in_period = and_(_T.buyer_id == buyer_id, _T.created_at >= since)
    outcomes = (
        select(_T.status, _T.reason, func.count().label("windows"))
        .where(in_period)
        .group_by(_T.status, _T.reason)
    )
    last_unpaid = (
        select(_T.id, _T.auction_id, _T.expired_at, _T.updated_at, _T.reason)
        .where(in_period, _T.status == Status.EXPIRED.value)
        .order_by(_T.expired_at.desc().nulls_last(), _T.id.desc())
        .limit(1)
    )
    return outcomes, last_unpaid


def repeat_non_payers_statement(since: datetime, limit: int) -> Select[Any]:
    """The `limit` buyers with the most windows opened since `since` and closed unpaid.

    The ranking reads only the partial index of closed-unpaid rows (created_at, buyer_id): an
    index-only range scan of the period, never the paid or open rows. Only the few buyers
    ranked then have their windows counted, each through the buyer index."""
    unpaid = func.count().label("unpaid")
    ranked = (
        select(_T.buyer_id, unpaid)
        .where(_T.status == Status.EXPIRED.value, _T.created_at >= since)
        .group_by(_T.buyer_id)
        .order_by(unpaid.desc(), _T.buyer_id)
        .limit(limit)
        .cte("ranked")
    )
    opened = (
        select(func.count())
        .select_from(payment_sessions)
        .where(_T.buyer_id == ranked.c.buyer_id, _T.created_at >= since)
        .scalar_subquery()
    )
    return select(ranked.c.buyer_id, ranked.c.unpaid, opened.label("opened")).order_by(
        ranked.c.unpaid.desc(), ranked.c.buyer_id
    )


class SqlReadModel:
    """Read-only queries; each opens its own short connection."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def windows(
        self, query: WindowFilter, now: datetime, after: tuple[datetime, str] | None, limit: int
    ) -> list[PaymentSession]:
        statement = select(payment_sessions).where(*_conditions(query, now))
        if after is not None:
            statement = statement.where(tuple_(_T.expires_at, _T.id) > tuple_(*after))
        statement = statement.order_by(_T.expires_at, _T.id).limit(limit)
        async with self._engine.connect() as connection:
            return [session_from_row(row) for row in await connection.execute(statement)]

    async def summary(self, now: datetime) -> Summary:
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
        ).where(
            # Every figure is about open or awaiting windows: read those through the status
            # index, not the closed ones that make up nearly all of a store that has run a while.
            _T.status.in_(UNSETTLED)
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
            backlog = await undelivered_counts(connection)
        oldest: datetime | None = row.oldest_overdue
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)  # SQLite's MIN loses the column type
        return Summary(
            server_time=now,
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

    async def buyer_record(self, buyer_id: str, period: Period) -> BuyerRecord:
        outcomes, last_unpaid = buyer_record_statements(buyer_id, period.since)
        async with self._engine.connect() as connection:
            counts = [
                OutcomeCount(Status(row.status), row.reason, int(row.windows))
                for row in await connection.execute(outcomes)
            ]
            last = (await connection.execute(last_unpaid)).first()
        return BuyerRecord.of(
            buyer_id,
            period,
            counts,
            None
            if last is None
            else UnpaidWindow(
                session_id=last.id,
                auction_id=last.auction_id,
                closed_at=last.expired_at or last.updated_at,
                reason=last.reason or UNKNOWN_REASON,
            ),
        )

    async def repeat_non_payers(self, period: Period, limit: int) -> list[RepeatNonPayer]:
        statement = repeat_non_payers_statement(period.since, limit)
        async with self._engine.connect() as connection:
            return [
                RepeatNonPayer(row.buyer_id, unpaid=int(row.unpaid), opened=int(row.opened))
                for row in await connection.execute(statement)
            ]

    async def session(self, session_id: str) -> PaymentSession | None:
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(select(payment_sessions).where(_T.id == session_id))
            ).first()
        return None if row is None else session_from_row(row)

    async def audit_trail(self, session_id: str) -> list[AuditRecord]:
        async with self._engine.connect() as connection:
            result = await connection.execute(
                select(audit_log)
                .where(audit_log.c.session_id == session_id)
                .order_by(audit_log.c.id)
            )
            return [
                AuditRecord(
                    id=int(row.id),
                    action=row.action,
                    actor=row.actor,
                    from_status=row.from_status,
                    to_status=row.to_status,
                    details=dict(row.details or {}),
                    at=row.at,
                )
                for row in result
            ]

    async def unsettled_count(self) -> int:
        async with self._engine.connect() as connection:
            count = await connection.scalar(
                select(func.count()).select_from(payment_sessions).where(_T.status.in_(UNSETTLED))
            )
        return int(count or 0)

    async def unsettled_after(self, last_id: str, limit: int) -> list[PaymentSession]:
        async with self._engine.connect() as connection:
            rows = await connection.execute(
                select(payment_sessions)
                .where(_T.status.in_(UNSETTLED), _T.id > last_id)
                .order_by(_T.id)
                .limit(limit)
            )
            return [session_from_row(row) for row in rows]

    async def sessions(self, session_ids: Sequence[str]) -> list[PaymentSession]:
        async with self._engine.connect() as connection:
            rows = await connection.execute(
                select(payment_sessions).where(_T.id.in_(list(session_ids)))
            )
            return [session_from_row(row) for row in rows]
