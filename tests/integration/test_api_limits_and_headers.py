"""Limits before work (413 while the body is read) and the headers every answer carries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from api_harness import Api, api_settings, assert_error_shape, running_api
from devstripe.testing import RunningStripe
from liveserver import ThreadServer
from pydantic import SecretStr

from payment_window.api.app import create_app
from payment_window.config import Settings

CHUNK = 64 * 1024
HUNDRED_MB = 100 * 1024 * 1024
WEBHOOK_SECRET = "whsec_limits_0123456789"


@pytest.fixture
async def api(pg_settings: Settings, stripe: RunningStripe) -> AsyncIterator[Api]:
    settings = api_settings(pg_settings, stripe, stripe_webhook_secret=SecretStr(WEBHOOK_SECRET))
    async with running_api(settings) as running:
        yield running


class CountingBody:
    """A 100 MB body produced chunk by chunk, counting what the server pulled."""

    def __init__(self, total: int = HUNDRED_MB, start: bytes = b'{"auctionId": "') -> None:
        self.total = total
        self.sent = 0
        self._start = start

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunk = self._start + b"a" * (CHUNK - len(self._start))
        while self.sent < self.total:
            self.sent += len(chunk)
            yield chunk
            chunk = b"a" * CHUNK


@pytest.mark.parametrize(
    ("path", "limit"),
    [("/payments/checkout", 64 * 1024), ("/payments/stripe/webhook", 1024 * 1024)],
    ids=["json-api", "webhook"],
)
async def test_a_streamed_100_mb_body_is_refused_after_its_limit_not_read(
    api: Api, path: str, limit: int
) -> None:
    body = CountingBody()
    headers = {**api.admin, "Content-Type": "application/json", "Stripe-Signature": "t=1,v1=x"}
    before = await api.counts()

    response = await api.client.post(path, content=body, headers=headers)

    assert response.status_code == 413, response.text
    assert assert_error_shape(response)["code"] == "payload_too_large"
    assert body.sent <= limit + CHUNK, f"the server read {body.sent} bytes"
    assert await api.counts() == before


async def test_a_declared_length_over_the_limit_is_refused_before_reading(api: Api) -> None:
    body = CountingBody(total=128 * 1024)
    headers = {**api.admin, "Content-Type": "application/json", "Content-Length": str(128 * 1024)}

    response = await api.client.post("/payments/checkout", content=body, headers=headers)

    assert response.status_code == 413, response.text
    assert assert_error_shape(response)["code"] == "payload_too_large"
    assert body.sent <= CHUNK


async def test_refused_before_authentication(api: Api) -> None:
    response = await api.client.post(
        "/payments/checkout",
        content=b"{" + b" " * (65 * 1024) + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413, response.text


async def test_a_body_at_the_limit_is_read(api: Api) -> None:
    payload = b'{"auctionId": "a", "pad": "' + b"x" * (60 * 1024) + b'"}'
    response = await api.client.post(
        "/payments/checkout",
        content=payload,
        headers={**api.admin, "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text  # read, parsed and validated


async def test_a_real_server_answers_413_before_the_client_finishes_sending(
    pg_settings: Settings, stripe: RunningStripe
) -> None:
    settings = api_settings(pg_settings, stripe)
    sent = 0
    with ThreadServer(create_app(settings)) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"POST /payments/checkout HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        # Read the answer while still sending, as a browser or curl would.
        answer = asyncio.create_task(reader.readuntil(b"\r\n\r\n"))
        chunk = f"{CHUNK:x}\r\n".encode() + b"a" * CHUNK + b"\r\n"
        try:
            while sent < HUNDRED_MB and not answer.done():
                writer.write(chunk)
                await writer.drain()
                sent += CHUNK
                # Paced like a network upload: the answer is read before the next chunk meets
                # the closed connection (whose reset would drop the answer unread).
                await asyncio.sleep(0.01)
        except ConnectionError:
            pass  # the server closed the connection after answering
        head = (await asyncio.wait_for(answer, 10)).decode()
        writer.close()
    assert head.startswith("HTTP/1.1 413"), head
    assert "connection: close" in head.lower()
    assert sent < HUNDRED_MB // 10, f"the client got to send {sent} bytes"


# --- headers --------------------------------------------------------------------------------


async def test_every_answer_says_nosniff_and_errors_and_private_json_say_no_store(
    api: Api,
) -> None:
    opened = await api.open_window()
    answers = {
        "status": await api.client.get(
            f"/payments/checkout/{opened['sessionId']}/status", headers=api.admin
        ),
        "policy": await api.client.get("/makers/maker-1/policy", headers=api.admin),
        "windows": await api.client.get("/payments/windows", headers=api.admin),
        "401": await api.client.get(f"/payments/checkout/{opened['sessionId']}/status"),
        "404": await api.client.get("/no/such/page"),
        "422": await api.client.post("/payments/checkout", json={}, headers=api.admin),
        "400 webhook": await api.client.post("/payments/stripe/webhook", content=b"{}"),
    }
    for name, response in answers.items():
        assert response.headers["x-content-type-options"] == "nosniff", name
        assert response.headers["cache-control"] == "no-store", name
    health = await api.client.get("/healthz")
    assert health.headers["x-content-type-options"] == "nosniff"
    script = await api.client.get("/static/checkout.js")
    assert script.headers["x-content-type-options"] == "nosniff"


async def test_docs_are_served_from_the_package_under_a_self_only_policy(api: Api) -> None:
    page = await api.client.get("/docs")

    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "http" not in policy
    assert "cdn" not in page.text and "https://" not in page.text
    for asset in (
        "/static/swagger/swagger-ui.css",
        "/static/swagger/swagger-ui-bundle.js",
        "/static/swagger/init.js",
    ):
        assert asset in page.text
        fetched = await api.client.get(asset)
        assert fetched.status_code == 200 and len(fetched.content) > 100, asset
    assert "<script>" not in page.text  # no inline script: 'self' would block it
    assert (await api.client.get("/openapi.json")).status_code == 200
    assert (await api.client.get("/redoc")).status_code == 404


def test_the_swagger_assets_ship_in_the_package() -> None:
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert '"web/static/swagger/*"' in pyproject


async def test_docs_can_be_turned_off(pg_settings: Settings, stripe: RunningStripe) -> None:
    async with running_api(api_settings(pg_settings, stripe, api_docs=False)) as api:
        for path in ("/docs", "/openapi.json", "/redoc"):
            response = await api.client.get(path)
            assert response.status_code == 404, path
            assert_error_shape(response)
