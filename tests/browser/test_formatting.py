"""Countdown text by distance to the deadline, and the tab title that carries it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from conftest import OpenPage
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("locale", "far", "near", "last"),
    [
        ("en-GB", "2 hrs 30 mins", r"4[45] mins \d+ secs?", r"\d+ secs?"),
        ("en-US", "2 hr 30 min", r"4[45] min \d+ sec", r"\d+ sec"),
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

    # Jump most of the way, then let timers run: the page resyncs after a long gap between
    # ticks, and only running timers let that resync and the next tick land (half a second
    # before the whole second, so the shown time is the rounded-up whole one).
    page.clock.fast_forward("01:44:57")
    page.clock.run_for(3500)
    # The exact second depends on when the resync's answer lands against the faked clocks;
    # what matters here is which units are shown.
    expect(checkout.countdown).to_have_text(re.compile(f"^{near}$"))  # minutes and seconds
    expect(page).to_have_title(re.compile(f"^{near} left to pay · Checkout$"))

    page.clock.fast_forward("44:12")
    page.clock.run_for(3500)
    expect(checkout.countdown).to_have_text(re.compile(f"^{last}$"))  # seconds under a minute
    expect(page).to_have_title(re.compile(f"^{last} left to pay · Checkout$"))
