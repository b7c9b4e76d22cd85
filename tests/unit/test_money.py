"""Stripe's minimum charge, checked before Stripe is called."""

from __future__ import annotations

import pytest
from devstripe.minimums import MINIMUM_CHARGE as STAND_IN_MINIMUMS
from devstripe.minimums import ZERO_DECIMAL as STAND_IN_ZERO_DECIMAL

from payment_window.domain import money
from payment_window.domain.errors import AmountTooSmall, InvalidWindow
from payment_window.domain.money import (
    MINIMUM_CHARGE,
    ZERO_DECIMAL,
    check_minimum,
    minimum_charge,
)


def test_the_service_and_the_stripe_stand_in_hold_the_same_minimums() -> None:
    assert MINIMUM_CHARGE == STAND_IN_MINIMUMS
    assert ZERO_DECIMAL == STAND_IN_ZERO_DECIMAL


@pytest.mark.parametrize(
    ("currency", "minimum"),
    [("usd", 50), ("EUR", 50), ("gbp", 30), ("jpy", 50), ("huf", 17500), ("dkk", 250)],
)
def test_minimum_charge_is_in_minor_units(currency: str, minimum: int) -> None:
    assert minimum_charge(currency) == minimum


def test_a_currency_stripe_lists_no_minimum_for_has_none() -> None:
    assert minimum_charge("kes") is None
    check_minimum(1, "kes")


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        (49, "eur", "the minimum charge in EUR is 0.50"),
        (29, "GBP", "the minimum charge in GBP is 0.30"),
        (49, "jpy", "the minimum charge in JPY is 50"),
        (17499, "huf", "the minimum charge in HUF is 175.00"),
    ],
)
def test_below_the_minimum_is_refused_naming_it(amount: int, currency: str, message: str) -> None:
    with pytest.raises(AmountTooSmall) as refused:
        check_minimum(amount, currency)

    assert str(refused.value) == message
    assert refused.value.minimum == amount + 1


def test_the_minimum_itself_is_allowed() -> None:
    check_minimum(50, "usd")
    check_minimum(30, "gbp")


@pytest.mark.parametrize(
    ("amount", "ok"), [(12_340, True), (12_345, False), (10, True), (1, False)]
)
def test_three_decimal_currencies_need_an_amount_ending_in_0(amount: int, ok: bool) -> None:
    if ok:
        money.check_three_decimal(amount, "KWD")
    else:
        with pytest.raises(InvalidWindow, match="must end in 0"):
            money.check_three_decimal(amount, "KWD")
    money.check_three_decimal(12_345, "usd")  # two-decimal currencies are not concerned
