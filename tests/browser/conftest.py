"""The real app on uvicorn (PostgreSQL schema of its own, Redis index, local Stripe) and Chromium.

One server and one browser serve the whole browser suite; every test gets fresh windows (new
auction ids) and a fresh browser context, so tests share nothing they could disturb.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
import httpx
import pytest
import redis
import uvicorn
from checkout_page import Api, CheckoutPage
from devstripe.testing import RunningStripe
from marketplace_site import MarketplaceSite
from playwright.sync_api import Browser, Page, Playwright, sync_playwright
from pydantic import SecretStr

from payment_window.adapters.migrate import migrate
from payment_window.api.app import create_app
from payment_window.config import Settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
JWT_SECRET = "browser-tests-secret-0123456789abcdef0123456789abcdef"


def screenshot_path(tmp_path: Path, name: str) -> Path:
    """Where a screenshot goes: `docs/` under `make docs` (PW_DOCS_DIR), else a temporary
    folder, so a test run never rewrites a tracked file."""
    folder = Path(os.environ["PW_DOCS_DIR"]) if os.environ.get("PW_DOCS_DIR") else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _run_sql(url: str, statement: str) -> None:
    async def run() -> None:
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


@pytest.fixture(scope="session")
def chromium(unavailable: Callable[[str], NoReturn]) -> str:
    """Debian's Chromium: Playwright's own download does not work on these machines."""
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing: install Debian's chromium package")
    return str(CHROMIUM)


@pytest.fixture(scope="session")
def browser_settings(postgres_url: str, redis_url: str) -> Iterator[Settings]:
    """Settings over a PostgreSQL schema and a Redis prefix of the suite's own."""
    schema = f"b_{uuid.uuid4().hex[:12]}"
    prefix = f"b:{uuid.uuid4().hex[:12]}:"
    _run_sql(postgres_url, f'CREATE SCHEMA "{schema}"')
    settings = Settings(
        database_url=postgres_url,
        database_schema=schema,
        redis_url=redis_url,
        redis_prefix=prefix,
        jwt_secret=SecretStr(JWT_SECRET),
        stripe_max_network_retries=0,
    )
    try:
        migrate(settings)
        yield settings
    finally:
        _run_sql(postgres_url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        client = redis.Redis.from_url(redis_url)
        try:
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.unlink(*keys)
        finally:
            client.close()


WEBHOOK_SECRET = "whsec_browser_tests_0123456789abcdef"
SUPPORT_CONTACT = "https://help.marketplace.example/payments"


@pytest.fixture(scope="session")
def stripe_server() -> Iterator[RunningStripe]:
    """The local Stripe stand-in the app talks to (tests reach states through it)."""
    with RunningStripe() as stripe:
        yield stripe


@pytest.fixture(scope="session")
def marketplace_socket() -> Iterator[socket.socket]:
    """The socket of the marketplace's own site (another origin), bound before the app starts
    so its origin can be the one PW_CORS_ORIGINS allows."""
    sock = _free_socket()
    yield sock
    sock.close()


def origin_of(sock: socket.socket) -> str:
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(scope="session")
def live_server(
    browser_settings: Settings, stripe_server: RunningStripe, marketplace_socket: socket.socket
) -> Iterator[tuple[str, Settings]]:
    """The real app served by uvicorn on a free port in a thread, with the local Stripe server."""
    stripe = stripe_server
    sock = _free_socket()
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = browser_settings.model_copy(
        update={
            "stripe_api_key": SecretStr(stripe.api_key),
            "stripe_api_base": stripe.url,
            "stripe_webhook_secret": SecretStr(WEBHOOK_SECRET),
            "public_base_url": base_url,
            "cors_origins": [origin_of(marketplace_socket)],
            "support_contact": SUPPORT_CONTACT,
        }
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start", pytrace=False)
        time.sleep(0.02)
    try:
        yield base_url, settings
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@pytest.fixture(scope="session")
def api(live_server: tuple[str, Settings]) -> Iterator[Api]:
    base_url, settings = live_server
    with httpx.Client(base_url=base_url, timeout=15) as client:
        yield Api(client, settings)


@pytest.fixture(scope="session")
def playwright_instance(live_server: tuple[str, Settings], chromium: str) -> Iterator[Playwright]:
    # After the server fixtures: they run asyncio.run(), which must not meet Playwright's loop.
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright_instance: Playwright, chromium: str) -> Iterator[Browser]:
    browser = playwright_instance.chromium.launch(
        executable_path=chromium, args=CHROMIUM_ARGS, headless=True
    )
    yield browser
    browser.close()


OpenPage = Callable[..., CheckoutPage]


@pytest.fixture
def open_page(browser: Browser, api: Api) -> Iterator[OpenPage]:
    """`open_page(locale=..., timezone_id=..., sse=False)` → a fresh context's CheckoutPage.

    The page is not navigated yet, so a test can install its clock and routes first. Unless
    `sse=True`, the event stream answers 204 (the page stops listening), so a test never
    depends on the server-sent events endpoint being there.
    """
    contexts: list[Any] = []
    pages: list[Page] = []

    def make(
        *, locale: str = "en-GB", timezone_id: str = "Europe/London", sse: bool = False
    ) -> CheckoutPage:
        context = browser.new_context(
            locale=locale, timezone_id=timezone_id, viewport={"width": 720, "height": 900}
        )
        contexts.append(context)
        page: Page = context.new_page()
        pages.append(page)
        if not sse:
            page.route("**/payments/checkout/*/events", lambda route: route.fulfill(status=204))
        return CheckoutPage(page, api)

    yield make
    for page in pages:
        # A status request may still be in a route handler; let it go quietly.
        page.unroute_all(behavior="ignoreErrors")
    for context in contexts:
        context.close()


@pytest.fixture
def ops_page(browser: Browser) -> Iterator[Page]:
    """A fresh browser page for the operations page, at a desktop size."""
    context = browser.new_context(
        locale="en-GB", timezone_id="Europe/London", viewport={"width": 1280, "height": 900}
    )
    yield context.new_page()
    context.close()


@pytest.fixture(scope="session")
def marketplace(
    live_server: tuple[str, Settings], marketplace_socket: socket.socket
) -> Iterator[MarketplaceSite]:
    """The marketplace's own site, on the origin PW_CORS_ORIGINS allows."""
    base_url, settings = live_server
    site = MarketplaceSite(marketplace_socket, base_url, settings)
    yield site
    site.close()
