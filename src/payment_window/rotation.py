"""A window longer than one Stripe Checkout Session gets a new session before the old one runs
out; the old one is then expired, so the buyer pays through the newest link only."""

from __future__ import annotations

from payment_window.domain import times
from payment_window.domain.ports import UnitOfWorkFactory, WindowIndex
from payment_window.domain.session import PaymentSession
from payment_window.pass_report import ACTOR, PassReport
from payment_window.transitions import Transitions


class CheckoutRotation:
    """Replaces the Checkout Session of a window that outlives it."""

    def __init__(
        self, uow: UnitOfWorkFactory, transitions: Transitions, index: WindowIndex
    ) -> None:
        self._uow = uow
        self._t = transitions
        self._index = index

    async def rotate(self, session: PaymentSession, report: PassReport) -> None:
        """The new session is made without holding the row; it is attached only if nothing
        moved."""
        now = self._t.clock.now()
        checkout = await self._t.checkouts.create(
            session, session.expires_at, f"rotate:{session.stripe_attempt_key}:v{session.version}"
        )
        async with self._uow() as uow:
            current = await uow.sessions.get(session.id, for_update=True)
            attach = (
                current is not None
                and current.version == session.version
                and current.needs_new_checkout(self._t.clock.now())
            )
            if current is not None and attach:
                rotated = current.with_checkout(
                    checkout.id, checkout.url or "", checkout.expires_at, now
                )
                uow.record(
                    self._t.audit(
                        rotated,
                        "checkout_rotated",
                        ACTOR,
                        current.status,
                        {
                            "previousCheckoutSessionId": current.checkout_session_id,
                            "checkoutSessionId": rotated.checkout_session_id,
                            "checkoutExpiresAt": times.iso(rotated.checkout_expires_at),
                        },
                    )
                )
                await uow.sessions.update(rotated)
                await uow.commit()
        if not attach or current is None:
            # The window moved on meanwhile: nobody has this session's link.
            await self._t.checkouts.expire_quietly(
                checkout.id, f"unused:{checkout.id}", account=session.stripe_account
            )
            if current is not None:
                await self._index.settle_many([current])
            return
        await self._index.settle_many([rotated])
        await self._t.after_commit.announce(rotated, "rotated", reindex=False)
        report.rotated += 1
        if current.checkout_session_id:
            await self._t.checkouts.expire_quietly(
                current.checkout_session_id,
                f"rotated:{current.checkout_session_id}",
                account=current.stripe_account,
            )
