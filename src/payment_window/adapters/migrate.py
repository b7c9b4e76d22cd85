"""Bringing the store's schema up to date (Alembic), riding out a table lock held elsewhere."""

from __future__ import annotations

import asyncpg
import structlog

from payment_window.config import Settings

log = structlog.get_logger(__name__)


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
