"""The store: SQLAlchemy Core over asyncpg (PostgreSQL) or aiosqlite (SQLite).

One `SqlUnitOfWork` is one transaction holding the session row, its audit entries and its outbox
messages; it rolls back unless committed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import asyncpg
import structlog
from sqlalchemy import and_, bindparam, event, func, insert, or_, select, text, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from payment_window.adapters.outbox_store import cancel_pending
from payment_window.adapters.rows import (
    UNSETTLED,
    audit_values,
    outbox_values,
    readable_sessions,
    session_from_row,
    session_values,
)
from payment_window.adapters.tables import (
    UNSETTLED_SQL,
    audit_log,
    checkout_sessions,
    maker_policies,
    maker_policy_audit,
    outbox,
    payment_sessions,
    stripe_events,
)
from payment_window.config import Settings
from payment_window.domain.errors import VersionConflict, WindowAlreadyOpen
from payment_window.domain.events import AuditEntry, Destination, OutboxMessage
from payment_window.domain.policy import ExtensionPolicy, OnExpiry
from payment_window.domain.ports import UnreadableWindow
from payment_window.domain.session import PaymentSession, Status

log = structlog.get_logger(__name__)


def create_engine(
    settings: Settings, *, bounded: bool = True, lock_timeout: float | None = None
) -> AsyncEngine:
    """An async engine for the configured store; SQLite gets WAL and a busy timeout.

    On PostgreSQL every wait is bounded (`bounded`, all but migrations): connecting, each
    statement (on the server, and on the client for a server that stopped answering) and a
    connection from the pool, so no request waits on a frozen store; the API answers 503."""
    if settings.is_sqlite:
        engine = create_async_engine(settings.database_url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    server_settings = {"application_name": "payment-window"}
    if settings.database_schema:
        server_settings["search_path"] = settings.database_schema
    if lock_timeout is not None:
        server_settings["lock_timeout"] = str(int(lock_timeout * 1000))
    connect_args: dict[str, Any] = {"server_settings": server_settings}
    if bounded:
        statement = settings.database_statement_timeout_seconds
        server_settings["statement_timeout"] = str(int(statement * 1000))
        connect_args["timeout"] = settings.database_connect_timeout_seconds
        # The client's own bound, a little past the server's: a frozen server sends nothing.
        connect_args["command_timeout"] = statement + 1.0
    return create_async_engine(
        settings.database_url,
        pool_size=10,
        max_overflow=20,
        pool_pre_ping=True,
        pool_timeout=settings.database_pool_timeout_seconds,
        connect_args=connect_args,
    )


# What a store that is down, failing over, restarting, frozen or overloaded raises: the
# request may be retried (503 with Retry-After), it is not a bug (500).
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable
    TimeoutError,  # connect or statement bound passed (asyncio's is this one)
    sa_exc.TimeoutError,  # no free connection from the pool in time
    sa_exc.DisconnectionError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # the connection closed under a statement
    asyncpg.OperatorInterventionError,  # statement_timeout, admin shutdown, cannot connect now
    asyncpg.InsufficientResourcesError,  # too many connections, disk full
    asyncpg.ReadOnlySQLTransactionError,  # a failed-over primary that is now a replica
    asyncpg.LockNotAvailableError,  # lock_timeout (a migration holds the table)
    asyncpg.TransactionRollbackError,  # serialization failure, deadlock
)


def store_unavailable(error: BaseException) -> bool:
    """Whether `error` (or what it wraps) says the store could not answer now."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _UNAVAILABLE):
            return True
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        current = current.__cause__ or current.__context__
    return False


def _due_at(session: PaymentSession) -> datetime | None:
    return session.due_at if session.is_scheduled else None


def _insert_ignoring_duplicates(connection: AsyncConnection, table: Any) -> Any:
    """INSERT … ON CONFLICT DO NOTHING on either backend."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


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
                _insert_ignoring_duplicates(self._connection, checkout_sessions), rows
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


class SqlStripeEventRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, event_id: str, event_type: str, received_at: datetime) -> bool:
        """Record an event as acted on; False when it already was (a redelivery).

        A concurrent delivery of the same event waits here for the first one's transaction.
        """
        result = await self._connection.execute(
            _insert_ignoring_duplicates(self._connection, stripe_events)
            .values(event_id=event_id, type=event_type, received_at=received_at)
            .returning(stripe_events.c.event_id)
        )
        return result.first() is not None


def _policy_from_row(row: Row[Any]) -> ExtensionPolicy:
    return ExtensionPolicy(
        max_extension_minutes=row.max_extension_minutes,
        makers_may_override=row.makers_may_override,
        on_expiry=OnExpiry(row.on_expiry),
    )


class SqlPolicyRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def get(self, maker_id: str) -> ExtensionPolicy | None:
        result = await self._connection.execute(
            select(maker_policies).where(maker_policies.c.maker_id == maker_id)
        )
        row = result.first()
        return _policy_from_row(row) if row else None

    async def put(self, maker_id: str, policy: ExtensionPolicy, now: datetime) -> None:
        values = {
            "max_extension_minutes": policy.max_extension_minutes,
            "makers_may_override": policy.makers_may_override,
            "on_expiry": policy.on_expiry.value,
            "updated_at": now,
        }
        result = await self._connection.execute(
            update(maker_policies).where(maker_policies.c.maker_id == maker_id).values(**values)
        )
        if result.rowcount == 0:
            await self._connection.execute(
                insert(maker_policies).values(maker_id=maker_id, **values)
            )

    async def record_change(
        self,
        maker_id: str,
        actor: str,
        before: ExtensionPolicy | None,
        after: ExtensionPolicy,
        at: datetime,
    ) -> None:
        await self._connection.execute(
            insert(maker_policy_audit).values(
                maker_id=maker_id,
                actor=actor,
                before=None if before is None else before.as_dict(),
                after=after.as_dict(),
                at=at,
            )
        )


MessageCopies = Callable[[Sequence[OutboxMessage]], list[OutboxMessage]]


class SqlUnitOfWork:
    """A transaction over the store; `record` queues audit and outbox rows written at commit."""

    sessions: SqlSessionRepository
    policies: SqlPolicyRepository
    stripe_events: SqlStripeEventRepository

    def __init__(
        self,
        engine: AsyncEngine,
        copies: MessageCopies | None = None,
        destinations: Collection[Destination] | None = None,
    ) -> None:
        self._engine = engine
        self._copies = copies
        self._destinations = destinations
        self._audit: list[AuditEntry] = []
        self._outbox: list[tuple[OutboxMessage, str | None, datetime]] = []

    async def __aenter__(self) -> Self:
        self.connection = await self._engine.connect()
        await self.connection.begin()
        self.sessions = SqlSessionRepository(self.connection)
        self.policies = SqlPolicyRepository(self.connection)
        self.stripe_events = SqlStripeEventRepository(self.connection)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self.connection.in_transaction():
                await self.connection.rollback()
        finally:
            await self.connection.close()

    def record(self, audit: AuditEntry, messages: Sequence[OutboxMessage] = ()) -> None:
        self._audit.append(audit)
        # A destination this deployment does not deliver to gets no row: it would wait for
        # ever and grow the table without end.
        own = [
            message
            for message in messages
            if self._destinations is None or message.destination in self._destinations
        ]
        if self._copies is not None and messages:
            # Each webhook endpoint's copies, committed with the change like every message.
            own = [*own, *self._copies(messages)]
        self._outbox.extend((message, audit.session_id, audit.at) for message in own)

    async def cancel_pending(
        self, session_id: str, event_types: Collection[str], now: datetime
    ) -> int:
        """Cancel the session's undelivered outbox messages of these types, in this transaction."""
        return await cancel_pending(self.connection, session_id, event_types, now)

    async def commit(self) -> None:
        if self._audit:
            await self.connection.execute(
                insert(audit_log), [audit_values(entry) for entry in self._audit]
            )
        if self._outbox:
            await self.connection.execute(
                insert(outbox), [outbox_values(*queued) for queued in self._outbox]
            )
        await self.connection.commit()
        self._audit.clear()
        self._outbox.clear()


class SqlUnitOfWorkFactory:
    """`copies`: more messages to record beside each change's own (the webhook endpoints');
    `destinations`: the outbox destinations this deployment delivers to (None: all)."""

    def __init__(
        self,
        engine: AsyncEngine,
        copies: MessageCopies | None = None,
        destinations: Collection[Destination] | None = None,
    ) -> None:
        self.engine = engine
        self.copies = copies
        self._destinations = None if destinations is None else frozenset(destinations)

    def __call__(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, self.copies, self._destinations)


MIGRATION_ATTEMPTS = 5


class MigrationLockTimeout(RuntimeError):
    """A migration could not take its table lock in time, try after try."""


def migrate(
    settings: Settings, revision: str = "head", *, attempts: int = MIGRATION_ATTEMPTS
) -> list[str]:
    """Bring the store's schema up to `revision` (Alembic), one transaction per migration; the
    revisions this run applied.

    Each lock is waited for `PW_MIGRATION_LOCK_TIMEOUT_SECONDS` at most (a migration queued
    behind a long transaction would otherwise block every reader of the table); a migration
    that timed out is tried again with backoff, then the command fails saying why."""
    import time

    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "payment_window:migrations")
    config.attributes["settings"] = settings
    applied: list[str] = []
    config.attributes["applied"] = applied
    for attempt in range(1, attempts + 1):
        try:
            command.upgrade(config, revision)
            return applied
        except Exception as error:
            if not _lock_not_available(error):
                raise
            if attempt == attempts:
                raise MigrationLockTimeout(
                    f"a migration could not lock its table within "
                    f"{settings.migration_lock_timeout_seconds} s in {attempts} tries: a long "
                    "transaction holds it (see pg_stat_activity); the migrations before it are "
                    "applied, run `payment-window migrate` again once it ends"
                ) from error
            delay = min(30.0, 2.0 ** (attempt - 1))
            log.warning("migration_lock_timeout", attempt=attempt, retry_in_seconds=delay)
            time.sleep(delay)
    return applied  # not reached: the last attempt returns or raises


def _lock_not_available(error: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, asyncpg.LockNotAvailableError):
            return True
        current = current.__cause__ or current.__context__
    return False
