"""The use cases: open a window, read its status, extend it, close it, record a payment.

Every state change is one transaction holding the row (version-checked and locked while Stripe
is asked), its audit entry and its outbox messages. The index and live viewers hear of a change
only after it committed.
"""

from __future__ import annotations

import asyncio
import copy
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import structlog

from payment_window.domain import access, messages, money, window
from payment_window.domain.access import Actor, Role
from payment_window.domain.errors import (
    AuctionAlreadyPaid,
    CheckoutNotOpen,
    OverrideNotAllowed,
    PaymentProviderUnavailable,
    PreconditionFailed,
    SessionNotFound,
    WindowAlreadyOpen,
    WindowNotOpen,
)
from payment_window.domain.events import AuditEntry
from payment_window.domain.policy import ExtensionPolicy
from payment_window.domain.ports import (
    ChangeFeed,
    CheckoutGateway,
    CheckoutSession,
    Clock,
    Metrics,
    UnitOfWork,
    UnitOfWorkFactory,
    WindowChange,
    WindowIndex,
)
from payment_window.domain.session import CloseReason, PaymentSession, Status

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class OpenWindow:
    """A request to give an auction's winner a window to pay."""

    auction_id: str
    maker_id: str
    buyer_id: str
    amount: int
    currency: str
    window_minutes: int | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class WindowStatus:
    """What a viewer sees of a window at one instant."""

    session_id: str
    auction_id: str
    maker_id: str
    buyer_id: str
    amount: int
    currency: str
    status: Status
    expires_at: datetime
    remaining_seconds: int
    server_time: datetime
    version: int
    reason: str | None
    checkout_url: str | None

    @classmethod
    def of(cls, session: PaymentSession, now: datetime) -> WindowStatus:
        """A stored session as its viewers see it at `now`."""
        return cls(
            session_id=session.id,
            auction_id=session.auction_id,
            maker_id=session.maker_id,
            buyer_id=session.buyer_id,
            amount=session.amount,
            currency=session.currency,
            status=session.status,
            expires_at=session.expires_at,
            remaining_seconds=session.remaining_seconds(now),
            server_time=now,
            version=session.version,
            reason=session.reason,
            checkout_url=session.checkout_url,
        )


STRIPE_CONCURRENCY = 32


@dataclass(slots=True)
class ExpiryBatch:
    """What closing a batch of claimed windows did to each of them."""

    changed: list[PaymentSession] = field(default_factory=list)
    rotated: list[PaymentSession] = field(default_factory=list)
    unchanged: list[PaymentSession] = field(default_factory=list)
    reminded: list[PaymentSession] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    failed: list[tuple[str, str, int]] = field(default_factory=list)


def new_session_id() -> str:
    return "pw_" + secrets.token_hex(12)


class PaymentWindows:
    """The payment-window use cases, over the store, the index and Stripe."""

    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        index: WindowIndex,
        gateway: CheckoutGateway,
        clock: Clock,
        metrics: Metrics,
        changes: ChangeFeed,
        default_policy: ExtensionPolicy,
        window_minutes: int,
        reminder_offsets: Sequence[int] = (),
    ) -> None:
        self._uow = uow
        self.index = index
        self._gateway = gateway
        self._clock = clock
        self._metrics = metrics
        self._changes = changes
        self.default_policy = default_policy
        self._window_minutes = window_minutes
        self._reminder_offsets = tuple(reminder_offsets)

    # --- reading -------------------------------------------------------------------------------

    async def status(self, session_id: str, viewer: Actor) -> WindowStatus:
        """The window as the viewer may see it; someone else's window does not exist for them."""
        now = self._clock.now()
        snapshot = await self.index.snapshot(session_id)
        if snapshot is None:
            async with self._uow() as uow:
                session = await uow.sessions.get(session_id)
            if session is None or not access.may_view(viewer, session):
                raise SessionNotFound(session_id)
            return WindowStatus.of(session, now)
        if not access.may_view(viewer, snapshot):
            raise SessionNotFound(session_id)
        is_open = snapshot.status is Status.OPEN
        return WindowStatus(
            session_id=snapshot.session_id,
            auction_id=snapshot.auction_id,
            maker_id=snapshot.maker_id,
            buyer_id=snapshot.buyer_id,
            amount=snapshot.amount,
            currency=snapshot.currency,
            status=snapshot.status,
            expires_at=snapshot.expires_at,
            remaining_seconds=window.remaining_seconds(snapshot.expires_at, now) if is_open else 0,
            server_time=now,
            version=snapshot.version,
            reason=snapshot.reason,
            checkout_url=snapshot.checkout_url,
        )

    async def session(self, session_id: str, viewer: Actor) -> PaymentSession:
        """The full stored session, for its owners and admins."""
        async with self._uow() as uow:
            session = await uow.sessions.get(session_id)
        if session is None or not access.may_view(viewer, session):
            raise SessionNotFound(session_id)
        return session

    async def policy_for(self, maker_id: str, viewer: Actor) -> ExtensionPolicy:
        if not access.may_read_policy(viewer, maker_id):
            raise OverrideNotAllowed("only admins and the maker may read a maker's policy")
        async with self._uow() as uow:
            return await uow.policies.get(maker_id) or self.default_policy

    async def set_policy(self, maker_id: str, policy: ExtensionPolicy, actor: Actor) -> None:
        if actor.role is not Role.ADMIN:
            raise OverrideNotAllowed("only admins may change a maker's policy")
        now = self._clock.now()
        async with self._uow() as uow:
            await uow.policies.put(maker_id, policy, now)
            await uow.commit()
        log.info("maker_policy_set", maker_id=maker_id, actor=actor.label)

    # --- opening -------------------------------------------------------------------------------

    async def open(self, request: OpenWindow, actor: Actor) -> PaymentSession:
        """Open a window: a Stripe Checkout Session first, then the row, then the index."""
        if not access.may_open(actor):
            raise OverrideNotAllowed("only the marketplace service or an admin may open a window")
        now = self._clock.now()
        minutes = request.window_minutes
        if minutes is None and request.expires_at is None:
            minutes = self._window_minutes
        ends = window.window_end(now, minutes=minutes, expires_at=request.expires_at)
        session = PaymentSession(
            id=new_session_id(),
            auction_id=request.auction_id,
            maker_id=request.maker_id,
            buyer_id=request.buyer_id,
            amount=money.checked_amount(request.amount),
            currency=money.checked_currency(request.currency),
            expires_at=ends,
            created_at=now,
            updated_at=now,
        ).with_reminders_planned(self._reminder_offsets)
        async with self._uow() as uow:
            if unsettled := await uow.sessions.unsettled_for_auction(session.auction_id):
                raise WindowAlreadyOpen(session.auction_id, unsettled.id)
            if paid := await uow.sessions.paid_for_auction(session.auction_id):
                raise AuctionAlreadyPaid(session.auction_id, paid.id)
        checkout = await self._gateway.create(
            session, window.stripe_session_expiry(ends, now), idempotency_key=f"open:{session.id}"
        )
        session = replace(
            session,
            checkout_session_id=checkout.id,
            checkout_url=checkout.url,
            checkout_expires_at=checkout.expires_at,
        )
        try:
            async with self._uow() as uow:
                await uow.sessions.add(session)
                uow.record(
                    self._audit(
                        session,
                        "payment_window_opened",
                        actor.label,
                        None,
                        {"expiresAt": messages.iso(ends), "checkoutSessionId": checkout.id},
                    )
                )
                await uow.commit()
        except BaseException:
            # Nothing was stored, so nobody could pay through this session: close it at Stripe.
            await self._expire_quietly(checkout.id, f"abandon:{session.id}")
            raise
        await self.index.put(session)
        await self.index.wake()
        log.info("payment_window_opened", session_id=session.id, expires_at=messages.iso(ends))
        return session

    # --- extending -----------------------------------------------------------------------------

    async def extend(
        self,
        session_id: str,
        minutes: int,
        actor: Actor,
        *,
        reason: str | None = None,
        if_match: int | None = None,
    ) -> PaymentSession:
        """Move the deadline later within the maker's policy; a new Stripe session if needed."""
        now = self._clock.now()
        async with self._uow() as uow:
            session, policy = await self._load_for_override(uow, session_id, actor, if_match)
            extended = session.extend(minutes, policy, now).with_reminders_planned(
                self._reminder_offsets
            )
            if extended.outlives_checkout():
                extended = await self._rotate(extended, now)
            await uow.sessions.update(extended)
            uow.record(
                self._audit(
                    extended,
                    "payment_window_extended",
                    actor.label,
                    session.status,
                    {
                        "role": actor.role.value,
                        "minutes": minutes,
                        "reason": reason,
                        "previousExpiresAt": messages.iso(session.expires_at),
                        "expiresAt": messages.iso(extended.expires_at),
                        "checkoutSessionId": extended.checkout_session_id,
                    },
                ),
                messages.on_extend(session, extended, minutes, actor.label, reason),
            )
            await uow.commit()
        tags = [f"role:{actor.role.value}"]
        self._metrics.increment("payments.window.extension_count", tags=tags)
        self._metrics.increment("payments.window.override_count", tags=[*tags, "action:extend"])
        await self._after_change(extended, "extended")
        if extended.checkout_session_id != session.checkout_session_id:
            await self._after_change(extended, "rotated")
        return extended

    async def _rotate(self, session: PaymentSession, now: datetime) -> PaymentSession:
        """Stripe cannot move a session's end: open a new one and expire the old."""
        checkout = await self._gateway.create(
            session,
            window.stripe_session_expiry(session.expires_at, now),
            idempotency_key=f"rotate:{session.id}:v{session.version}",
        )
        if session.checkout_session_id:
            await self._expire_quietly(
                session.checkout_session_id, f"rotate-old:{session.id}:v{session.version}"
            )
        rotated = session.with_checkout(checkout.id, checkout.url or "", checkout.expires_at, now)
        # Part of the same change as the extension: one stored version step, not two.
        return replace(rotated, version=session.version)

    # --- closing -------------------------------------------------------------------------------

    async def terminate(
        self,
        session_id: str,
        actor: Actor,
        *,
        reason: str | None = None,
        if_match: int | None = None,
    ) -> PaymentSession:
        """End a window now, on an admin's or (within policy) the maker's word."""
        close_reason = (
            CloseReason.ADMIN_TERMINATED
            if actor.role is Role.ADMIN
            else CloseReason.MAKER_TERMINATED
        )
        async with self._uow() as uow:
            session, policy = await self._load_for_override(uow, session_id, actor, if_match)
            completed = await self._expire_at_stripe(session)
            if completed is not None:
                closed = self._apply_payment(uow, session, completed, actor.label)
            else:
                closed = self._apply_close(
                    uow, session, policy, close_reason, actor.label, note=reason
                )
            await uow.sessions.update(closed)
            await uow.commit()
        tags = [f"role:{actor.role.value}", "action:terminate"]
        self._metrics.increment("payments.window.override_count", tags=tags)
        return await self._closed(closed)

    async def expire_due(self, session_ids: Sequence[str], now: datetime) -> ExpiryBatch:
        """Close the claimed windows that are due by `now` (the index's clock), in one transaction.

        The rows stay locked while Stripe is asked, so an extension cannot slip in between
        Stripe expiring the session and the window being recorded closed. Rows another
        transaction holds are skipped and reported busy.
        """
        batch = ExpiryBatch()
        async with self._uow() as uow:
            locked = await uow.sessions.lock_many(session_ids)
            if len(locked) < len(session_ids):
                found = {session.id for session in locked}
                existing = await uow.sessions.existing_ids(
                    [sid for sid in session_ids if sid not in found]
                )
                batch.busy = sorted(existing)
                batch.missing = [sid for sid in session_ids if sid not in found | existing]
            due = [session for session in locked if session.is_due(now)]
            rotating = [session for session in locked if session.needs_new_checkout(now)]
            acting = {session.id for session in (*due, *rotating)}
            batch.unchanged = [session for session in locked if session.id not in acting]
            batch.reminded = self._send_due_reminders(uow, batch.unchanged, now)
            reminded_ids = {session.id for session in batch.reminded}
            batch.unchanged = [
                session for session in batch.unchanged if session.id not in reminded_ids
            ] + batch.reminded
            policies = await uow.policies.get_many({session.maker_id for session in due})
            gate = asyncio.Semaphore(STRIPE_CONCURRENCY)

            async def ask_stripe(session: PaymentSession) -> CheckoutSession | None:
                async with gate:
                    return await self._expire_at_stripe(session)

            async def replace_checkout(session: PaymentSession) -> PaymentSession:
                async with gate:
                    return await self._rotate(session, self._clock.now())

            answers, replacements = await asyncio.gather(
                asyncio.gather(*(ask_stripe(s) for s in due), return_exceptions=True),
                asyncio.gather(*(replace_checkout(s) for s in rotating), return_exceptions=True),
            )
            failures: list[tuple[str, str]] = []
            for session, replacement in zip(rotating, replacements, strict=True):
                if isinstance(replacement, BaseException):
                    if not isinstance(replacement, Exception):
                        raise replacement
                    failures.append((session.id, f"{type(replacement).__name__}: {replacement}"))
                    continue
                rotated = replace(replacement, version=session.version + 1)
                uow.record(
                    self._audit(
                        rotated,
                        "checkout_rotated",
                        access.SYSTEM_EXPIRY,
                        session.status,
                        {
                            "previousCheckoutSessionId": session.checkout_session_id,
                            "checkoutSessionId": rotated.checkout_session_id,
                            "checkoutExpiresAt": messages.iso(rotated.checkout_expires_at),
                        },
                    )
                )
                batch.rotated.append(rotated)
            for session, answer in zip(due, answers, strict=True):
                if isinstance(answer, BaseException):
                    if not isinstance(answer, Exception):
                        raise answer
                    failures.append((session.id, f"{type(answer).__name__}: {answer}"))
                    self._count_stripe_error(answer)
                elif answer is not None:
                    batch.changed.append(
                        self._apply_payment(uow, session, answer, access.SYSTEM_EXPIRY)
                    )
                else:
                    policy = policies.get(session.maker_id, self.default_policy)
                    batch.changed.append(
                        self._apply_close(
                            uow,
                            session,
                            policy,
                            CloseReason.WINDOW_ELAPSED,
                            access.SYSTEM_EXPIRY,
                        )
                    )
            await uow.sessions.update_many([*batch.changed, *batch.rotated])
            await uow.sessions.record_reminders(batch.reminded)
            attempts = await uow.sessions.record_expiry_failures(failures)
            await uow.commit()
        batch.failed = [(sid, error, attempts.get(sid, 1)) for sid, error in failures]
        # The expiry task settles the whole batch in the index at once afterwards.
        for session in batch.changed:
            await self._closed(session, reindex=False)
        for session in batch.rotated:
            await self._after_change(session, "rotated")
        return batch

    async def oldest_open_deadline(self) -> datetime | None:
        """The earliest deadline of any open window (for the overdue gauge)."""
        async with self._uow() as uow:
            return await uow.sessions.oldest_open_deadline()

    async def overdue_open(self, before: datetime, limit: int = 10_000) -> list[PaymentSession]:
        """Open windows whose deadline passed before `before`, oldest first."""
        async with self._uow() as uow:
            return await uow.sessions.overdue_open(before, limit)

    def with_gateway(self, gateway: CheckoutGateway) -> PaymentWindows:
        """The same use cases talking to Stripe through another gateway (the paced one)."""
        paced = copy.copy(self)
        paced._gateway = gateway
        return paced

    def _send_due_reminders(
        self, uow: UnitOfWork, sessions: list[PaymentSession], now: datetime
    ) -> list[PaymentSession]:
        """Queue the buyer reminders that came due; the row locks make each one go out once.

        Returns the sessions that sent one, as they stand afterwards."""
        reminded_sessions = []
        for session in sessions:
            if session.reminder_due(now):
                reminded, offset = session.send_reminder(self._reminder_offsets, now)
                uow.record(
                    self._audit(
                        reminded,
                        "reminder_sent",
                        access.SYSTEM_EXPIRY,
                        session.status,
                        {"reminderMinutes": offset, "expiresAt": messages.iso(session.expires_at)},
                    ),
                    [messages.on_reminder(reminded, offset, now)],
                )
                reminded_sessions.append(reminded)
        return reminded_sessions

    async def _expire_at_stripe(self, session: PaymentSession) -> CheckoutSession | None:
        """Stripe first: None once Stripe can no longer take the money for this window, or the
        completed Checkout Session when the buyer paid before Stripe could expire it."""
        if not session.checkout_session_id:
            return None
        try:
            await self._gateway.expire(
                session.checkout_session_id,
                idempotency_key=f"expire:{session.id}:v{session.version}",
            )
        except CheckoutNotOpen as refused:
            if refused.status == "complete":
                return await self._gateway.retrieve(session.checkout_session_id)
            # Already expired at Stripe (by us before a crash, or by Stripe itself): carry on.
        return None

    def _apply_close(
        self,
        uow: UnitOfWork,
        session: PaymentSession,
        policy: ExtensionPolicy,
        reason: CloseReason,
        actor: str,
        *,
        note: str | None = None,
    ) -> PaymentSession:
        """The window closed unpaid: its audit entry and messages join the transaction."""
        closed = session.expire(reason, self._clock.now())
        uow.record(
            self._audit(
                closed,
                "payment_expired",
                actor,
                session.status,
                {
                    "reason": reason.value,
                    "note": note,
                    "expiresAt": messages.iso(session.expires_at),
                    "checkoutSessionId": session.checkout_session_id,
                },
            ),
            messages.on_close(closed, reason, policy, actor),
        )
        return closed

    def _count_stripe_error(self, error: Exception) -> None:
        kind = error.kind if isinstance(error, PaymentProviderUnavailable) else "other"
        self._metrics.increment("payments.window.stripe_errors", tags=[f"kind:{kind}"])

    async def _closed(self, session: PaymentSession, *, reindex: bool = True) -> PaymentSession:
        """Announce a committed close (or a payment discovered while closing)."""
        if session.status is Status.EXPIRED:
            tags = [f"reason:{session.reason}"]
            self._metrics.increment("payments.window.expired_count", tags=tags)
            if session.reason == CloseReason.WINDOW_ELAPSED and session.expired_at:
                lateness = (session.expired_at - session.expires_at).total_seconds()
                self._metrics.distribution("payments.window.expiry_lateness", max(0.0, lateness))
            event = (
                "terminated"
                if session.reason in (CloseReason.ADMIN_TERMINATED, CloseReason.MAKER_TERMINATED)
                else "expired"
            )
            await self._after_change(session, event, reindex=reindex)
        else:
            await self._after_change(session, session.status.value, reindex=reindex)
        log.info(
            "payment_window_closed",
            session_id=session.id,
            status=session.status.value,
            reason=session.reason,
        )
        return session

    # --- payments ------------------------------------------------------------------------------

    def _apply_payment(
        self, uow: UnitOfWork, session: PaymentSession, checkout: CheckoutSession, actor: str
    ) -> PaymentSession:
        """Stripe says the buyer completed checkout: record it instead of closing."""
        confirmed = checkout.payment_status in ("paid", "no_payment_required")
        paid = session.record_payment(self._clock.now(), confirmed=confirmed)
        uow.record(
            self._audit(
                paid,
                "payment_completed" if confirmed else "payment_pending",
                actor,
                session.status,
                {"checkoutSessionId": checkout.id, "paymentStatus": checkout.payment_status},
            ),
            messages.on_payment(paid),
        )
        return paid

    # --- helpers -------------------------------------------------------------------------------

    async def _load_for_override(
        self, uow: UnitOfWork, session_id: str, actor: Actor, if_match: int | None
    ) -> tuple[PaymentSession, ExtensionPolicy]:
        if actor.role not in (Role.ADMIN, Role.MAKER):
            raise OverrideNotAllowed(f"a {actor.role.value} may not override payment windows")
        session = await uow.sessions.get(session_id, for_update=True)
        if session is None or not access.may_view(actor, session):
            raise SessionNotFound(session_id)
        policy = await uow.policies.get(session.maker_id) or self.default_policy
        if not access.may_override(actor, session, policy):
            raise OverrideNotAllowed("this role may not override this payment window")
        if if_match is not None and if_match != session.version:
            raise PreconditionFailed(f"session is at version {session.version}, not {if_match}")
        if not session.is_open:
            raise WindowNotOpen(session.id, session.status.value)
        return session, policy

    async def _after_change(
        self, session: PaymentSession, event: str, *, reindex: bool = True
    ) -> None:
        """Tell the index (unless the caller settles it in bulk) and live viewers."""
        if reindex:
            await self.index.put(session)
        if event in ("extended", "rotated"):
            await self.index.wake()
        await self._changes.publish(
            WindowChange(
                session.id, event, status_body(WindowStatus.of(session, self._clock.now()))
            )
        )

    async def _expire_quietly(self, checkout_session_id: str, idempotency_key: str) -> None:
        try:
            await self._gateway.expire(checkout_session_id, idempotency_key=idempotency_key)
        except Exception:
            # Best effort: Stripe ends the session by itself at its own expires_at anyway.
            log.warning(
                "checkout_expire_failed", checkout_session_id=checkout_session_id, exc_info=True
            )

    def _audit(
        self,
        session: PaymentSession,
        action: str,
        actor: str,
        from_status: Status | None,
        details: dict[str, object],
    ) -> AuditEntry:
        return AuditEntry(
            session_id=session.id,
            action=action,
            actor=actor,
            from_status=from_status.value if from_status else None,
            to_status=session.status.value,
            details={key: value for key, value in details.items() if value is not None},
            at=self._clock.now(),
        )


def status_body(status: WindowStatus) -> dict[str, object]:
    """The status JSON of the HTTP contract (camelCase keys, ISO times with Z)."""
    return {
        "sessionId": status.session_id,
        "auctionId": status.auction_id,
        "status": status.status.value,
        "expiresAt": messages.iso(status.expires_at),
        "remainingTime": status.remaining_seconds,
        "serverTime": messages.iso(status.server_time),
        "version": status.version,
        "reason": status.reason,
        "checkoutUrl": status.checkout_url,
        "amount": status.amount,
        "currency": status.currency,
        "makerId": status.maker_id,
    }
