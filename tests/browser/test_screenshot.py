"""A picture of the buyer's view with under an hour left; `make docs` keeps it as
docs/checkout-page.png, a plain test run writes it to a temporary folder."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from checkout_page import iso
from conftest import OpenPage, screenshot_path
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_screenshot_of_the_buyer_view_with_42_minutes_left(
    open_page: OpenPage, tmp_path: Path
) -> None:
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

    screenshot = screenshot_path(tmp_path, "checkout-page.png")
    page.screenshot(path=screenshot, full_page=True, animations="disabled")
    assert screenshot.stat().st_size > 10_000
