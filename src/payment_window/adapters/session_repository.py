"""The windows in the store: `SessionRepository` over the `payment_sessions` table and the
history of each window's Checkout Sessions, inside the unit of work's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, bindparam, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from payment_window.adapters.rows import (
    UNSETTLED,
    insert_ignoring_duplicates,
    readable_sessions,
    session_from_row,
    session_values,
)
from payment_window.adapters.tables import UNSETTLED_SQL, checkout_sessions, payment_sessions
from payment_window.domain.errors import VersionConflict, WindowAlreadyOpen
from payment_window.domain.ports import UnreadableWindow
from payment_window.domain.session import PaymentSession, Status


def _due_at(session: PaymentSession) -> datetime | None:
    return session.due_at if session.is_scheduled else None


class SqlSessionRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def _remember_checkouts(self, sessions: Sequence[PaymentSession]) -> None:
        """Record the windows' Checkout Sessions in their history, in this transaction.

        Only an open window can be given a new Checkout Session (opening, rotation), so closed
        ones are skipped; a session already on record is left as it is.
        """
        rows = [
            {
                "checkout_session_id": session.checkout_session_id,
                "session_id": session.id,
                "created_at": session.updated_at,
                "stripe_account": session.stripe_account,
            }
            for session in sessions
            if session.is_open and session.checkout_session_id
        ]
        if rows:
            await self._connection.execute(
                insert_ignoring_duplicates(self._connection, checkout_sessions), rows
            )

    async def get(self, session_id: str, *, for_update: bool = False) -> PaymentSession | None:
        query = select(payment_sessions).where(payment_sessions.c.id == session_id)
        if for_update:
            if self._connection.dialect.name == "sqlite":
                await self._take_sqlite_write_lock()
            else:
                query = query.with_for_update()
        row = (await self._connection.execute(query)).first()
        return session_from_row(row) if row else None

    async def lock_many(self, session_ids: Sequence[str]) -> list[PaymentSession]:
        """Lock the given sessions for this transaction, skipping rows another one holds."""
        if not session_ids:
            return []
        query = select(payment_sessions).where(payment_sessions.c.id.in_(session_ids))
        if self._connection.dialect.name == "sqlite":
            await self._take_sqlite_write_lock()
        else:
            query = query.with_for_update(skip_locked=True)
        # A row this version cannot read is left out (and set aside by the caller), so it
        # never holds the others of the batch.
        sessions, _ = readable_sessions(await self._connection.execute(query))
        return sessions

    async def existing_ids(self, session_ids: Sequence[str]) -> set[str]:
        if not session_ids:
            return set()
        result = await self._connection.execute(
            select(payment_sessions.c.id).where(payment_sessions.c.id.in_(session_ids))
        )
        return {row.id for row in result}

    async def get_many(self, session_ids: Sequence[str]) -> list[PaymentSession]:
        if not session_ids:
            return []
        result = await self._connection.execute(
            select(payment_sessions).where(payment_sessions.c.id.in_(session_ids))
        )
        sessions, _ = readable_sessions(result)
        return sessions

    async def unreadable(self, session_ids: Sequence[str]) -> list[UnreadableWindow]:
        if not session_ids:
            return []
        rows = list(
            await self._connection.execute(
                select(payment_sessions).where(payment_sessions.c.id.in_(session_ids))
            )
        )
        _, problems = readable_sessions(rows)
        by_id = {row.id: row for row in rows}
        return [
            UnreadableWindow(
                session_id=problem.session_id,
                auction_id=by_id[problem.session_id].auction_id,
                maker_id=by_id[problem.session_id].maker_id,
                buyer_id=by_id[problem.session_id].buyer_id,
                status=str(by_id[problem.session_id].status),
                problem=problem.problem,
            )
            for problem in problems
        ]

    async def _take_sqlite_write_lock(self) -> None:
        # SQLite has no row locks: a no-op write takes the database's write lock instead.
        await self._connection.execute(
            update(payment_sessions)
            .where(payment_sessions.c.id == "")
            .values(version=payment_sessions.c.version)
        )

    async def record_reminders(self, sessions: Sequence[PaymentSession]) -> None:
        """Bookkeeping under the batch's locks: reminders sent and the next one's time."""
        if not sessions:
            return
        await self._connection.execute(
            update(payment_sessions)
            .where(payment_sessions.c.id == bindparam("b_id"))
            .values(
                reminders_sent=bindparam("b_sent"),
                next_reminder_at=bindparam("b_next"),
                due_at=bindparam("b_due"),
            ),
            [
                {
                    "b_id": session.id,
                    "b_sent": list(session.reminders_sent),
                    "b_next": session.next_reminder_at,
                    "b_due": _due_at(session),
                }
                for session in sessions
            ],
        )

    async def record_expiry_failure(self, session_id: str, error: str) -> int:
        """0 when the window has nothing left to do at Stripe (settled with no other Checkout
        Session to expire, or gone): a closed window has no failure."""
        result = await self._connection.execute(
            update(payment_sessions)
            .where(payment_sessions.c.id == session_id)
            .where(
                or_(
                    payment_sessions.c.status.in_(UNSETTLED),
                    payment_sessions.c.expire_checkout_id.is_not(None),
                )
            )
            .values(
                expiry_attempts=payment_sessions.c.expiry_attempts + 1,
                last_expiry_error=error[:500],
            )
            .returning(payment_sessions.c.expiry_attempts)
        )
        return int(result.scalar_one_or_none() or 0)

    async def oldest_open_deadline(self) -> datetime | None:
        oldest: datetime | None = await self._connection.scalar(
            select(func.min(payment_sessions.c.expires_at)).where(
                payment_sessions.c.status == Status.OPEN.value
            )
        )
        return oldest

    async def overdue_scheduled(self, before: datetime, limit: int) -> list[PaymentSession]:
        """Keyed on the stored next due moment (deadline, reminder, rotation, recheck)."""
        result = await self._connection.execute(
            select(payment_sessions)
            .where(
                or_(
                    payment_sessions.c.status.in_(UNSETTLED),
                    payment_sessions.c.expire_checkout_id.is_not(None),
                )
            )
            .where(
                or_(
                    payment_sessions.c.due_at <= before,
                    # Its due moment lost too (the SQL index forgot it): the deadline still holds.
                    and_(
                        payment_sessions.c.status == Status.OPEN.value,
                        payment_sessions.c.expires_at <= before,
                    ),
                )
            )
            .order_by(payment_sessions.c.expires_at)
            .limit(limit)
        )
        return [session_from_row(row) for row in result]

    async def record_bookkeeping(self, session: PaymentSession) -> None:
        await self._connection.execute(
            update(payment_sessions)
            .where(payment_sessions.c.id == session.id)
            .values(
                confirmation_check_at=session.confirmation_check_at,
                expire_checkout_id=session.expire_checkout_id,
                due_at=_due_at(session),
            )
        )

    async def get_by_checkout_session(
        self, checkout_session_id: str, *, for_update: bool = False
    ) -> PaymentSession | None:
        """The window that had this Checkout Session, current or rotated away."""
        owner = await self._connection.scalar(
            select(checkout_sessions.c.session_id).where(
                checkout_sessions.c.checkout_session_id == checkout_session_id
            )
        )
        return None if owner is None else await self.get(owner, for_update=for_update)

    async def unsettled_for_auction(self, auction_id: str) -> PaymentSession | None:
        result = await self._connection.execute(
            select(payment_sessions).where(
                payment_sessions.c.auction_id == auction_id,
                payment_sessions.c.status.in_(UNSETTLED),
            )
        )
        row = result.first()
        return session_from_row(row) if row else None

    async def paid_for_auction(self, auction_id: str) -> PaymentSession | None:
        result = await self._connection.execute(
            select(payment_sessions).where(
                payment_sessions.c.auction_id == auction_id,
                payment_sessions.c.status == Status.PAID.value,
            )
        )
        row = result.first()
        return session_from_row(row) if row else None

    async def add(self, session: PaymentSession) -> None:
        values = session_values(session)
        values["due_at"] = _due_at(session)
        dialect = postgresql if self._connection.dialect.name == "postgresql" else sqlite
        # Two opens for one auction can both pass the service's check. ON CONFLICT (rather than
        # catching the IntegrityError) keeps this transaction usable, so the loser can name the
        # winner's window: PostgreSQL waits for the winner to commit; the next read sees it.
        statement = (
            dialect.insert(payment_sessions)
            .values(**values)
            .on_conflict_do_nothing(
                index_elements=[payment_sessions.c.auction_id], index_where=text(UNSETTLED_SQL)
            )
        )
        if (await self._connection.execute(statement)).rowcount == 0:
            winner = await self.unsettled_for_auction(session.auction_id)
            raise WindowAlreadyOpen(session.auction_id, winner.id if winner else None)
        await self._remember_checkouts([session])

    async def update(self, session: PaymentSession) -> None:
        values = session_values(session)
        del values["id"], values["created_at"]
        # The stored due moment keys the expiry task's sweep (and the SQL index's schedule).
        values["due_at"] = _due_at(session)
        if not session.is_scheduled:
            values["lease_until"] = None
        result = await self._connection.execute(
            update(payment_sessions)
            .where(payment_sessions.c.id == session.id)
            .where(payment_sessions.c.version == session.version - 1)
            .values(**values)
        )
        if result.rowcount != 1:
            raise VersionConflict(session.id, session.version - 1)
        await self._remember_checkouts([session])
