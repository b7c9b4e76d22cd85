"""Alembic environment: runs the migrations over the service's own async engine."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from payment_window.adapters.store import create_engine
from payment_window.adapters.tables import metadata
from payment_window.config import Settings

settings: Settings = context.config.attributes["settings"]


def _applied(ctx: object, step: object, heads: object, run_args: object) -> None:
    """Tell `migrate` which revisions this run applied (it reports them)."""
    applied = context.config.attributes.get("applied")
    if isinstance(applied, list):
        applied.append(getattr(step, "up_revision_id", None) or str(step))


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        on_version_apply=_applied,
        # One transaction per migration: a failure (a lock not had in time) keeps the ones
        # before it, and holds its locks only for its own statements.
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    # No statement bound (an index on a large table takes its time), but a bounded wait for
    # each lock: a migration queued behind a long transaction would block every reader.
    engine = create_engine(
        settings, bounded=False, lock_timeout=settings.migration_lock_timeout_seconds
    )
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


asyncio.run(_main())
