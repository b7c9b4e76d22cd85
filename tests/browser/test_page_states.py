"""The service's checkout page in each state, reached through the API, Stripe's webhooks and the
expiry task: what the buyer reads (and what the maker and the admin read instead).

Each view is checked by axe and photographed (`make docs` keeps the pictures in docs/).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from checkout_page import Api, assert_no_axe_violations, iso
from conftest import SUPPORT_CONTACT, OpenPage, screenshot_path
from devstripe.testing import RunningStripe
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

COMPLETED = "checkout.session.completed"
FAILED = "checkout.session.async_payment_failed"


def _visit(
    page: Page, api: Api, window: dict[str, Any], role: str = "buyer", **claims: Any
) -> Page:
    token = api.token(role, None, claims.get("maker_id"))
    page.goto(f"{api.base_url}/checkout/{window['sessionId']}#token={token}")
    expect(page.locator("#checkout")).not_to_have_attribute("data-state", "loading")
    return page


def _photo(page: Page, tmp_path: Path, name: str) -> None:
    page.set_viewport_size({"width": 640, "height": 400})  # full_page grows it to the card
    page.mouse.move(0, 0)
    page.wait_for_timeout(100)
    page.screenshot(path=screenshot_path(tmp_path, name), full_page=True, animations="disabled")


def _no_pay_control_and_no_countdown(page: Page) -> None:
    expect(page.get_by_role("button", name="Pay now")).to_have_count(0)
    expect(page.locator("#pay-button")).to_be_hidden()
    expect(page.get_by_text("Time left to pay")).to_be_hidden()
    expect(page.get_by_text(re.compile(r"\d+ (mins?|secs?|hrs?)\b"))).to_have_count(0)


def _contact_line(page: Page) -> None:
    contact = page.locator("#contact")
    expect(contact).to_be_visible()
    expect(contact.get_by_role("link")).to_have_attribute("href", SUPPORT_CONTACT)


def test_paid_says_payment_received_and_what_happens_next(
    open_page: OpenPage, tmp_path: Path
) -> None:
    checkout = open_page()
    api = checkout.api
    window = api.open_window(windowMinutes=90)
    api.stripe_webhook(window, COMPLETED, payment_status="paid")
    page = _visit(checkout.page, api, window)

    expect(page.get_by_role("heading", level=1)).to_have_text("Payment received")
    expect(page.locator("#checkout")).to_have_attribute("data-state", "paid")
    expect(page.locator("#outcome")).to_contain_text("The seller has been told")
    _no_pay_control_and_no_countdown(page)
    expect(page).to_have_title("Paid · Checkout")
    assert_no_axe_violations(page)
    _photo(page, tmp_path, "checkout-paid.png")


def test_awaiting_confirmation_says_so_and_asks_for_nothing(
    open_page: OpenPage, tmp_path: Path
) -> None:
    checkout = open_page()
    api = checkout.api
    window = api.open_window(windowMinutes=90)
    api.stripe_webhook(window, COMPLETED, payment_status="unpaid")
    page = _visit(checkout.page, api, window)

    expect(page.get_by_role("heading", level=1)).to_have_text("Payment is being confirmed")
    expect(page.locator("#outcome")).to_contain_text("you do not need to pay again")
    _no_pay_control_and_no_countdown(page)
    _contact_line(page)
    assert_no_axe_violations(page)
    _photo(page, tmp_path, "checkout-awaiting.png")


def _closed(api: Api, stripe: RunningStripe, reason: str) -> dict[str, Any]:
    """A window closed for `reason`, the way it happens in production."""
    if reason == "admin_terminated":
        window = api.open_window(windowMinutes=90)
        assert api.override(window["sessionId"], action="terminate").status_code == 200
    elif reason == "payment_failed":
        window = api.open_window(windowMinutes=90)
        api.stripe_webhook(window, COMPLETED, payment_status="unpaid")
        api.stripe_webhook(window, FAILED, payment_status="unpaid")
    else:
        soon = datetime.now(UTC) + timedelta(seconds=2)
        window = api.open_window(expiresAt=iso(soon))
        if reason == "checkout_missing":
            # Stripe no longer knows the window's Checkout Session.
            stripe.app.store.forget(window["checkoutUrl"].rstrip("/").rsplit("/", 1)[-1])
        api.wait_until_due(window["sessionId"])
        api.expire_due()
    body = api.status(window["sessionId"])
    assert (body["status"], body["reason"]) == ("expired", reason), body
    return window


CLOSED_WORDS = {
    "window_elapsed": "The time to pay ran out before a payment arrived.",
    "admin_terminated": "The marketplace closed this payment window.",
    "payment_failed": "The payment did not go through",
    "checkout_missing": "The payment page for this purchase no longer exists",
}


@pytest.mark.parametrize("reason", list(CLOSED_WORDS))
def test_closed_says_why_what_happens_to_the_item_and_whom_to_ask(
    open_page: OpenPage, stripe_server: RunningStripe, tmp_path: Path, reason: str
) -> None:
    checkout = open_page()
    window = _closed(checkout.api, stripe_server, reason)
    page = _visit(checkout.page, checkout.api, window)

    expect(page.get_by_role("heading", level=1)).to_have_text("This payment window has closed")
    expect(page.locator("#outcome-text")).to_contain_text(CLOSED_WORDS[reason])
    expect(page.locator("#outcome-item")).to_contain_text("no longer reserved for you")
    _no_pay_control_and_no_countdown(page)
    _contact_line(page)
    expect(page.get_by_text("Complete your payment")).to_have_count(0)
    assert_no_axe_violations(page)
    _photo(page, tmp_path, f"checkout-closed-{reason.replace('_', '-')}.png")


def _staff_words_only(page: Page) -> None:
    for buyer_words in ("Please pay soon", "Complete your payment", "left to pay", "Pay by"):
        expect(page.get_by_text(buyer_words)).to_have_count(0)
    expect(page.get_by_role("button", name="Pay now")).to_have_count(0)
    expect(page.locator("#pay-button")).to_be_hidden()


def test_the_maker_sees_the_buyers_deadline_and_the_controls(
    open_page: OpenPage, tmp_path: Path
) -> None:
    checkout = open_page()
    api = checkout.api
    maker = f"maker-{uuid.uuid4().hex[:8]}"
    api.set_policy(maker, makers_may_override=True)
    window = api.open_window(makerId=maker, windowMinutes=50)
    page = _visit(checkout.page, api, window, role="maker", maker_id=maker)

    expect(page.get_by_role("heading", level=1)).to_have_text("Payment window")
    expect(page.get_by_role("timer", name="Time left for the buyer to pay")).to_have_text(
        re.compile(r"^4\d mins")
    )
    expect(page.locator("#pay-by-line")).to_have_text(re.compile(r"^Deadline for the buyer: "))
    expect(page.locator("#state")).to_have_text("Open: the buyer can pay")
    expect(page.locator("#warning")).to_contain_text("The buyer has not paid yet.")
    expect(page.get_by_role("button", name="Extend window")).to_be_visible()
    _staff_words_only(page)
    assert_no_axe_violations(page)
    _photo(page, tmp_path, "checkout-maker.png")


def test_a_maker_whose_policy_forbids_overrides_is_told_so(open_page: OpenPage) -> None:
    checkout = open_page()
    api = checkout.api
    maker = f"maker-{uuid.uuid4().hex[:8]}"
    api.set_policy(maker, makers_may_override=False)
    window = api.open_window(makerId=maker, windowMinutes=120)
    page = _visit(checkout.page, api, window, role="maker", maker_id=maker)

    expect(page.locator("#policy-note")).to_have_text(
        re.compile(r"^Your policy does not allow makers to extend or close payment windows\.")
    )
    expect(page.get_by_role("button", name="Extend window")).to_have_count(0)
    _staff_words_only(page)
    assert_no_axe_violations(page)


def test_the_admin_sees_the_state_and_the_controls_and_after_closing_the_reason(
    open_page: OpenPage, tmp_path: Path
) -> None:
    checkout = open_page(sse=True)
    api = checkout.api
    window = api.open_window(windowMinutes=180)
    page = _visit(checkout.page, api, window, role="admin")

    expect(page.get_by_role("heading", level=1)).to_have_text("Payment window")
    expect(page.get_by_role("timer", name="Time left for the buyer to pay")).to_have_text(
        re.compile(r"^2 hrs 5\d mins$")
    )
    expect(page.get_by_role("button", name="Close window now")).to_be_visible()
    _staff_words_only(page)
    assert_no_axe_violations(page)
    _photo(page, tmp_path, "checkout-admin.png")

    assert api.override(window["sessionId"], action="terminate").status_code == 200
    expect(page.locator("#state")).to_have_text("Closed")
    expect(page.locator("#outcome-text")).to_have_text("Closed by the marketplace (an override).")
    _staff_words_only(page)


@pytest.mark.parametrize("token", ["expired", "missing"])
def test_an_unusable_link_says_what_to_do_without_promising_an_email(
    open_page: OpenPage, token: str
) -> None:
    checkout = open_page()
    api = checkout.api
    window = api.open_window(windowMinutes=60)
    url = f"{api.base_url}/checkout/{window['sessionId']}"
    if token == "expired":
        stale = jwt.encode(
            {"sub": "buyer-1", "role": "buyer", "iat": 1_700_000_000, "exp": 1_700_000_600},
            api.settings.jwt_secret.get_secret_value(),  # type: ignore[union-attr]
            algorithm="HS256",
        )
        url += f"#token={stale}"
    page = checkout.page
    page.goto(url)

    error = page.locator("#page-error")
    expect(error).to_contain_text("open the payment page again")
    expect(error).not_to_contain_text(re.compile("e-?mail", re.IGNORECASE))
    expect(page.get_by_role("heading", level=1)).to_have_text("This link cannot be used")
    expect(page.locator("#pay-button")).to_be_hidden()
    assert_no_axe_violations(page)


def test_the_page_speaks_german_to_a_german_browser(open_page: OpenPage, tmp_path: Path) -> None:
    checkout = open_page(locale="de-DE", timezone_id="Europe/Berlin", sse=True)
    api = checkout.api
    window = api.open_window(windowMinutes=45, amount=18_450)
    page = _visit(checkout.page, api, window)

    expect(page.get_by_role("heading", level=1)).to_have_text("Schließen Sie Ihre Zahlung ab")
    expect(page.locator("#amount")).to_have_text(re.compile(r"^184,50\s€$"))
    expect(page.get_by_role("button", name="Jetzt bezahlen")).to_be_visible()
    expect(page.get_by_role("timer", name="Verbleibende Zeit zum Bezahlen")).to_have_text(
        re.compile(r"^44 Min\., \d+ Sek\.$")
    )
    assert page.evaluate("document.documentElement.lang") == "de-DE"
    assert_no_axe_violations(page)
    _photo(page, tmp_path, "checkout-page-de.png")

    assert api.override(window["sessionId"], action="terminate").status_code == 200
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Dieses Zahlungsfenster ist geschlossen"
    )
    expect(page.locator("#outcome-text")).to_have_text(
        "Der Marktplatz hat dieses Zahlungsfenster geschlossen. Es wurde nichts abgebucht."
    )
