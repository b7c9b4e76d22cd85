"""The countdown: computed from the deadline, aligned to its seconds, on the server's clock."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from conftest import OpenPage
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

# Far enough from the real date that no real timer could pass for a faked one.
T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)

# A tab coming back (or going away), and a page restored from the back/forward cache.
BECOME = """() => {
  Object.defineProperty(document, 'visibilityState', { value: 'STATE', configurable: true });
  document.dispatchEvent(new Event('visibilitychange'));
}"""
RESTORED = (
    "() => window.dispatchEvent(new PageTransitionEvent('pageshow', { persisted: PERSISTED }))"
)


def test_remaining_time_is_recomputed_from_the_deadline(open_page: OpenPage) -> None:
    checkout = open_page()
    window = checkout.api.open_window(windowMinutes=180)
    checkout.page.clock.install()
    checkout.route_status(follow_device=True)
    checkout.open(window["sessionId"])
    expect(checkout.countdown).to_have_text("2 hrs 59 mins")

    # Every tick of the hour runs, five minutes at a time: the page resyncs every five minutes,
    # and each answer lands before the clock moves on, as it would when minutes are real (an
    # answer read while the fake clock raced ahead would be a round trip of minutes).
    for _ in range(12):
        checkout.page.clock.run_for("05:00")
        checkout.settle()
    # An hour less, to the minute: 2:59:59 less an hour is on a minute's boundary, where a
    # resync that moves the server-time estimate by part of a second shows "2 hrs 0 mins".
    an_hour_less = re.compile(r"^(1 hr 59 mins|2 hrs 0 mins)")
    expect(checkout.countdown).to_have_text(an_hour_less)
    expect(checkout.page).to_have_title(an_hour_less)

    checkout.page.clock.fast_forward("01:30:00")
    expect(checkout.countdown).to_have_text(re.compile(r"^29 mins \d+ secs$"))
    assert 29 * 60 - 3 <= checkout.seconds_left() <= 29 * 60 + 59


def test_ticks_land_just_after_each_second_of_the_deadline(open_page: OpenPage) -> None:
    checkout = open_page()
    window = checkout.api.open_window(windowMinutes=60)
    # A paused clock, and a deadline half a second off a whole second from it: the displayed
    # second must change at the deadline's second boundaries, not the page's.
    checkout.page.clock.install(time=T0 - timedelta(seconds=1))
    checkout.page.clock.pause_at(T0)
    checkout.route_status(follow_device=True, expires_at=T0 + timedelta(seconds=100.5))
    checkout.open(window["sessionId"])
    expect(checkout.countdown).to_have_text("1 min 41 secs")

    checkout.page.clock.run_for(490)  # 100.010 s left
    expect(checkout.countdown).to_have_text("1 min 41 secs")
    checkout.page.clock.run_for(30)  # 99.980 s left: the tick 10 ms past the boundary ran
    expect(checkout.countdown).to_have_text("1 min 40 secs")
    checkout.page.clock.run_for(960)  # 99.020 s left
    expect(checkout.countdown).to_have_text("1 min 40 secs")
    checkout.page.clock.run_for(30)  # 98.990 s left
    expect(checkout.countdown).to_have_text("1 min 39 secs")


def test_countdown_follows_the_server_clock_not_the_device(open_page: OpenPage) -> None:
    checkout = open_page()
    window = checkout.api.open_window(windowMinutes=120)
    checkout.route_status(server_ahead=timedelta(minutes=5))
    checkout.open(window["sessionId"])
    # The device says 1 hr 59 mins are left; the server, five minutes ahead, says 1 hr 54.
    expect(checkout.countdown).to_have_text("1 hr 54 mins")


def test_device_clock_jump_does_not_move_the_countdown(open_page: OpenPage) -> None:
    checkout = open_page()
    window = checkout.api.open_window(windowMinutes=60)
    checkout.page.clock.install(time=T0 - timedelta(seconds=1))
    checkout.page.clock.pause_at(T0)
    route = checkout.route_status(follow_device=True, expires_at=T0 + timedelta(minutes=30))
    checkout.open(window["sessionId"])
    expect(checkout.countdown).to_have_text("30 mins 0 secs")
    requests_before = len(checkout.status_requests)

    # The wall clock leaps an hour; monotonic time (and the server) see one second pass.
    checkout.page.clock.set_system_time(T0 + timedelta(hours=1))
    route.server_ahead = -timedelta(hours=1)
    checkout.page.clock.run_for(1100)
    expect(checkout.countdown).to_have_text("29 mins 59 secs")
    # Past the page's resync gap, it asks the server which clock was right...
    checkout.page.clock.run_for(1000)
    expect(checkout.countdown).to_have_text("29 mins 58 secs")
    checkout.wait_for_status_requests(requests_before + 1)
    checkout.settle()
    # ...and the answer changes nothing.
    checkout.page.clock.run_for(1000)
    expect(checkout.countdown).to_have_text("29 mins 57 secs")


def test_page_resyncs_when_it_comes_back(open_page: OpenPage) -> None:
    checkout = open_page()
    window = checkout.api.open_window(windowMinutes=60)
    checkout.page.clock.install()
    checkout.route_status(follow_device=True)
    checkout.open(window["sessionId"])
    checkout.settle()
    seen = len(checkout.status_requests)
    page = checkout.page

    def after_the_handlers_ran() -> None:
        """Wait until a marker request the page makes after the events shows up: the page's
        handlers run synchronously and requests are reported in the order they are made, so
        any status request those events caused has been counted by then."""
        with page.expect_request(lambda request: request.url.endswith("/healthz?marker")):
            page.evaluate("() => { fetch('/healthz?marker'); }")

    def comes_back(script: str) -> None:
        nonlocal seen
        page.clock.fast_forward(3000)  # past the page's resync coalescing gap
        page.evaluate(script)
        seen += 1
        checkout.wait_for_status_requests(seen)
        after_the_handlers_ran()
        assert len(checkout.status_requests) == seen
        checkout.settle()

    comes_back(BECOME.replace("STATE", "visible"))
    comes_back("() => window.dispatchEvent(new Event('online'))")
    comes_back(RESTORED.replace("PERSISTED", "true"))

    # Going hidden, or a first (not restored) pageshow, is no reason to ask.
    page.clock.fast_forward(3000)
    page.evaluate(BECOME.replace("STATE", "hidden"))
    page.evaluate(RESTORED.replace("PERSISTED", "false"))
    after_the_handlers_ran()
    assert len(checkout.status_requests) == seen


def test_offline_keeps_counting_and_says_the_time_may_be_approximate(
    open_page: OpenPage,
) -> None:
    checkout = open_page()
    checkout.page.clock.install()  # time flows as usual, and the test may move it on
    window = checkout.api.open_window(windowMinutes=30)
    checkout.open(window["sessionId"])
    connection = checkout.page.locator("#connection")
    expect(connection).to_be_hidden()
    # A start-up status request still in flight would land and rightly say "reachable".
    checkout.wait_for_status_requests(3)
    checkout.page.wait_for_load_state("networkidle")

    checkout.page.context.set_offline(True)
    expect(connection).to_be_visible()
    expect(connection).to_contain_text("may be approximate")
    before = checkout.seconds_left()
    started = time.monotonic()
    checkout.page.clock.run_for(5000)
    counted = before - checkout.seconds_left()
    # The five seconds moved, plus what real time added meanwhile (the clock still flows).
    assert 5 <= counted <= 5 + (time.monotonic() - started) + 1, counted
    expect(checkout.pay_button).to_be_enabled()

    checkout.page.context.set_offline(False)
    expect(connection).to_be_hidden()
    expect(checkout.countdown).to_have_text(re.compile(r"^29 mins \d+ secs$"))
