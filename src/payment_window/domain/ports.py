"""The interfaces the use cases need; adapters implement them."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Protocol, Self

from payment_window.domain.buyers import BuyerRecord, Period, RepeatNonPayer
from payment_window.domain.events import AuditEntry, OutboxEnvelope, OutboxMessage
from payment_window.domain.policy import ExtensionPolicy
from payment_window.domain.session import PaymentSession, Status
from payment_window.domain.stripe_calls import CallClass
from payment_window.domain.views import (
    AuditRecord,
    EndpointStatus,
    FailingMessage,
    Summary,
    WindowFilter,
)


class Clock(Protocol):
    def now(self) -> datetime: ...


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
class WindowSnapshot:
    """What the status read needs, as the index holds it."""

    session_id: str
    auction_id: str
    maker_id: str
    buyer_id: str
    amount: int
    currency: str
    status: Status
    expires_at: datetime
    version: int
    reason: str | None
    checkout_url: str | None


@dataclass(frozen=True, slots=True)
class UnreadableWindow:
    """A stored window this version cannot read: what identifies it, and what was wrong."""

    session_id: str
    auction_id: str
    maker_id: str
    buyer_id: str
    status: str
    problem: str


@dataclass(frozen=True, slots=True)
class Claim:
    """A due window taken by one expiry worker until its lease ends."""

    session_id: str
    due_at: datetime


class WindowIndex(Protocol):
    """Deadlines of open windows, claimable by many workers; rebuildable from the store."""

    async def now(self) -> datetime:
        """The index's own clock: every worker compares deadlines against this one."""
        ...

    async def put(self, session: PaymentSession) -> None:
        """Record the session's current state; open sessions are scheduled at their deadline."""
        ...

    async def snapshot(self, session_id: str) -> WindowSnapshot | None: ...

    async def claim_due(self, limit: int, lease_seconds: float) -> list[Claim]: ...

    async def renew(self, claims: Sequence[Claim], lease_seconds: float) -> int:
        """Extend the leases of claims still held (not lapsed, not given back); how many."""
        ...

    async def release(self, session_id: str) -> None:
        """Done with a claim: the session left the schedule or was re-put."""
        ...

    async def retry_at(self, session_id: str, due_at: datetime) -> None:
        """Give a claim back, to be due again at `due_at`."""
        ...

    async def settle_many(self, sessions: Sequence[PaymentSession]) -> None:
        """`put` each session as it now stands and `release` its claim (a closed batch)."""
        ...

    async def next_due(self) -> datetime | None: ...

    async def pending_count(self) -> int: ...

    async def scheduled_ids(self) -> set[str]: ...

    async def forget(self, session_id: str) -> None: ...

    async def wake(self) -> None:
        """Tell sleeping workers the schedule changed (a window opened or moved)."""
        ...

    async def wait_for_wake(self, timeout: float) -> None:  # noqa: ASYNC109
        """Return on a wake, or after `timeout` seconds without one."""
        ...

    async def needs_rebuild(self) -> bool:
        """The index lost its contents (a flushed Redis) and must be rebuilt from the store."""
        ...

    async def mark_rebuilt(self) -> None: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    """Stripe's view of a Checkout Session."""

    id: str
    url: str | None
    status: str  # open | complete | expired
    payment_status: str  # paid | unpaid | no_payment_required
    expires_at: datetime
    # The PaymentIntent's status when Stripe was asked for it: tells a delayed payment that
    # failed (requires_payment_method, canceled) from one still processing.
    payment_intent_status: str | None = None
    # What attaching a window to a session made elsewhere needs to know of it.
    amount_total: int | None = None
    currency: str | None = None
    recovery_enabled: bool = False


class CheckoutGateway(Protocol):
    """Stripe's Checkout Sessions. `account` names the connected account a session lives on
    (direct charges: the `Stripe-Account` header); None is the platform's own."""

    async def create(
        self, session: PaymentSession, expires_at: datetime, idempotency_key: str
    ) -> CheckoutSession:
        """A session for the window, on `session.stripe_account`, with its Connect terms."""
        ...

    async def retrieve(
        self, checkout_session_id: str, *, account: str | None = None
    ) -> CheckoutSession: ...

    async def expire(
        self, checkout_session_id: str, idempotency_key: str, *, account: str | None = None
    ) -> CheckoutSession:
        """Expire an open session; raises CheckoutNotOpen carrying Stripe's status otherwise."""
        ...

    def parse_webhook(self, payload: bytes, signature: str | None) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class WindowChange:
    """A committed change, for live viewers (server-sent events)."""

    session_id: str
    event: str  # extended | terminated | expired | paid | awaiting_confirmation | rotated
    data: dict[str, Any]


class ChangeFeed(Protocol):
    async def publish(self, change: WindowChange) -> None: ...


class ChangeSubscription(Protocol):
    async def get(self) -> WindowChange:
        """The next change to the subscribed window, waiting for one."""
        ...


class ChangeSubscriptions(Protocol):
    def subscribe(self, session_id: str) -> AbstractAsyncContextManager[ChangeSubscription]:
        """Hear the window's changes, published in any process, while the context is open."""
        ...


class LiveChanges(ChangeFeed, ChangeSubscriptions, Protocol):
    """Publishing and subscribing: what server-sent events need."""

    async def close(self) -> None: ...


class RateLimiter(Protocol):
    async def acquire(self) -> None:
        """Wait until one more call fits the budget."""
        ...


class StripeBudget(Protocol):
    """Every Stripe call of the deployment, one pace: buyer-facing calls first."""

    async def acquire(self, call_class: CallClass) -> None:
        """Wait for this call's slot."""
        ...

    async def slow_down(self) -> float:
        """Stripe answered 429: halve the shared pace (once per moment); the new pace."""
        ...

    async def pace(self) -> float:
        """The calls per second the deployment may make now."""
        ...


class Metrics(Protocol):
    def increment(self, name: str, value: int = 1, tags: Sequence[str] = ()) -> None: ...

    def gauge(self, name: str, value: float, tags: Sequence[str] = ()) -> None: ...

    def distribution(self, name: str, value: float, tags: Sequence[str] = ()) -> None: ...

    def close(self) -> None: ...


class Sink(Protocol):
    """Delivers one message to one destination; raises on failure (the relay retries)."""

    async def deliver(self, message: OutboxEnvelope) -> None: ...


class DeliveryFailed(Exception):
    """A sink could not deliver (the vendor refused or was unreachable); worth a retry."""


class OutboxStore(Protocol):
    """The committed outbox messages, as the relay sees them; many relays may share one store."""

    async def claim(
        self, destinations: Collection[str], now: datetime, lease: timedelta, limit: int
    ) -> list[OutboxEnvelope]:
        """Take up to `limit` due, unparked messages for these destinations until
        `now + lease`."""
        ...

    async def mark_delivered(self, message_id: str, at: datetime) -> None: ...

    async def mark_failed(self, message_id: str, error: str, retry_at: datetime) -> None:
        """Count a failed attempt and make the message due again at `retry_at`, unless some
        relay has delivered it meanwhile."""
        ...

    async def park(self, message_id: str, error: str, at: datetime) -> None:
        """Count a last failed attempt and set the message aside until it is redelivered."""
        ...

    async def redeliver(self, message_id: str, now: datetime) -> bool:
        """Make an undelivered message (parked or not) due at `now`; False if there is none."""
        ...

    async def undelivered_counts(self) -> dict[str, int]:
        """Undelivered, uncancelled messages per destination (every destination, zeros too)."""
        ...

    async def failing(self, limit: int) -> list[FailingMessage]:
        """Undelivered messages that failed at least once, most attempts first."""
        ...


class WebhookEndpointsView(Protocol):
    """Outgoing webhook endpoints' state, as operators see it."""

    async def statuses(self, urls: Sequence[str]) -> list[EndpointStatus]:
        """The endpoints at `urls`, in that order, with their backlog."""
        ...


class ReadModel(Protocol):
    """Read-only queries over the store (the truth) for operators and the index rebuild."""

    async def windows(
        self, query: WindowFilter, now: datetime, after: tuple[datetime, str] | None, limit: int
    ) -> list[PaymentSession]:
        """Windows matching `query`, by `(expires_at, id)`, strictly after `after`."""
        ...

    async def summary(self, now: datetime) -> Summary: ...

    async def buyer_record(self, buyer_id: str, period: Period) -> BuyerRecord:
        """The buyer's windows opened in `period`, by outcome, and the last one closed unpaid."""
        ...

    async def repeat_non_payers(self, period: Period, limit: int) -> list[RepeatNonPayer]:
        """The `limit` buyers with the most windows opened in `period` and closed unpaid, most
        first (ties by buyer id); buyers with none are never listed."""
        ...

    async def session(self, session_id: str) -> PaymentSession | None: ...

    async def audit_trail(self, session_id: str) -> list[AuditRecord]:
        """The session's audit entries, oldest first."""
        ...

    async def unsettled_count(self) -> int:
        """Open or awaiting-confirmation sessions."""
        ...

    async def unsettled_after(self, last_id: str, limit: int) -> list[PaymentSession]:
        """Open or awaiting-confirmation sessions with an id after `last_id`, by id."""
        ...

    async def sessions(self, session_ids: Sequence[str]) -> list[PaymentSession]:
        """Those of these sessions that exist, in any order."""
        ...


class Reachable(Protocol):
    """A server a readiness check asks: `ping` returns once it answered."""

    async def ping(self) -> None: ...
