"""Assistive technology: a silent timer, a status region that speaks at milestones, one alert."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest
from checkout_page import assert_no_axe_violations
from conftest import OpenPage
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

# Records every change of the status and alert regions with the (faked) time it happened at.
WATCH_REGIONS = """() => {
  window.__spoken = [];
  window.__focusMoves = 0;
  for (const id of ['announcer', 'alert']) {
    const node = document.querySelector('payment-window-timer').shadowRoot.getElementById(id);
    new MutationObserver(() => {
      window.__spoken.push({ region: id, text: node.textContent, at: performance.now() });
    }).observe(node, { childList: true, characterData: true, subtree: true });
  }
  document.addEventListener('focusin', () => { window.__focusMoves += 1; }, true);
  document.addEventListener('focusout', () => { window.__focusMoves += 1; }, true);
}"""

CONTRAST = """() => {
  const rgb = (value) => value.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const luminance = (value) => {
    const [r, g, b] = rgb(value).map((c) => {
      const s = c / 255;
      return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const ratio = (a, b) => {
    const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
  };
  const box = document.querySelector('payment-window-timer').shadowRoot.getElementById('warning');
  const background = getComputedStyle(box).backgroundColor;
  const text = getComputedStyle(box.querySelector('p')).color;
  const icon = getComputedStyle(box.querySelector('.warning-icon')).fill;
  return { text: ratio(text, background), icon: ratio(icon, background), background, fill: icon };
}"""


def _spoken(page: Any, region: str) -> list[dict[str, Any]]:
    changes: list[dict[str, Any]] = page.evaluate("window.__spoken")
    return [change for change in changes if change["region"] == region and change["text"]]


def test_countdown_is_a_silent_named_timer(open_page: OpenPage) -> None:
    checkout = open_page()
    window = checkout.api.open_window(windowMinutes=45, auctionId="auc-aria-1", amount=9_900)
    checkout.open(window["sessionId"])

    timer = checkout.page.get_by_role("timer", name="Time left to pay")
    expect(timer).to_be_visible()
    expect(timer).to_have_attribute("aria-live", "off")
    expect(timer).to_have_attribute("id", "countdown")
    status = checkout.page.get_by_role("status")
    expect(status).to_have_attribute("aria-live", "polite")
    expect(status).to_have_text("")
    expect(checkout.page.get_by_role("alert")).to_have_text("")
    expect(checkout.main).to_match_aria_snapshot(
        """
        - main:
          - heading "Complete your payment" [level=1]
          - term: Auction
          - definition: auc-aria-1
          - term: Amount
          - definition: €99.00
          - region "Time left to pay":
            - paragraph: Time left to pay
            - timer "Time left to pay": /^4[45] mins \\d+ secs$/
            - paragraph:
              - text: Pay by
              - time: /^(\\w{3} \\d+ \\w{3}, )?\\d\\d:\\d\\d (GMT|BST)$/
          - paragraph:
            - strong: Less than an hour left.
            - text: "Please pay soon: when the window closes, this item goes to someone else."
          - status
          - alert
          - button "Pay now"
        """
    )


def test_status_region_speaks_only_at_the_milestones(open_page: OpenPage) -> None:
    checkout = open_page()
    window = checkout.api.open_window(windowMinutes=62)
    checkout.page.clock.install()
    checkout.route_status(follow_device=True)
    checkout.open(window["sessionId"])
    page = checkout.page
    expect(checkout.announcer).to_have_text("")
    expect(page.locator("#warning")).to_be_hidden()
    checkout.pay_button.focus()
    page.evaluate(WATCH_REGIONS)

    page.clock.run_for("01:01:30")  # 30 s left

    spoken = _spoken(page, "announcer")
    assert [change["text"] for change in spoken] == [
        "1 hour left to pay",
        "30 minutes left to pay",
        "15 minutes left to pay",
        "5 minutes left to pay",
        "1 minute left to pay",
    ]
    gaps = [later["at"] - earlier["at"] for earlier, later in itertools.pairwise(spoken)]
    assert min(gaps) >= 60_000, gaps
    assert _spoken(page, "alert") == []
    assert page.evaluate("window.__focusMoves") == 0
    assert page.evaluate("document.activeElement.id") == "pay-button"
    expect(page.locator("#warning")).to_be_visible()


def test_warning_under_an_hour_is_worded_and_legible(open_page: OpenPage) -> None:
    checkout = open_page()
    window = checkout.api.open_window(windowMinutes=59)
    checkout.open(window["sessionId"])

    warning = checkout.page.locator("#warning")
    expect(warning).to_be_visible()
    expect(warning).to_contain_text("Less than an hour left.")
    expect(warning.locator(".warning-icon")).to_be_visible()
    expect(checkout.main).to_have_attribute("data-state", "warning")
    contrast = checkout.page.evaluate(CONTRAST)
    assert contrast["text"] >= 4.5, contrast
    assert contrast["icon"] >= 3.0, contrast


def test_at_zero_the_window_closes_with_one_alert_and_the_page_stays(
    open_page: OpenPage,
) -> None:
    checkout = open_page()
    window = checkout.api.open_window(windowMinutes=2)
    checkout.page.clock.install()
    checkout.route_status(follow_device=True)
    checkout.open(window["sessionId"])
    page = checkout.page
    url = page.url
    checkout.pay_button.focus()
    page.evaluate(WATCH_REGIONS)
    page.evaluate("window.__samePage = true")

    page.clock.run_for("00:02:05")
    expect(checkout.countdown).to_have_text("The payment window has closed")
    expect(checkout.pay_button).to_be_hidden()
    expect(checkout.main).to_have_attribute("data-state", "closed")
    expect(page.get_by_role("alert")).to_have_text("The payment window has closed")
    page.clock.run_for("00:01:00")  # later ticks and resyncs do not alert again
    alerts = _spoken(page, "alert")
    assert [change["text"] for change in alerts] == ["The payment window has closed"]
    # The Pay control goes; a keyboard user's focus is not thrown back to the top of the page
    # but lands once on the heading that now says what happened.
    assert page.evaluate("document.activeElement.id") == "heading"
    expect(page.get_by_role("heading", level=1)).to_have_text("This payment window has closed")
    assert page.evaluate("window.__focusMoves") == 2  # out of the button, into the heading
    page.keyboard.press("Enter")
    assert page.url == url
    assert page.evaluate("window.__samePage") is True
    expect(page).to_have_title("Payment window closed · Checkout")
    assert re.search("closed", checkout.announcer.inner_text()) is None


@pytest.mark.parametrize("minutes", [45, 200])  # with and without the under-an-hour warning
def test_axe_finds_no_violation_on_the_checkout_page(open_page: OpenPage, minutes: int) -> None:
    checkout = open_page()
    window = checkout.api.open_window(windowMinutes=minutes)
    checkout.open(window["sessionId"])
    expect(checkout.page.get_by_role("timer", name="Time left to pay")).not_to_have_text("")

    assert_no_axe_violations(checkout.page)
