"""Server events change the page in place: from a routed stream, and from the real endpoint."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from checkout_page import iso, parse_iso
from conftest import OpenPage
from playwright.sync_api import Route, expect

pytestmark = pytest.mark.browser


def test_extended_event_moves_the_deadline_in_place(open_page: OpenPage) -> None:
    checkout = open_page(sse=True)
    window = checkout.api.open_window(windowMinutes=30)
    later = parse_iso(window["expiresAt"]) + timedelta(minutes=20)
    streams: list[str] = []

    def stream(route: Route) -> None:
        streams.append(route.request.url)
        if len(streams) > 1:
            route.fulfill(status=204)  # the page stops listening
            return
        data = json.dumps({"expiresAt": iso(later), "version": 2, "status": "open"})
        route.fulfill(
            status=200,
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"},
            body=f": hello\n\nid: 2\nevent: extended\ndata: {data}\n\n",
        )

    checkout.page.route("**/payments/checkout/*/events", stream)
    checkout.open(window["sessionId"])
    checkout.page.evaluate("window.__samePage = true")

    expect(checkout.pay_by).to_have_attribute("datetime", iso(later))
    expect(checkout.announcer).to_have_text(
        re.compile(r"^Payment window extended — pay by (\w{3} \d+ \w{3}, )?\d\d:\d\d (GMT|BST)$")
    )
    assert 48 * 60 <= checkout.seconds_left() <= 50 * 60
    assert checkout.page.evaluate("window.__samePage") is True
    # The request carried the token as a header, never in the URL.
    assert "token" not in streams[0]


def test_real_event_stream_carries_extension_and_termination(open_page: OpenPage) -> None:
    checkout = open_page(sse=True)
    window = checkout.api.open_window(windowMinutes=30)
    checkout.open(window["sessionId"])
    expect(checkout.countdown).to_have_text(re.compile(r"^29 mins"))
    checkout.api.wait_for_viewer(window["sessionId"])

    extended = checkout.api.override(window["sessionId"], action="extend", minutes=60)
    assert extended.status_code == 200, extended.text
    expect(checkout.countdown).to_have_text(re.compile(r"^1 hr 29 mins$"))
    deadline = iso(parse_iso(extended.json()["expiresAt"]))
    expect(checkout.pay_by).to_have_attribute("datetime", deadline)

    terminated = checkout.api.override(window["sessionId"], action="terminate")
    assert terminated.status_code == 200, terminated.text
    expect(checkout.countdown).to_have_text("The payment window has closed")
    # No Pay control once closed, and no stale countdown: what happened, and what next.
    expect(checkout.pay_button).to_be_hidden()
    expect(checkout.page.get_by_role("heading", level=1)).to_have_text(
        "This payment window has closed"
    )
    expect(checkout.page.get_by_role("alert")).to_have_text("The payment window has closed")
