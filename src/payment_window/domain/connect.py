"""Stripe Connect: which account a window's money goes to, and which account its Checkout
Sessions live on.

Destination charges are made on the platform and transferred to the maker's connected account;
direct charges are made on the connected account itself, so every Stripe call about them must
name that account (the `Stripe-Account` header), or Stripe answers that the session does not
exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from payment_window.domain.errors import InvalidWindow

ACCOUNT_ID = re.compile(r"acct_[A-Za-z0-9]{1,64}")


class Charge(StrEnum):
    DESTINATION = "destination"
    DIRECT = "direct"


@dataclass(frozen=True, slots=True)
class Connect:
    """A window's connected account and how its payment reaches it."""

    account_id: str
    charge: Charge
    application_fee_amount: int | None = None
    on_behalf_of: bool = False

    @property
    def stripe_account(self) -> str | None:
        """The account the Checkout Sessions live on: the connected one for direct charges,
        the platform (None) for destination charges."""
        return self.account_id if self.charge is Charge.DIRECT else None


def checked_connect(connect: Connect, amount: int | None) -> Connect:
    """Refuse what Stripe would refuse, before any call: a malformed account id, a fee above
    the amount, `on_behalf_of` on a direct charge (the account already is the merchant)."""
    if not ACCOUNT_ID.fullmatch(connect.account_id):
        raise InvalidWindow("connect.accountId must be a Stripe account id (acct_…)")
    fee = connect.application_fee_amount
    if fee is not None and (fee < 0 or (amount is not None and fee > amount)):
        raise InvalidWindow("connect.applicationFeeAmount must be from 0 to the amount")
    if connect.on_behalf_of and connect.charge is Charge.DIRECT:
        raise InvalidWindow(
            "connect.onBehalfOf applies to destination charges only: a direct charge is "
            "already made on the connected account"
        )
    return connect
