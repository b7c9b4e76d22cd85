"""What the buyer sees: auction, amount, Pay button, countdown and pay-by in their own zone."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from checkout_page import iso
from conftest import OpenPage
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_page_shows_auction_amount_and_a_pay_button_to_stripe(open_page: OpenPage) -> None:
    checkout = open_page(locale="en-GB")
    window = checkout.api.open_window(amount=12_500, currency="eur", windowMinutes=180)
    checkout.open(window["sessionId"])

    expect(checkout.main).to_have_attribute("data-state", "open")
    expect(checkout.page.locator("#auction-id")).to_have_text(window["auctionId"])
    expect(checkout.page.locator("#amount")).to_have_text("€125.00")
    expect(checkout.countdown).to_have_text(re.compile(r"^2 hrs 59 mins$"))
    expect(checkout.pay_by).to_have_attribute("datetime", re.compile(r"^\d{4}-\d\d-\d\dT"))
    expect(checkout.pay_by).not_to_have_text("…")
    pay = checkout.page.get_by_role("button", name="Pay now")
    expect(pay).to_be_enabled()
    expect(pay).to_have_attribute("data-checkout-url", window["checkoutUrl"])

    # The button takes the buyer to Stripe's hosted checkout.
    checkout.page.route(
        window["checkoutUrl"],
        lambda route: route.fulfill(
            body="<title>Stripe Checkout</title>", content_type="text/html"
        ),
    )
    pay.click()
    expect(checkout.page).to_have_url(window["checkoutUrl"])
    expect(checkout.page).to_have_title("Stripe Checkout")


def test_amount_follows_the_viewer_locale(open_page: OpenPage) -> None:
    checkout = open_page(locale="en-US", timezone_id="America/New_York")
    window = checkout.api.open_window(amount=4_999, currency="usd")
    checkout.open(window["sessionId"])
    expect(checkout.page.locator("#amount")).to_have_text("$49.99")


# A deadline of 14:45 UTC is 15:45 in Berlin in winter (CET) and 16:45 in summer (CEST); the
# summer case uses 13:45 UTC so both read 15:45. en-US's short zone name would be "GMT+1",
# which tells a reader little, so the page spells the zone out for that locale.
@pytest.mark.parametrize(
    ("locale", "deadline", "expected"),
    [
        ("en-GB", datetime(2026, 1, 15, 14, 45, tzinfo=UTC), "15:45 CET"),
        ("en-GB", datetime(2026, 7, 15, 13, 45, tzinfo=UTC), "15:45 CEST"),
        (
            "en-US",
            datetime(2026, 1, 15, 14, 45, tzinfo=UTC),
            "3:45 PM Central European Standard Time",
        ),
        (
            "en-US",
            datetime(2026, 7, 15, 13, 45, tzinfo=UTC),
            "3:45 PM Central European Summer Time",
        ),
    ],
    ids=["en-GB-january", "en-GB-july", "en-US-january", "en-US-july"],
)
def test_pay_by_is_in_the_viewer_zone_and_locale(
    open_page: OpenPage, locale: str, deadline: datetime, expected: str
) -> None:
    checkout = open_page(locale=locale, timezone_id="Europe/Berlin")
    window = checkout.api.open_window(windowMinutes=90)
    # The API only takes deadlines within a week, so the browser and the server's answer are
    # moved to January or July together: the device clock, and the status body's times.
    checkout.page.clock.install(time=deadline - timedelta(minutes=42))
    checkout.route_status(follow_device=True, expires_at=deadline)
    checkout.open(window["sessionId"])

    expect(checkout.pay_by).to_have_text(expected)
    expect(checkout.pay_by).to_have_attribute("datetime", iso(deadline))
    expect(checkout.countdown).to_have_text(re.compile(r"^4[12] min"))
