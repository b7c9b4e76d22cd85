"""Helpers for the browser tests: the HTTP API as a test drives it, and the checkout page."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Locator, Page, Request, Route, expect

from payment_window.adapters.changes import changes_channel
from payment_window.api.auth import mint_token
from payment_window.config import Settings

STATUS_PATH = re.compile(r"/payments/checkout/[^/]+/status$")


def iso(moment: datetime | float) -> str:
    """An ISO 8601 UTC time with `Z`, from a datetime or epoch milliseconds."""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment / 1000, UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Api:
    """The real HTTP API, called the way the marketplace and the operators call it."""

    client: httpx.Client
    settings: Settings

    @property
    def base_url(self) -> str:
        return str(self.client.base_url).rstrip("/")

    def token(self, role: str, sub: str | None = None, maker_id: str | None = None) -> str:
        return mint_token(self.settings, sub or f"{role}-1", role, maker_id=maker_id)

    def auth(
        self, role: str, sub: str | None = None, maker_id: str | None = None
    ) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, sub, maker_id)}"}

    def open_window(self, **fields: Any) -> dict[str, Any]:
        """A new window for a fresh auction, opened with a service token; its status body."""
        body = {
            "auctionId": f"auc-{uuid.uuid4().hex[:8]}",
            "makerId": "maker-1",
            "buyerId": "buyer-1",
            "amount": 12_500,
            "currency": "eur",
            **fields,
        }
        response = self.client.post(
            "/payments/checkout", json=body, headers=self.auth("service", "marketplace")
        )
        assert response.status_code == 201, response.text
        opened: dict[str, Any] = response.json()
        return opened

    def status(self, session_id: str) -> dict[str, Any]:
        response = self.client.get(
            f"/payments/checkout/{session_id}/status", headers=self.auth("admin")
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def set_policy(
        self, maker_id: str, *, max_minutes: int = 1440, makers_may_override: bool = True
    ) -> None:
        response = self.client.put(
            f"/makers/{maker_id}/policy",
            json={
                "maxExtensionMinutes": max_minutes,
                "makersMayOverride": makers_may_override,
                "onExpiry": "relist",
            },
            headers=self.auth("admin"),
        )
        assert response.status_code == 200, response.text

    def override(self, session_id: str, **body: Any) -> httpx.Response:
        return self.client.post(
            f"/payments/window/{session_id}/override", json=body, headers=self.auth("admin")
        )

    def stripe_webhook(
        self, window: dict[str, Any], event_type: str, payment_status: str = "paid"
    ) -> None:
        """What Stripe sends when the buyer finishes (or a delayed payment settles): a signed
        event about the window's Checkout Session, delivered to the webhook endpoint."""
        checkout_id = window["checkoutUrl"].rstrip("/").rsplit("/", 1)[-1]
        payload = json.dumps(
            {
                "id": f"evt_{uuid.uuid4().hex[:24]}",
                "object": "event",
                "type": event_type,
                "created": int(time.time()),
                "livemode": False,
                "data": {
                    "object": {
                        "id": checkout_id,
                        "object": "checkout.session",
                        "status": "complete",
                        "payment_status": payment_status,
                        "expires_at": int(time.time()) + 3600,
                        "url": None,
                    }
                },
            }
        )
        secret = self.settings.stripe_webhook_secret
        assert secret is not None
        at = int(time.time())
        mac = hmac.new(
            secret.get_secret_value().encode(), f"{at}.{payload}".encode(), hashlib.sha256
        ).hexdigest()
        response = self.client.post(
            "/payments/stripe/webhook",
            content=payload.encode(),
            headers={"Content-Type": "application/json", "Stripe-Signature": f"t={at},v1={mac}"},
        )
        assert response.status_code == 200, response.text

    def wait_until_due(self, session_id: str, timeout_s: float = 10) -> None:
        """Wait until the server's clock (the one that decides) has passed the window's deadline,
        read from its own status answers rather than guessed from this process's clock."""
        deadline = time.monotonic() + timeout_s
        while True:
            body = self.status(session_id)
            if parse_iso(body["serverTime"]) > parse_iso(body["expiresAt"]):
                return
            assert time.monotonic() < deadline, f"{session_id} is still not due: {body}"
            time.sleep(0.05)

    def wait_for_viewer(self, session_id: str, timeout_s: float = 10) -> None:
        """Wait until the server listens for the window's changes on behalf of a page's event
        stream (it subscribes to the window's Redis channel before it sends the first byte), so
        that a change made now reaches the page."""
        assert self.settings.redis_url, "the live server's change feed is Redis pub/sub"
        channel = changes_channel(self.settings.redis_prefix, session_id)
        deadline = time.monotonic() + timeout_s
        with redis.Redis.from_url(self.settings.redis_url) as client:
            while client.pubsub_numsub(channel)[0][1] < 1:
                assert time.monotonic() < deadline, f"no viewer of {session_id} subscribed"
                time.sleep(0.02)

    def expire_due(self) -> None:
        """One pass of the expiry task, as the schedule runs it: `payment-window expire-due`."""
        command = [str(Path(sys.executable).with_name("payment-window")), "expire-due"]
        environment = {**os.environ, **self.settings.as_environment()}
        subprocess.run(command, env=environment, check=True, capture_output=True, timeout=60)


YIELD_TO_THE_PAGE = """() => new Promise((resolve) => {
  const channel = new MessageChannel();
  channel.port1.onmessage = () => resolve();
  channel.port2.postMessage(null);
})"""


@dataclass
class StatusRoute:
    """Answers the page's status requests from the real server, with a server clock of our own.

    `follow_device`: the server's "now" is the browser's `Date.now()` at the moment the request
    is answered (plus `server_ahead`), so a faked browser clock and the server agree however far
    a test fast-forwards. Otherwise the server's "now" is real time plus `server_ahead`.
    `expires_at` replaces the real deadline, for deadlines the API would refuse (January, July).
    """

    page: Page
    follow_device: bool = False
    server_ahead: timedelta = timedelta(0)
    expires_at: datetime | None = None
    bodies: list[dict[str, Any]] = field(default_factory=list)

    def install(self) -> StatusRoute:
        self.page.route(STATUS_PATH, self._answer)
        return self

    def _answer(self, route: Route) -> None:
        response = route.fetch()
        if response.status != 200:
            route.fulfill(response=response)
            return
        body = response.json()
        now_ms = self.page.evaluate("Date.now()") if self.follow_device else time.time() * 1000
        server_now = datetime.fromtimestamp(now_ms / 1000, UTC) + self.server_ahead
        if self.expires_at is not None:
            body["expiresAt"] = iso(self.expires_at)
        body["serverTime"] = iso(server_now)
        left = (parse_iso(body["expiresAt"]) - server_now).total_seconds()
        body["remainingTime"] = max(0, int(left))
        self.bodies.append(body)
        route.fulfill(response=response, json=body)


class CheckoutPage:
    """The checkout page in one browser context, by the element ids the page promises."""

    def __init__(self, page: Page, api: Api) -> None:
        self.page = page
        self.api = api
        self.status_requests: list[str] = []
        self.status_done = 0
        page.on("request", self._count)
        page.on("requestfinished", self._done)
        page.on("requestfailed", self._done)

    def _count(self, request: Request) -> None:
        if STATUS_PATH.search(request.url.split("?")[0]):
            self.status_requests.append(request.url)

    def _done(self, request: Request) -> None:
        if STATUS_PATH.search(request.url.split("?")[0]):
            self.status_done += 1

    def url_for(self, session_id: str) -> str:
        return f"{self.api.base_url}/checkout/{session_id}"

    def open(
        self,
        session_id: str,
        role: str = "buyer",
        sub: str | None = None,
        maker_id: str | None = None,
    ) -> CheckoutPage:
        """Navigate with the viewer's token in the fragment; wait for the start-up round trips.

        The page takes START_SAMPLES (3) status samples one after another; a test that changes
        the window or the clocks while one is still in flight would race it.
        """
        token = self.api.token(role, sub, maker_id)
        self.page.goto(f"{self.url_for(session_id)}#token={token}")
        expect(self.main).not_to_have_attribute("data-state", "loading")
        self.wait_for_status_requests(3)
        self.settle()
        return self

    def settle(self, timeout_s: float = 5) -> None:
        """Wait until every status request made so far is answered and the page has read it.

        A request still in flight absorbs the next resync (the page coalesces them), so a test
        that fires lifecycle events one after another must let each answer land first.
        """
        deadline = time.monotonic() + timeout_s
        while self.status_done < len(self.status_requests):
            assert time.monotonic() < deadline, (
                f"{len(self.status_requests) - self.status_done} status requests never finished"
            )
            self.page.wait_for_timeout(20)
        # Reading the body and the promise chain after it take a few of the page's own tasks;
        # messages it posts to itself queue behind them (the fake clock leaves them alone).
        for _ in range(3):
            self.page.evaluate(YIELD_TO_THE_PAGE)
        self.page.wait_for_timeout(50)

    def route_status(self, **options: Any) -> StatusRoute:
        return StatusRoute(self.page, **options).install()

    def wait_for_status_requests(self, count: int, timeout_s: float = 5) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.status_requests) < count:
            assert time.monotonic() < deadline, (
                f"expected {count} status requests, saw {len(self.status_requests)}"
            )
            self.page.wait_for_timeout(25)

    @property
    def main(self) -> Locator:
        return self.page.locator("#checkout")

    @property
    def countdown(self) -> Locator:
        return self.page.locator("#countdown")

    @property
    def pay_by(self) -> Locator:
        return self.page.locator("#pay-by")

    @property
    def announcer(self) -> Locator:
        return self.page.locator("#announcer")

    @property
    def pay_button(self) -> Locator:
        return self.page.locator("#pay-button")

    def seconds_left(self) -> int:
        """The countdown read back in seconds (minute precision an hour or more out)."""
        return parse_countdown(self.countdown.inner_text())


_UNITS = {"hr": 3600, "hrs": 3600, "min": 60, "mins": 60, "sec": 1, "secs": 1}


def parse_countdown(text: str) -> int:
    """Seconds in "1 hr 5 mins" (3900), "42 mins 7 secs" (2527), "9 secs" (9), en-GB or en-US."""
    parts = re.findall(r"(\d+)\s*(hrs?|mins?|secs?)\b", text)
    assert parts, f"not a countdown: {text!r}"
    return sum(int(count) * _UNITS[name] for count, name in parts)


def assert_no_axe_violations(page: Page) -> None:
    """axe-core's rules (WCAG 2 A and AA, best practices) on the page as it is now."""
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_report()
