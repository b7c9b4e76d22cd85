"""<payment-window-timer> on a marketplace's own page, served from another origin.

The page loads the element from the service (`/static/payment-window-timer.js`), which reads
the status, follows the live events and takes its token from the marketplace's provider; all
across origins, through the CORS the service grants to PW_CORS_ORIGINS alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from checkout_page import Api, assert_no_axe_violations, parse_iso
from conftest import screenshot_path
from marketplace_site import MarketplaceSite
from playwright.sync_api import Browser, Locator, Page, Request, expect

pytestmark = pytest.mark.browser


@pytest.fixture
def host_page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(
        locale="en-GB", timezone_id="Europe/London", viewport={"width": 640, "height": 560}
    )
    yield context.new_page()
    context.close()


def _timer(page: Page) -> Locator:
    return page.locator("payment-window-timer")


def _changes(page: Page) -> list[dict[str, Any]]:
    changes: list[dict[str, Any]] = page.evaluate("window.__changes")
    return changes


def test_the_countdown_runs_on_another_origins_page(
    host_page: Page, api: Api, marketplace: MarketplaceSite, tmp_path: Path
) -> None:
    window = api.open_window(windowMinutes=42, amount=18_450, currency="gbp")
    requests: list[Request] = []
    host_page.on("request", lambda r: requests.append(r) if "/status" in r.url else None)
    host_page.goto(marketplace.url(window["sessionId"]))

    timer = host_page.get_by_role("timer", name="Time left to pay")
    expect(timer).to_have_text(re.compile(r"^41 mins \d+ secs$"))
    expect(_timer(host_page)).to_have_attribute("phase", "warning")
    expect(host_page.locator("#pay-by")).to_have_attribute("datetime", re.compile(r"^\d{4}-"))
    expect(host_page.get_by_role("status")).to_have_attribute("aria-live", "polite")
    expect(host_page.locator("#warning")).to_contain_text("Less than an hour left.")
    # The host page heard the status body.
    first = _changes(host_page)[0]
    assert first["sessionId"] == window["sessionId"]
    assert first["status"] == "open" and first["phase"] == "warning"
    assert parse_iso(first["expiresAt"]) == parse_iso(window["expiresAt"])
    # Cross-origin, with the bearer header from the provider, never a cookie.
    api_requests = [r.all_headers() for r in requests if r.method == "GET"]
    assert api_requests and all(h.get("origin") == marketplace.origin for h in api_requests)
    assert all(h.get("authorization", "").startswith("Bearer ") for h in api_requests)
    assert "cookie" not in api_requests[0]
    assert_no_axe_violations(host_page)

    host_page.mouse.move(0, 0)
    picture = screenshot_path(tmp_path, "timer-element-light.png")
    host_page.screenshot(path=picture, full_page=True, animations="disabled")


def test_a_dark_host_page_keeps_the_element_legible(
    host_page: Page, api: Api, marketplace: MarketplaceSite, tmp_path: Path
) -> None:
    window = api.open_window(windowMinutes=42)
    host_page.goto(marketplace.url(window["sessionId"], theme="dark"))
    expect(host_page.get_by_role("timer")).to_have_text(re.compile(r"^41 mins"))
    expect(host_page.locator("#warning")).to_be_visible()
    assert_no_axe_violations(host_page)
    host_page.mouse.move(0, 0)
    picture = screenshot_path(tmp_path, "timer-element-dark.png")
    host_page.screenshot(path=picture, full_page=True, animations="disabled")


def test_an_extension_arrives_live_and_the_host_hears_it(
    host_page: Page, api: Api, marketplace: MarketplaceSite
) -> None:
    window = api.open_window(windowMinutes=30)
    host_page.goto(marketplace.url(window["sessionId"]))
    timer = host_page.get_by_role("timer")
    expect(timer).to_have_text(re.compile(r"^29 mins"))
    api.wait_for_viewer(window["sessionId"])

    extended = api.override(window["sessionId"], action="extend", minutes=60)
    assert extended.status_code == 200, extended.text

    expect(timer).to_have_text(re.compile(r"^1 hr 29 mins$"))
    expect(host_page.get_by_role("status")).to_have_text(
        re.compile(r"^Payment window extended — pay by ")
    )
    expect(_timer(host_page)).to_have_attribute("phase", "open")
    last = _changes(host_page)[-1]
    assert last["version"] == extended.json()["version"]
    assert parse_iso(last["expiresAt"]) == parse_iso(extended.json()["expiresAt"])


def test_closing_is_announced_once_and_the_countdown_goes(
    host_page: Page, api: Api, marketplace: MarketplaceSite
) -> None:
    window = api.open_window(windowMinutes=30)
    host_page.goto(marketplace.url(window["sessionId"]))
    timer = host_page.get_by_role("timer")
    expect(timer).to_have_text(re.compile(r"^29 mins"))
    api.wait_for_viewer(window["sessionId"])

    terminated = api.override(window["sessionId"], action="terminate")
    assert terminated.status_code == 200, terminated.text

    expect(timer).to_have_text("The payment window has closed")
    expect(host_page.get_by_role("alert")).to_have_text("The payment window has closed")
    expect(_timer(host_page)).to_have_attribute("phase", "closed")
    expect(host_page.locator("#pay-by-line")).to_be_hidden()
    last = _changes(host_page)[-1]
    assert (last["status"], last["reason"]) == ("expired", "admin_terminated")
    assert_no_axe_violations(host_page)


def test_a_401_is_answered_by_the_token_provider(
    host_page: Page, api: Api, marketplace: MarketplaceSite
) -> None:
    window = api.open_window(windowMinutes=90)
    # The page starts with the token it was rendered with, long expired (a 7-day window's tab).
    stale = jwt.encode(
        {"sub": "buyer-1", "role": "buyer", "iat": 1_700_000_000, "exp": 1_700_000_600},
        api.settings.jwt_secret.get_secret_value(),  # type: ignore[union-attr]
        algorithm="HS256",
    )
    answers: list[int] = []
    host_page.on(
        "response",
        lambda r: answers.append(r.status) if r.url.endswith("/status") else None,
    )
    asked = len(marketplace.token_requests)
    host_page.goto(marketplace.url(window["sessionId"], initial_token=stale))

    expect(host_page.get_by_role("timer")).to_have_text(re.compile(r"^1 hr 29 mins$"))
    assert answers[0] == 401 and 200 in answers
    assert len(marketplace.token_requests) > asked
    assert host_page.evaluate("window.__errors") == []


def test_german_words_numbers_and_announcements(
    host_page: Page, api: Api, marketplace: MarketplaceSite, tmp_path: Path
) -> None:
    window = api.open_window(windowMinutes=45, currency="eur")
    host_page.goto(marketplace.url(window["sessionId"], locale="de-DE"))

    timer = host_page.get_by_role("timer", name="Verbleibende Zeit zum Bezahlen")
    expect(timer).to_have_text(re.compile(r"^44 Min\., \d+ Sek\.$"))
    expect(host_page.locator("#pay-by-line")).to_have_text(re.compile(r"^Bezahlen bis "))
    expect(host_page.locator("#warning")).to_contain_text("Weniger als eine Stunde übrig.")
    api.wait_for_viewer(window["sessionId"])
    extended = api.override(window["sessionId"], action="extend", minutes=30)
    assert extended.status_code == 200, extended.text
    expect(host_page.get_by_role("status")).to_have_text(
        re.compile("^Zahlungsfenster verlängert \u2013 bezahlen bis ")
    )
    assert_no_axe_violations(host_page)
    host_page.mouse.move(0, 0)
    picture = screenshot_path(tmp_path, "timer-element-de.png")
    host_page.screenshot(path=picture, full_page=True, animations="disabled")

    api.override(window["sessionId"], action="terminate")
    expect(timer).to_have_text("Das Zahlungsfenster ist geschlossen")
    expect(host_page.get_by_role("alert")).to_have_text("Das Zahlungsfenster ist geschlossen")


def test_cors_answers_only_the_configured_origin(api: Api, marketplace: MarketplaceSite) -> None:
    window = api.open_window(windowMinutes=30)
    status = f"/payments/checkout/{window['sessionId']}/status"
    override = f"/payments/window/{window['sessionId']}/override"
    events = f"/payments/checkout/{window['sessionId']}/events"
    for path, method in ((status, "GET"), (override, "POST"), (events, "GET")):
        preflight = api.client.options(
            path,
            headers={
                "Origin": marketplace.origin,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 204, path
        assert preflight.headers["access-control-allow-origin"] == marketplace.origin
        assert "Authorization" in preflight.headers["access-control-allow-headers"]
        assert method in preflight.headers["access-control-allow-methods"]
        assert "access-control-allow-credentials" not in preflight.headers

    read = api.client.get(status, headers={"Origin": marketplace.origin, **api.auth("buyer")})
    assert read.status_code == 200
    assert read.headers["access-control-allow-origin"] == marketplace.origin
    assert "Origin" in read.headers.get_list("vary")
    refused = api.client.get(
        status, headers={"Origin": "https://evil.example", **api.auth("buyer")}
    )
    assert "access-control-allow-origin" not in refused.headers
    preflight = api.client.options(
        status, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    )
    assert "access-control-allow-origin" not in preflight.headers
    # Other endpoints are not for other origins at all.
    create = api.client.options(
        "/payments/checkout",
        headers={"Origin": marketplace.origin, "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in create.headers
    # The element's module loads cross-origin (module scripts are fetched in CORS mode).
    module = httpx.get(
        f"{api.base_url}/static/payment-window-timer.js", headers={"Origin": marketplace.origin}
    )
    assert module.status_code == 200
    assert module.headers["access-control-allow-origin"] == marketplace.origin
    assert module.headers["content-type"].startswith("text/javascript")


def test_a_rotated_checkout_session_reaches_the_host(
    host_page: Page, api: Api, marketplace: MarketplaceSite
) -> None:
    # Stripe sessions live at most 24 hours: extending a 23-hour window past that makes the
    # service open a new Checkout Session, and the page must pay through the new one.
    window = api.open_window(windowMinutes=23 * 60)
    host_page.goto(marketplace.url(window["sessionId"]))
    timer = host_page.get_by_role("timer")
    expect(timer).to_have_text(re.compile(r"^22 hrs 59 mins$"))
    api.wait_for_viewer(window["sessionId"])

    extended = api.override(window["sessionId"], action="extend", minutes=120)
    assert extended.status_code == 200, extended.text
    new_url = extended.json()["checkoutUrl"]
    assert new_url != window["checkoutUrl"]

    expect(timer).to_have_text(re.compile(r"^24 hrs 59 mins$"))
    host_page.wait_for_function(
        "url => window.__changes.some((c) => c.checkoutUrl === url)", arg=new_url
    )
    assert (
        host_page.evaluate("document.querySelector('payment-window-timer').status.checkoutUrl")
        == new_url
    )
