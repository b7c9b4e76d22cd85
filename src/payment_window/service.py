"""The request use cases: open a window, read its status, extend it, terminate it, and the
makers' policies. Extending and terminating live in `overrides`.

Every state change is one transaction holding the row (locked while Stripe is asked, once), its
audit entry and its outbox messages. The index and live viewers hear of a change only after it
committed, and a failure there never fails the request (see `transitions`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from datetime import datetime

import structlog

from payment_window.domain import access, money, times, window
from payment_window.domain.access import Actor, Role
from payment_window.domain.attach import check_attachable
from payment_window.domain.connect import Connect, checked_connect
from payment_window.domain.errors import (
    AuctionAlreadyPaid,
    CheckoutAlreadyAttached,
    CheckoutNotFound,
    CheckoutSessionMissing,
    InvalidWindow,
    OverrideNotAllowed,
    SessionNotFound,
    WindowAlreadyOpen,
)
from payment_window.domain.policy import ExtensionPolicy
from payment_window.domain.ports import UnitOfWorkFactory
from payment_window.domain.session import PaymentSession
from payment_window.domain.status import Viewed, WindowStatus
from payment_window.overrides import WindowOverrides
from payment_window.transitions import Transitions

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class OpenWindow:
    """A request to give an auction's winner a window to pay."""

    auction_id: str
    maker_id: str
    buyer_id: str
    amount: int | None = None
    currency: str | None = None
    window_minutes: int | None = None
    expires_at: datetime | None = None
    connect: Connect | None = None
    # Attach: a Checkout Session another integration made, instead of amount and currency.
    checkout_session_id: str | None = None


def new_session_id() -> str:
    return "pw_" + secrets.token_hex(12)


class PaymentWindows:
    """The payment-window use cases a request can ask for."""

    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        transitions: Transitions,
        window_minutes: int,
        reminder_offsets: tuple[int, ...] = (),
    ) -> None:
        self._uow = uow
        self._t = transitions
        self._window_minutes = window_minutes
        self._reminder_offsets = reminder_offsets
        self._overrides = WindowOverrides(
            uow=uow, transitions=transitions, reminder_offsets=reminder_offsets
        )

    @property
    def default_policy(self) -> ExtensionPolicy:
        return self._t.default_policy

    # --- reading -------------------------------------------------------------------------------

    async def status(self, session_id: str, viewer: Actor) -> WindowStatus:
        """The window as the viewer may see it; someone else's window does not exist for them.

        Served from the index (which itself answers from the store while Redis is down: see
        `FailoverWindowIndex`); from the store when this process knows its index entry for the
        window may be stale, or the index has none."""
        now = self._t.clock.now()
        viewed: Viewed | None = None
        if session_id not in self._t.after_commit.repairs:
            viewed = await self._t.after_commit.index.snapshot(session_id)
        if viewed is None:
            async with self._uow() as uow:
                viewed = await uow.sessions.get(session_id)
        if viewed is None or not access.may_view(viewer, viewed):
            raise SessionNotFound(session_id)
        return WindowStatus.of(viewed, now)

    async def policy_for(self, maker_id: str, viewer: Actor) -> ExtensionPolicy:
        """The maker's policy, or the configured defaults when none was set."""
        return await self.own_policy(maker_id, viewer) or self._t.default_policy

    async def own_policy(self, maker_id: str, viewer: Actor) -> ExtensionPolicy | None:
        """The policy set for this maker; None when the defaults apply."""
        if not access.may_read_policy(viewer, maker_id):
            raise OverrideNotAllowed("only admins and the maker may read a maker's policy")
        async with self._uow() as uow:
            return await uow.policies.get(maker_id)

    async def set_policy(self, maker_id: str, policy: ExtensionPolicy, actor: Actor) -> None:
        """Replace the maker's policy (admins only); the change is audited: who, before, after."""
        if actor.role is not Role.ADMIN:
            raise OverrideNotAllowed("only admins may change a maker's policy")
        now = self._t.clock.now()
        async with self._uow() as uow:
            before = await uow.policies.get(maker_id)
            await uow.policies.put(maker_id, policy, now)
            await uow.policies.record_change(maker_id, actor.label, before, policy, now)
            await uow.commit()
        log.info(
            "maker_policy_set",
            maker_id=maker_id,
            actor=actor.label,
            before=None if before is None else before.as_dict(),
            after=policy.as_dict(),
        )

    # --- opening -------------------------------------------------------------------------------

    async def open(self, request: OpenWindow, actor: Actor) -> PaymentSession:
        """Open a window: a Stripe Checkout Session first, then the row, then the index."""
        if not access.may_open(actor):
            raise OverrideNotAllowed("only the marketplace service or an admin may open a window")
        if request.checkout_session_id is not None:
            return await self._attach(request, request.checkout_session_id, actor)
        if request.amount is None or request.currency is None:
            raise InvalidWindow("give amount and currency, or a checkoutSessionId to attach to")
        now = self._t.clock.now()
        ends = self._t.checkouts.plan_window_end(self._window_end(request, now), now)
        amount = money.checked_amount(request.amount)
        session = self._new_session(
            request,
            amount,
            money.checked_currency(request.currency),
            ends,
            now,
            checked_connect(request.connect, amount) if request.connect else None,
        )
        # Refused here with the minimum named, rather than by Stripe after a round trip.
        money.check_minimum(session.amount, session.currency)
        money.check_three_decimal(session.amount, session.currency)
        await self._refuse_second_window(session.auction_id)
        checkout = await self._t.checkouts.create(session, ends, f"open:{session.id}")
        session = replace(
            session,
            checkout_session_id=checkout.id,
            checkout_url=checkout.url,
            checkout_expires_at=checkout.expires_at,
        )
        try:
            await self._store_opened(session, actor)
        except BaseException:
            # Nothing was stored, so nobody could pay through this session: close it at Stripe.
            await self._t.checkouts.expire_quietly(
                checkout.id, f"abandon:{session.id}", account=session.stripe_account
            )
            raise
        await self._t.after_commit.announce(session, "opened")
        log.info("payment_window_opened", session_id=session.id, expires_at=times.iso(ends))
        return session

    async def _attach(self, request: OpenWindow, checkout_id: str, actor: Actor) -> PaymentSession:
        """A window on a Checkout Session another integration made: amount, currency and link
        come from Stripe, and no session is made; the window must end within it."""
        if request.amount is not None or request.currency is not None:
            raise InvalidWindow("give either checkoutSessionId or amount and currency, not both")
        connect = request.connect
        if connect is not None:
            checked_connect(connect, None)
            if connect.application_fee_amount is not None or connect.on_behalf_of:
                raise InvalidWindow(
                    "the fee and onBehalfOf of an attached session are set by the integration "
                    "that made it; give only connect.accountId and connect.charge"
                )
        now = self._t.clock.now()
        ends = self._window_end(request, now)
        await self._refuse_second_window(request.auction_id)
        account = connect.stripe_account if connect else None
        async with self._uow() as uow:
            other = await uow.sessions.get_by_checkout_session(checkout_id)
        if other is not None:
            raise CheckoutAlreadyAttached(checkout_id, other.id)
        try:
            checkout = await self._t.checkouts.gateway.retrieve(checkout_id, account=account)
        except CheckoutSessionMissing:
            raise CheckoutNotFound(checkout_id, account) from None
        check_attachable(checkout, ends)
        if checkout.amount_total is None or not checkout.currency:
            raise InvalidWindow(f"checkout session {checkout_id} has no amount to enforce")
        session = replace(
            self._new_session(
                request, checkout.amount_total, checkout.currency.lower(), ends, now, connect
            ),
            checkout_session_id=checkout.id,
            checkout_url=checkout.url,
            checkout_expires_at=checkout.expires_at,
            attached=True,
        )
        # Not ours to expire should the store refuse: the other integration still owns it.
        await self._store_opened(session, actor)
        await self._t.after_commit.announce(session, "opened")
        log.info(
            "payment_window_attached",
            session_id=session.id,
            checkout_session_id=checkout.id,
            stripe_account=account,
            expires_at=times.iso(ends),
        )
        return session

    def _new_session(
        self,
        request: OpenWindow,
        amount: int,
        currency: str,
        ends: datetime,
        now: datetime,
        connect: Connect | None,
    ) -> PaymentSession:
        """A new window's row, its first reminder planned, before its Checkout Session."""
        return (
            PaymentSession(
                id=new_session_id(),
                auction_id=request.auction_id,
                maker_id=request.maker_id,
                buyer_id=request.buyer_id,
                amount=amount,
                currency=currency,
                expires_at=ends,
                created_at=now,
                updated_at=now,
            )
            .with_reminders_planned(self._reminder_offsets)
            .with_connect(connect)
        )

    def _window_end(self, request: OpenWindow, now: datetime) -> datetime:
        minutes = request.window_minutes
        if minutes is None and request.expires_at is None:
            minutes = self._window_minutes
        return window.window_end(now, minutes=minutes, expires_at=request.expires_at)

    async def _refuse_second_window(self, auction_id: str) -> None:
        async with self._uow() as uow:
            if unsettled := await uow.sessions.unsettled_for_auction(auction_id):
                raise WindowAlreadyOpen(auction_id, unsettled.id)
            if paid := await uow.sessions.paid_for_auction(auction_id):
                raise AuctionAlreadyPaid(auction_id, paid.id)

    async def _store_opened(self, session: PaymentSession, actor: Actor) -> None:
        async with self._uow() as uow:
            await uow.sessions.add(session)
            uow.record(
                self._t.audit(
                    session,
                    "payment_window_opened",
                    actor.label,
                    None,
                    {
                        "expiresAt": times.iso(session.expires_at),
                        "checkoutSessionId": session.checkout_session_id,
                        "attached": session.attached or None,
                        "stripeAccount": session.connect_account_id,
                        "charge": session.connect_charge,
                    },
                )
            )
            await uow.commit()

    # --- overriding: the maker's or an admin's word ------------------------------------------

    async def extend(
        self,
        session_id: str,
        minutes: int,
        actor: Actor,
        *,
        reason: str | None = None,
        if_match: int | None = None,
    ) -> PaymentSession:
        """Move the deadline later within the maker's policy (see `WindowOverrides.extend`)."""
        return await self._overrides.extend(
            session_id, minutes, actor, reason=reason, if_match=if_match
        )

    async def terminate(
        self,
        session_id: str,
        actor: Actor,
        *,
        reason: str | None = None,
        if_match: int | None = None,
    ) -> PaymentSession:
        """End a window now (see `WindowOverrides.terminate`)."""
        return await self._overrides.terminate(session_id, actor, reason=reason, if_match=if_match)
