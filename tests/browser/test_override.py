"""Extend and terminate from the page: who sees the controls, keyboard use, and the answers."""

from __future__ import annotations

import re
import uuid

import pytest
from checkout_page import CheckoutPage
from conftest import OpenPage
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def _maker_id() -> str:
    return f"maker-{uuid.uuid4().hex[:8]}"


def _tab_to(checkout: CheckoutPage, element_id: str, limit: int = 15) -> None:
    """Move focus with Tab alone until it lands on `element_id`."""
    page = checkout.page
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == element_id:
            return
    raise AssertionError(f"Tab never reached #{element_id}")


def test_buyer_sees_no_override_controls(open_page: OpenPage) -> None:
    checkout = open_page()
    window = checkout.api.open_window(windowMinutes=60)
    checkout.open(window["sessionId"])
    checkout.page.wait_for_load_state("networkidle")

    expect(checkout.page.locator("#override")).to_be_hidden()
    expect(checkout.page.locator("#extend-minutes")).to_have_count(0)
    expect(checkout.page.locator("#terminate-button")).to_have_count(0)


@pytest.mark.parametrize(
    ("viewer", "maker_may_override", "sees_controls"),
    [("admin", False, True), ("maker", True, True), ("maker", False, False)],
    ids=["admin", "maker-allowed-by-policy", "maker-not-allowed"],
)
def test_override_controls_follow_role_and_policy(
    open_page: OpenPage, viewer: str, maker_may_override: bool, sees_controls: bool
) -> None:
    checkout = open_page()
    maker = _maker_id()
    checkout.api.set_policy(maker, makers_may_override=maker_may_override)
    window = checkout.api.open_window(makerId=maker, windowMinutes=60)
    checkout.open(window["sessionId"], role=viewer, maker_id=maker if viewer == "maker" else None)
    checkout.page.wait_for_load_state("networkidle")

    controls = checkout.page.get_by_role("region", name="Manage this payment window")
    if sees_controls:
        expect(controls).to_be_visible()
        expect(checkout.page.get_by_role("spinbutton", name="Extend by (minutes)")).to_be_visible()
        expect(checkout.page.get_by_role("button", name="Extend window")).to_be_visible()
        expect(checkout.page.get_by_role("button", name="Close window now")).to_be_visible()
    else:
        expect(checkout.page.locator("#override")).to_be_hidden()
        expect(checkout.page.locator("#extend-minutes")).to_have_count(0)


def test_extension_by_keyboard_updates_the_page_in_place(open_page: OpenPage) -> None:
    checkout = open_page()
    window = checkout.api.open_window(windowMinutes=30)
    checkout.open(window["sessionId"], role="admin", sub="ops-1")
    page = checkout.page
    expect(page.locator("#extend-minutes")).to_be_visible()
    page.evaluate("window.__samePage = true")
    pay_by_before = checkout.pay_by.get_attribute("datetime")
    assert 28 * 60 <= checkout.seconds_left() <= 30 * 60

    page.locator("body").focus()
    _tab_to(checkout, "extend-minutes")
    page.keyboard.press("Control+A")
    page.keyboard.type("15")
    page.keyboard.press("Enter")

    expect(checkout.announcer).to_have_text(
        re.compile(
            r"^Extended by 15 minutes\. The buyer now has until "
            r"(\w{3} \d+ \w{3}, )?\d\d:\d\d (GMT|BST)\.$"
        )
    )
    assert 43 * 60 <= checkout.seconds_left() <= 45 * 60
    assert checkout.pay_by.get_attribute("datetime") != pay_by_before
    assert checkout.pay_by.inner_text() in checkout.announcer.inner_text()
    assert page.evaluate("document.activeElement.id") == "extend-minutes"
    assert page.evaluate("window.__samePage") is True
    expect(page.locator("#override-error")).to_be_hidden()
    assert checkout.api.status(window["sessionId"])["version"] == 2


def test_extension_over_policy_says_how_many_minutes_are_left(open_page: OpenPage) -> None:
    checkout = open_page()
    maker = _maker_id()
    checkout.api.set_policy(maker, max_minutes=20, makers_may_override=True)
    window = checkout.api.open_window(makerId=maker, windowMinutes=30)
    checkout.open(window["sessionId"], role="maker", maker_id=maker)
    minutes = checkout.page.locator("#extend-minutes")
    minutes.fill("45")
    minutes.press("Enter")

    error = checkout.page.locator("#override-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("20 minutes are still allowed")
    expect(minutes).to_have_attribute("aria-invalid", "true")
    expect(checkout.announcer).to_contain_text("20 minutes are still allowed")
    expect(minutes).to_be_focused()
    assert checkout.api.status(window["sessionId"])["version"] == 1


def test_changing_a_window_that_already_closed_is_refused_in_words(open_page: OpenPage) -> None:
    checkout = open_page()
    window = checkout.api.open_window(windowMinutes=30)
    checkout.open(window["sessionId"], role="admin")
    expect(checkout.page.locator("#extend-minutes")).to_be_visible()
    # Someone else closes it; with the event stream off, the page has not heard yet.
    terminated = checkout.api.override(window["sessionId"], action="terminate")
    assert terminated.status_code == 200, terminated.text

    checkout.page.locator("#extend-button").click()
    error = checkout.page.locator("#override-error")
    expect(error).to_have_text("This payment window is no longer open, so it cannot be changed.")
    expect(checkout.announcer).to_have_text(
        "This payment window is no longer open, so it cannot be changed."
    )


def test_terminate_takes_two_presses_and_closes_the_window(open_page: OpenPage) -> None:
    checkout = open_page()
    window = checkout.api.open_window(windowMinutes=30)
    checkout.open(window["sessionId"], role="admin")
    page = checkout.page
    terminate = page.locator("#terminate-button")

    terminate.click()
    expect(terminate).to_have_text("Confirm: close window now")
    expect(checkout.announcer).to_contain_text("Press again to close the payment window.")
    assert checkout.api.status(window["sessionId"])["status"] == "open"

    terminate.click()
    expect(checkout.countdown).to_have_text("The payment window has closed")
    expect(checkout.main).to_have_attribute("data-state", "closed")
    expect(checkout.pay_button).to_be_hidden()
    expect(checkout.announcer).to_have_text("Payment window closed. The buyer can no longer pay.")
    expect(page.get_by_role("alert")).to_have_text("The payment window has closed")
    expect(terminate).to_have_attribute("aria-disabled", "true")
    expect(terminate).to_be_focused()
    body = checkout.api.status(window["sessionId"])
    assert body["status"] == "expired" and body["reason"] is not None
