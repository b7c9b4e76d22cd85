"""The pure rules of Stripe Connect windows and of windows on sessions made elsewhere."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from payment_window.domain.attach import check_attachable
from payment_window.domain.connect import Charge, Connect, checked_connect
from payment_window.domain.errors import (
    CheckoutNotOpen,
    CheckoutRecoveryEnabled,
    InvalidWindow,
    WindowOutlivesCheckout,
)
from payment_window.domain.policy import ExtensionPolicy, OnExpiry
from payment_window.domain.ports import CheckoutSession, CheckoutStatus, PaymentStatus
from payment_window.domain.session import PaymentSession, Status

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
POLICY = ExtensionPolicy(max_extension_minutes=1440, makers_may_override=False,
                         on_expiry=OnExpiry.RELIST)  # fmt: skip


def a_window(**changes: object) -> PaymentSession:
    window = PaymentSession(
        id="pw_1",
        auction_id="auc_1",
        maker_id="mk_1",
        buyer_id="by_1",
        amount=5_000,
        currency="usd",
        expires_at=NOW + timedelta(minutes=30),
        created_at=NOW,
        updated_at=NOW,
        checkout_session_id="cs_1",
        checkout_expires_at=NOW + timedelta(minutes=60),
    )
    return replace(window, **changes)  # type: ignore[arg-type]


def a_checkout(**changes: object) -> CheckoutSession:
    checkout = CheckoutSession(
        id="cs_1",
        url="https://checkout.test/cs_1",
        status=CheckoutStatus.OPEN,
        payment_status=PaymentStatus.UNPAID,
        expires_at=NOW + timedelta(minutes=60),
        amount_total=5_000,
        currency="usd",
    )
    return replace(checkout, **changes)  # type: ignore[arg-type]


def test_only_direct_charges_live_on_the_connected_account() -> None:
    assert Connect("acct_1", Charge.DIRECT).stripe_account == "acct_1"
    assert Connect("acct_1", Charge.DESTINATION).stripe_account is None
    direct = a_window().with_connect(Connect("acct_1", Charge.DIRECT, 100))
    assert direct.stripe_account == "acct_1" and direct.connect == Connect(
        "acct_1", Charge.DIRECT, 100
    )
    assert a_window().with_connect(Connect("acct_1", Charge.DESTINATION)).stripe_account is None


@pytest.mark.parametrize(
    "connect",
    [
        Connect("acc_1", Charge.DIRECT),
        Connect("acct_", Charge.DIRECT),
        Connect("acct_1", Charge.DESTINATION, application_fee_amount=5_001),
        Connect("acct_1", Charge.DESTINATION, application_fee_amount=-1),
        Connect("acct_1", Charge.DIRECT, on_behalf_of=True),
    ],
)
def test_connect_terms_stripe_would_refuse_are_refused(connect: Connect) -> None:
    with pytest.raises(InvalidWindow):
        checked_connect(connect, 5_000)


def test_a_session_fits_a_window_ending_within_it() -> None:
    check_attachable(a_checkout(), NOW + timedelta(minutes=60))


@pytest.mark.parametrize(
    ("checkout", "ends", "error"),
    [
        (a_checkout(status=CheckoutStatus.COMPLETE), NOW + timedelta(minutes=5), CheckoutNotOpen),
        (a_checkout(status=CheckoutStatus.EXPIRED), NOW + timedelta(minutes=5), CheckoutNotOpen),
        (a_checkout(recovery_enabled=True), NOW + timedelta(minutes=5), CheckoutRecoveryEnabled),
        (a_checkout(), NOW + timedelta(minutes=61), WindowOutlivesCheckout),
    ],
)
def test_a_session_the_window_cannot_be_enforced_on_is_refused(
    checkout: CheckoutSession, ends: datetime, error: type[Exception]
) -> None:
    with pytest.raises(error):
        check_attachable(checkout, ends)


def test_an_attached_window_cannot_be_extended_past_its_session() -> None:
    attached = a_window(attached=True)

    with pytest.raises(WindowOutlivesCheckout, match="2030-01-01T13:00:00Z"):
        attached.extend(31, POLICY, NOW)
    assert attached.extend(30, POLICY, NOW).expires_at == NOW + timedelta(minutes=60)
    # A window of our own makes a new session instead.
    assert a_window().extend(31, POLICY, NOW).outlives_checkout()


def test_a_paid_window_with_another_session_to_expire_stays_scheduled_until_done() -> None:
    paid = a_window(status=Status.PAID, paid_at=NOW)
    assert not paid.is_scheduled

    handed_over = paid.expire_other_checkout("cs_2", NOW + timedelta(seconds=5))

    assert handed_over.is_scheduled
    assert handed_over.due_at == NOW + timedelta(seconds=5)
    assert handed_over.version == paid.version  # bookkeeping of the payment's own change
