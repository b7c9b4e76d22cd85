"""What callers hear while PostgreSQL is away (cut) or frozen (nothing answers): 503 in the
error shape with Retry-After, within a few seconds, never 500 or a hang; `/readyz` says so too.
A request whose Idempotency-Key it claimed failed before commit may be retried with that key as
soon as the store is back."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from api_harness import Api, api_settings, assert_error_shape, running_api
from devstripe.testing import RunningStripe
from tcpproxy import TcpProxy

from payment_window.config import Settings

pytestmark = pytest.mark.slow

# Connect 1 s, statement 2 s (+1 s on the client), pool 1 s: a request touches the store a few
# times at most, so it is answered well within this.
ANSWERED_WITHIN = 9.0


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[TcpProxy]:
    running = TcpProxy.for_url(postgres_url).start()
    yield running
    running.stop()


@pytest.fixture
async def api(
    pg_settings: Settings, postgres_url: str, proxy: TcpProxy, stripe: RunningStripe
) -> AsyncIterator[Api]:
    settings = api_settings(
        pg_settings,
        stripe,
        database_url=Settings(database_url=proxy.url(postgres_url)).database_url,
        database_connect_timeout_seconds=1.0,
        database_statement_timeout_seconds=2.0,
        database_pool_timeout_seconds=1.0,
    )
    async with running_api(settings) as running:
        yield running


def _body(auction_id: str) -> dict[str, Any]:
    return {
        "auctionId": auction_id,
        "makerId": "maker-1",
        "buyerId": "buyer-1",
        "amount": 12_500,
        "currency": "usd",
    }


async def _timed(call: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await call
    return response, time.monotonic() - started


def _assert_503(response: httpx.Response, took: float) -> None:
    assert response.status_code == 503, response.text
    error = assert_error_shape(response)
    assert error["code"] in {"store_unavailable", "not_ready"}, error
    assert int(response.headers["retry-after"]) > 0
    assert took < ANSWERED_WITHIN, f"answered after {took:.1f} s"


@pytest.mark.parametrize("fault", ["cut", "freeze"])
async def test_a_store_that_is_away_or_frozen_answers_503_with_retry_after_quickly(
    api: Api, proxy: TcpProxy, fault: str
) -> None:
    opened = await api.open_window()
    session_id = opened["sessionId"]
    buyer = api.auth("buyer", "buyer-1")
    key = str(uuid.uuid4())
    service = {**api.auth("service", "shop"), "Idempotency-Key": key}

    getattr(proxy, fault)()
    try:
        calls = {
            "create": api.client.post(
                "/payments/checkout", json=_body("auc-during"), headers=service
            ),
            "status": api.client.get(f"/payments/checkout/{session_id}/status", headers=buyer),
            "extend": api.client.post(
                f"/payments/window/{session_id}/override",
                json={"action": "extend", "minutes": 5},
                headers=api.admin,
            ),
            "summary": api.client.get("/payments/windows/summary", headers=api.admin),
            "readyz": api.client.get("/readyz"),
        }
        for name, call in calls.items():
            response, took = await _timed(call)
            print(f"{fault} {name}: {response.status_code} in {took:.2f} s")
            _assert_503(response, took)
        assert (await api.client.get("/healthz")).status_code == 200
    finally:
        proxy.restore()

    # Back: the same key is usable at once (its claim was let go), and the change is made once.
    deadline = time.monotonic() + 15
    while True:
        again = await api.client.post(
            "/payments/checkout", json=_body("auc-during"), headers=service
        )
        if again.status_code != 503 or time.monotonic() > deadline:
            break
    assert again.status_code == 201, again.text
    replay = await api.client.post("/payments/checkout", json=_body("auc-during"), headers=service)
    assert replay.headers.get("idempotent-replayed") == "true"
    assert (await api.client.get("/readyz")).status_code == 200
    status = await api.client.get(f"/payments/checkout/{session_id}/status", headers=buyer)
    assert status.status_code == 200
