"""The operations page lists each outgoing webhook endpoint with its state, failures and backlog,
from a real relay failing to reach a receiver that is not there."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from checkout_page import Api, assert_no_axe_violations
from playwright.sync_api import Page, expect
from pydantic import SecretStr

from payment_window.api.app import create_app
from payment_window.api.auth import mint_token
from payment_window.config import Settings

pytestmark = pytest.mark.browser

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _closed_port() -> int:
    """A loopback port nothing listens on: deliveries there are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def hooked_server(live_server: tuple[str, Settings]) -> Iterator[tuple[str, Settings]]:
    """A second API process over the suite's store, with one webhook endpoint and its relay."""
    _, shared = live_server
    settings = shared.model_copy(
        update={
            "webhook_endpoints": [f"http://127.0.0.1:{_closed_port()}/hooks"],
            "webhook_secret": SecretStr(SECRET),
            "serve_loops": "relay",
        }
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, background=True), log_level="warning")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield url, settings
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def test_the_ops_page_shows_a_failing_webhook_endpoint(
    hooked_server: tuple[str, Settings], api: Api, ops_page: Page
) -> None:
    url, settings = hooked_server
    [endpoint] = settings.webhook_endpoints
    admin = {"Authorization": f"Bearer {mint_token(settings, 'ops-lead', 'admin')}"}
    with httpx.Client(base_url=url, timeout=15) as client:
        opened = client.post(
            "/payments/checkout",
            headers={"Authorization": f"Bearer {mint_token(settings, 'shop', 'service')}"},
            json={
                "auctionId": f"auc-hook-{uuid.uuid4().hex[:8]}",
                "makerId": "maker-hooks",
                "buyerId": "buyer-hooks",
                "amount": 5_000,
                "currency": "eur",
            },
        )
        assert opened.status_code == 201, opened.text
        closed = client.post(
            f"/payments/window/{opened.json()['sessionId']}/override",
            json={"action": "terminate"},
            headers=admin,
        )
        assert closed.status_code == 200, closed.text
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            [state] = client.get("/payments/webhooks/endpoints", headers=admin).json()
            if state["failures"] >= 2:
                break
            time.sleep(0.2)
        assert state["failures"] >= 2 and state["backlog"] == 2, state

    ops_page.goto(f"{url}/ops#token={admin['Authorization'].split()[1]}")
    row = ops_page.locator("#webhook-rows tr")
    expect(ops_page.locator("#webhooks")).to_be_visible()
    expect(row).to_have_count(1)
    expect(row.locator(".url")).to_have_text(endpoint)
    expect(row.locator(".state")).to_have_text("active")
    expect(row.locator(".last-success")).to_have_text("never")
    expect(row.locator(".backlog")).to_have_text("2")
    expect(row.locator(".last-error")).to_contain_text(endpoint)
    expect(row).to_have_attribute("data-alarm", "true")
    assert_no_axe_violations(ops_page)

    # The suite's own server has no endpoints configured: no section at all.
    ops_page.goto(f"{api.base_url}/ops#token={api.token('admin', 'ops-lead')}")
    expect(ops_page.locator("#summary")).to_be_visible()
    expect(ops_page.locator("#webhooks")).to_be_hidden()
