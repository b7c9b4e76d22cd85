"""Countdown text by distance to the deadline, and the tab title that carries it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from conftest import OpenPage
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("locale", "far", "near", "last"),
    [
        ("en-GB", "2 hrs 30 mins", "45 mins 0 secs", "45 secs"),
        ("en-US", "2 hr 30 min", "45 min 0 sec", "45 sec"),
    ],
)
def test_countdown_shows_coarser_units_further_out(
    open_page: OpenPage, locale: str, far: str, near: str, last: str
) -> None:
    checkout = open_page(locale=locale)
    window = checkout.api.open_window(windowMinutes=180)
    page = checkout.page
    page.clock.install(time=T0 - timedelta(seconds=1))
    page.clock.pause_at(T0)
    checkout.route_status(follow_device=True, expires_at=T0 + timedelta(hours=2, minutes=30))
    checkout.open(window["sessionId"])

    expect(checkout.countdown).to_have_text(far)  # hours and minutes
    expect(page).to_have_title(f"{far} left to pay · Checkout")

    page.clock.fast_forward("01:45:00")
    expect(checkout.countdown).to_have_text(near)  # minutes and seconds under an hour
    expect(page).to_have_title(f"{near} left to pay · Checkout")

    page.clock.fast_forward("44:15")
    expect(checkout.countdown).to_have_text(last)  # seconds under a minute
    expect(page).to_have_title(f"{last} left to pay · Checkout")
