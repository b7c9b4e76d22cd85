"""The store: SQLAlchemy Core over asyncpg (PostgreSQL) or aiosqlite (SQLite).

Its engine, what counts as the store being unavailable, and the unit of work: one
`SqlUnitOfWork` is one transaction holding the session row (`session_repository`), its audit
entries and its outbox messages; it rolls back unless committed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import asyncpg
from sqlalchemy import event, insert
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from payment_window.adapters.outbox_store import cancel_pending
from payment_window.adapters.policy_repository import SqlPolicyRepository
from payment_window.adapters.rows import audit_values, insert_ignoring_duplicates, outbox_values
from payment_window.adapters.session_repository import SqlSessionRepository
from payment_window.adapters.tables import audit_log, outbox, stripe_events
from payment_window.config import Settings
from payment_window.domain.events import AuditEntry, Destination, OutboxMessage


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


class SqlStripeEventRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, event_id: str, event_type: str, received_at: datetime) -> bool:
        """Record an event as acted on; False when it already was (a redelivery).

        A concurrent delivery of the same event waits here for the first one's transaction.
        """
        result = await self._connection.execute(
            insert_ignoring_duplicates(self._connection, stripe_events)
            .values(event_id=event_id, type=event_type, received_at=received_at)
            .returning(stripe_events.c.event_id)
        )
        return result.first() is not None


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
