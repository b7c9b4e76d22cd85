"""The store as the use cases see it: one unit of work holding the windows, the makers'
policies and the Stripe events acted on, rolled back unless committed."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from payment_window.domain.events import AuditEntry, OutboxMessage
from payment_window.domain.policy import ExtensionPolicy
from payment_window.domain.session import PaymentSession


class SessionRepository(Protocol):
    async def get(self, session_id: str, *, for_update: bool = False) -> PaymentSession | None:
        """Load a session; `for_update` holds it against other writers until commit."""
        ...

    async def record_expiry_failure(self, session_id: str, error: str) -> int:
        """Bookkeeping only (attempts, last error): not a state change, so no new version.

        Returns the attempts so far."""
        ...

    async def overdue_scheduled(self, before: datetime, limit: int) -> list[PaymentSession]:
        """Sessions the expiry task should have acted on before `before`, earliest first."""
        ...

    async def get_many(self, session_ids: Sequence[str]) -> list[PaymentSession]:
        """The sessions this version can read (see `unreadable` for the others)."""
        ...

    async def unreadable(self, session_ids: Sequence[str]) -> list[UnreadableWindow]:
        """Those of these sessions that exist but that this version cannot read."""
        ...

    async def record_bookkeeping(self, session: PaymentSession) -> None:
        """Save what is not a state change (no new version): when to look at it next."""
        ...

    async def oldest_open_deadline(self) -> datetime | None: ...

    async def lock_many(self, session_ids: Sequence[str]) -> list[PaymentSession]:
        """Lock these sessions until commit, skipping any another transaction holds."""
        ...

    async def existing_ids(self, session_ids: Sequence[str]) -> set[str]: ...

    async def record_reminders(self, sessions: Sequence[PaymentSession]) -> None:
        """Bookkeeping (reminders sent, the next one's time): not a new version."""
        ...

    async def get_by_checkout_session(
        self, checkout_session_id: str, *, for_update: bool = False
    ) -> PaymentSession | None:
        """The window that had this Checkout Session, whether current or rotated away."""
        ...

    async def unsettled_for_auction(self, auction_id: str) -> PaymentSession | None:
        """The auction's window that is open or awaiting confirmation, if any."""
        ...

    async def paid_for_auction(self, auction_id: str) -> PaymentSession | None:
        """The auction's window that was paid, if any."""
        ...

    async def add(self, session: PaymentSession) -> None:
        """Store a new window; WindowAlreadyOpen when the auction has an unsettled one."""
        ...

    async def update(self, session: PaymentSession) -> None:
        """Save a changed session; VersionConflict unless the stored one is one version older."""
        ...


class PolicyRepository(Protocol):
    async def get(self, maker_id: str) -> ExtensionPolicy | None: ...

    async def put(self, maker_id: str, policy: ExtensionPolicy, now: datetime) -> None: ...

    async def record_change(
        self,
        maker_id: str,
        actor: str,
        before: ExtensionPolicy | None,
        after: ExtensionPolicy,
        at: datetime,
    ) -> None:
        """Audit a change (who, before, after) in this transaction; `before` None: the
        defaults applied."""
        ...


class StripeEventRepository(Protocol):
    async def add(self, event_id: str, event_type: str, received_at: datetime) -> bool:
        """Record a Stripe event as acted on; False when it already was (a redelivery)."""
        ...


class UnitOfWork(Protocol):
    """One transaction: rolled back on exit unless `commit` was called."""

    @property
    def sessions(self) -> SessionRepository: ...

    @property
    def policies(self) -> PolicyRepository: ...

    @property
    def stripe_events(self) -> StripeEventRepository: ...

    async def cancel_pending(
        self, session_id: str, event_types: Collection[str], now: datetime
    ) -> int:
        """Cancel the session's undelivered outbox messages of these types; how many."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def record(self, audit: AuditEntry, messages: Sequence[OutboxMessage] = ()) -> None: ...

    async def commit(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...


@dataclass(frozen=True, slots=True)
class UnreadableWindow:
    """A stored window this version cannot read: what identifies it, and what was wrong."""

    session_id: str
    auction_id: str
    maker_id: str
    buyer_id: str
    status: str
    problem: str


class Retention(Protocol):
    """Deletes what the store keeps only for a while; each returns how many rows went."""

    async def delete_finished_outbox(self, before: datetime) -> int: ...

    async def delete_stripe_events(self, before: datetime) -> int: ...

    async def delete_idempotency_keys(self, before: datetime) -> int: ...
