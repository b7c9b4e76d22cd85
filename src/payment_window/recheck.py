"""A payment still awaiting confirmation that no webhook settled: Stripe is asked again, and the
window is settled from its answer (paid, closed as failed, or asked again later)."""

from __future__ import annotations

from payment_window.domain.ports import CheckoutSession, UnitOfWorkFactory, WindowIndex
from payment_window.domain.session import CloseReason, PaymentSession
from payment_window.pass_report import ACTOR, PassReport
from payment_window.transitions import Transitions


class ConfirmationRecheck:
    """Asks Stripe about a pending payment whose confirmation is overdue."""

    def __init__(
        self, uow: UnitOfWorkFactory, transitions: Transitions, index: WindowIndex
    ) -> None:
        self._uow = uow
        self._t = transitions
        self._index = index

    async def recheck(self, session: PaymentSession, report: PassReport) -> None:
        """No webhook settled a pending payment: ask Stripe and settle from its answer."""
        checkout_id = session.checkout_session_id
        checkout = (
            await self._t.checkouts.gateway.retrieve(checkout_id, account=session.stripe_account)
            if checkout_id
            else None
        )
        async with self._uow() as uow:
            current = await uow.sessions.get(session.id, for_update=True)
            if current is None or not current.confirmation_check_due(self._t.clock.now()):
                changed = current
            elif checkout is not None and checkout.payment_status.settled:
                changed = self._t.apply_payment(uow, current, checkout, ACTOR)
                await uow.sessions.update(changed)
            elif checkout is None or checkout.status == "expired" or _payment_failed(checkout):
                policy = await self._t.policy_for(uow, current.maker_id)
                changed = self._t.close(uow, current, policy, CloseReason.PAYMENT_FAILED, ACTOR)
                await uow.sessions.update(changed)
            else:
                changed = current.still_awaiting(self._t.clock.now(), self._t.confirmation_recheck)
                await uow.sessions.record_bookkeeping(changed)
            await uow.commit()
        report.rechecked += 1
        if changed is None:
            await self._index.forget(session.id)
            return
        await self._index.settle_many([changed])
        if changed.version != session.version:
            await self._t.after_commit.announce_closed(changed, reindex=False)


def _payment_failed(checkout: CheckoutSession) -> bool:
    intent = checkout.payment_intent_status
    return intent is not None and intent.failed
