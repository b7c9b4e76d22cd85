"""A picture of the buyer's view with under an hour left, for docs/checkout-page.png."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from checkout_page import iso
from conftest import OpenPage
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "checkout-page.png"


def test_screenshot_of_the_buyer_view_with_42_minutes_left(open_page: OpenPage) -> None:
    checkout = open_page(locale="en-GB", timezone_id="Europe/London")
    window = checkout.api.open_window(
        auctionId=f"auc-{random.randint(10_000, 99_999)}",
        amount=18_450,
        currency="gbp",
        expiresAt=iso(datetime.now(UTC) + timedelta(minutes=42, seconds=30)),
    )
    page = checkout.page
    page.set_viewport_size({"width": 640, "height": 570})
    checkout.open(window["sessionId"])
    expect(page.locator("#warning")).to_be_visible()
    expect(checkout.countdown).to_have_text(re.compile(r"^42 mins \d+ secs$"))
    page.mouse.move(0, 0)

    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=SCREENSHOT, full_page=True, animations="disabled")
    assert SCREENSHOT.stat().st_size > 10_000
