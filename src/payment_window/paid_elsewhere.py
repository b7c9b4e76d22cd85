"""A webhook recorded a payment on one of a window's Checkout Sessions and left the other, still
open, to the expiry task: it is expired at Stripe so nobody pays twice."""

from __future__ import annotations

from dataclasses import replace

import structlog

from payment_window.domain.errors import CheckoutNotOpen, CheckoutSessionMissing
from payment_window.domain.ports import UnitOfWorkFactory, WindowIndex
from payment_window.domain.session import PaymentSession
from payment_window.expiry_retries import ExpiryRetries
from payment_window.pass_report import PassReport
from payment_window.transitions import Transitions

log = structlog.get_logger(__name__)


class OtherCheckoutExpiry:
    """Expires the open session of a window paid through another, then clears the task."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        transitions: Transitions,
        index: WindowIndex,
        retries: ExpiryRetries,
    ) -> None:
        self._uow = uow
        self._t = transitions
        self._index = index
        self._retries = retries

    async def expire(self, session: PaymentSession, report: PassReport) -> None:
        """Expire it at Stripe (on the window's account), then clear the task. A failure is
        retried with the backoff of any expiry."""
        checkout_id = session.expire_checkout_id
        assert checkout_id is not None
        try:
            await self._t.checkouts.gateway.expire(
                checkout_id,
                idempotency_key=f"paid-elsewhere:{checkout_id}:{session.stripe_attempt_key}",
                account=session.stripe_account,
            )
        except (CheckoutNotOpen, CheckoutSessionMissing) as gone:
            # Already closed (a second payment there is its own webhook's duplicate alert).
            log.info("other_checkout_not_open", checkout_session_id=checkout_id, why=str(gone))
        except Exception as error:
            await self._retries.retry_later(session.id, error, report)
            return
        async with self._uow() as uow:
            current = await uow.sessions.get(session.id, for_update=True)
            if current is not None and current.expire_checkout_id == checkout_id:
                current = replace(current, expire_checkout_id=None)
                await uow.sessions.record_bookkeeping(current)
                await uow.commit()
        log.info(
            "other_checkout_expired",
            checkout_session_id=checkout_id,
            stripe_account=session.stripe_account,
        )
        report.expired_other += 1
        if current is None:
            await self._index.forget(session.id)
        else:
            await self._index.settle_many([current])
