"""Overriding a window on the maker's or an admin's word: extending its deadline within the
maker's policy, or terminating it now.

Each is one transaction holding the locked row while Stripe is asked (once), its audit entry and
its outbox messages; a Stripe failure counts an attempt on the window.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime

from payment_window.domain import access, messages, stripe_calls, times
from payment_window.domain.access import Actor, Role
from payment_window.domain.errors import (
    OverrideNotAllowed,
    PaymentProviderUnavailable,
    PreconditionFailed,
    SessionNotFound,
    WindowNotOpen,
)
from payment_window.domain.policy import ExtensionPolicy
from payment_window.domain.ports import UnitOfWork, UnitOfWorkFactory
from payment_window.domain.session import CloseReason, PaymentSession
from payment_window.transitions import Transitions


class WindowOverrides:
    """Extend and terminate: the overrides `PaymentWindows` offers a maker or an admin."""

    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        transitions: Transitions,
        reminder_offsets: tuple[int, ...] = (),
    ) -> None:
        self._uow = uow
        self._t = transitions
        self._reminder_offsets = reminder_offsets

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
        """Move the deadline later within the maker's policy. When the window then outlives
        its Stripe session, the new session is made now, as part of the extension."""
        now = self._t.clock.now()
        made: str | None = None  # a Checkout Session this extension made
        try:
            async with self._counting_stripe_attempts(session_id), self._uow() as uow:
                session, policy = await self._load_for_override(uow, session_id, actor, if_match)
                extended = session.extend(minutes, policy, now).with_reminders_planned(
                    self._reminder_offsets
                )
                if extended.outlives_checkout():
                    extended = await self._with_new_checkout(extended, now)
                    made = extended.checkout_session_id
                await self._record_extension(uow, session, extended, actor, minutes, reason)
        except BaseException:
            if made:
                # Not stored, so nobody can pay through it: close it at Stripe.
                await self._t.checkouts.expire_quietly(made, f"abandon:{made}")
            raise
        tags = [f"role:{actor.role.value}"]
        self._t.metrics.increment("payments.window.extension_count", tags=tags)
        self._t.metrics.increment("payments.window.override_count", tags=[*tags, "action:extend"])
        await self._t.after_commit.announce(extended, "extended")
        rotated_from = session.checkout_session_id
        if extended.checkout_session_id != rotated_from:
            await self._t.after_commit.announce(extended, "rotated")
            if rotated_from:
                await self._t.checkouts.expire_quietly(
                    rotated_from, f"rotated:{rotated_from}", account=extended.stripe_account
                )
        return extended

    async def _record_extension(
        self,
        uow: UnitOfWork,
        session: PaymentSession,
        extended: PaymentSession,
        actor: Actor,
        minutes: int,
        reason: str | None,
    ) -> None:
        await uow.sessions.update(extended)
        uow.record(
            self._t.audit(
                extended,
                "payment_window_extended",
                actor.label,
                session.status,
                {
                    "role": actor.role.value,
                    "minutes": minutes,
                    "reason": reason,
                    "previousExpiresAt": times.iso(session.expires_at),
                    "expiresAt": times.iso(extended.expires_at),
                    "checkoutSessionId": extended.checkout_session_id,
                },
            ),
            messages.on_extend(session, extended, minutes, actor.label, reason),
        )
        await uow.commit()

    async def _with_new_checkout(self, session: PaymentSession, now: datetime) -> PaymentSession:
        """Stripe cannot move a session's end: a new one, attached within this change (made
        while the row is locked, so bounded and not retried inside the lock)."""
        with stripe_calls.under_row_lock():
            checkout = await self._t.checkouts.create(
                session,
                session.expires_at,
                # Each extension is its own request: a window extended (and rotated) again must
                # not reuse the first rotation's key, which Stripe would refuse for other
                # parameters.
                f"rotate:{session.stripe_attempt_key}:extend-v{session.version}",
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
        """End a window now, on an admin's or (within policy) the maker's word. Stripe first:
        a buyer who completed checkout meanwhile has paid."""
        close_reason = (
            CloseReason.ADMIN_TERMINATED
            if actor.role is Role.ADMIN
            else CloseReason.MAKER_TERMINATED
        )
        async with self._counting_stripe_attempts(session_id), self._uow() as uow:
            session, policy = await self._load_for_override(uow, session_id, actor, if_match)
            with stripe_calls.under_row_lock():
                completed = await self._t.checkouts.expire_at_stripe(session)
            if completed is not None:
                closed = self._t.apply_payment(uow, session, completed, actor.label)
            else:
                closed = self._t.close(uow, session, policy, close_reason, actor.label, note=reason)
            await uow.sessions.update(closed)
            await uow.commit()
        tags = [f"role:{actor.role.value}", "action:terminate"]
        self._t.metrics.increment("payments.window.override_count", tags=tags)
        await self._t.after_commit.announce_closed(closed)
        return closed

    # --- helpers -------------------------------------------------------------------------------

    async def _load_for_override(
        self, uow: UnitOfWork, session_id: str, actor: Actor, if_match: int | None
    ) -> tuple[PaymentSession, ExtensionPolicy]:
        if actor.role not in (Role.ADMIN, Role.MAKER):
            raise OverrideNotAllowed(f"a {actor.role.value} may not override payment windows")
        session = await uow.sessions.get(session_id, for_update=True)
        if session is None or not access.may_view(actor, session):
            raise SessionNotFound(session_id)
        policy = await self._t.policy_for(uow, session.maker_id)
        if not access.may_override(actor, session, policy):
            raise OverrideNotAllowed("this role may not override this payment window")
        if if_match is not None and if_match != session.version:
            raise PreconditionFailed(f"session is at version {session.version}, not {if_match}")
        if not session.is_open:
            raise WindowNotOpen(session.id, session.status.value)
        return session, policy

    @asynccontextmanager
    async def _counting_stripe_attempts(self, session_id: str) -> AsyncIterator[None]:
        """A Stripe failure counts an attempt on the window, so the next try uses a new
        idempotency key (Stripe would replay this answer for the old one). Recorded once the
        change's own transaction has let go of the row."""
        try:
            yield
        except PaymentProviderUnavailable as error:
            async with self._uow() as uow:
                await uow.sessions.record_expiry_failure(
                    session_id, f"{type(error).__name__}: {error}"
                )
                await uow.commit()
            raise
