"""A live stream ends with its token, and one subject holds only so many streams at once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from api_harness import api_settings, assert_error_shape
from devstripe.testing import RunningStripe
from liveserver import ThreadServer
from test_live_events import Stream

from payment_window.api.app import create_app
from payment_window.api.auth import mint_token
from payment_window.config import Settings

MAX_STREAMS = 2


@pytest.fixture
def server(pg_settings: Settings, stripe: RunningStripe) -> Iterator[tuple[ThreadServer, Settings]]:
    settings = api_settings(pg_settings, stripe, sse_max_streams_per_subject=MAX_STREAMS)
    app = create_app(settings)
    app.state.sse_heartbeat_seconds = 0.5
    with ThreadServer(app) as running:
        yield running, settings


def _bearer(settings: Settings, sub: str, role: str, ttl: timedelta = timedelta(hours=1)) -> Any:
    return {"Authorization": f"Bearer {mint_token(settings, sub, role, ttl=ttl)}"}


async def _open(server: ThreadServer, settings: Settings) -> str:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.post(
            "/payments/checkout",
            json={
                "auctionId": f"auc-{uuid.uuid4().hex[:10]}",
                "makerId": "maker-1",
                "buyerId": "buyer-1",
                "amount": 12_500,
                "currency": "usd",
            },
            headers=_bearer(settings, "shop", "service"),
        )
    assert response.status_code == 201, response.text
    session_id: str = response.json()["sessionId"]
    return session_id


@asynccontextmanager
async def _stream(
    server: ThreadServer, session_id: str, headers: dict[str, str]
) -> AsyncIterator[httpx.Response]:
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
        client.stream("GET", f"/payments/checkout/{session_id}/events", headers=headers) as r,
    ):
        yield r


async def _extend(server: ThreadServer, settings: Settings, session_id: str) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.post(
            f"/payments/window/{session_id}/override",
            json={"action": "extend", "minutes": 5},
            headers=_bearer(settings, "ops", "admin"),
        )
    assert response.status_code == 200, response.text


async def test_a_stream_ends_when_its_token_expires(
    server: tuple[ThreadServer, Settings],
) -> None:
    running, settings = server
    session_id = await _open(running, settings)
    # PyJWT counts a token expired only once now > exp, so it lives up to a second past ttl.
    headers = _bearer(settings, "buyer-1", "buyer", ttl=timedelta(seconds=2))
    started = time.time()
    async with _stream(running, session_id, headers) as response:
        assert response.status_code == 200
        events = Stream(response)
        first = await events.next_event()
        assert first is not None and first.event == "status"

        async with asyncio.timeout(6):
            while (found := await events.next(timeout=5)) is not None:
                assert found.comment is not None, "no event but heartbeats before it ends"
        ended = time.time()
        # The stream is over: a change made now reaches nobody on it.
        await _extend(running, settings, session_id)
    assert 1.0 <= ended - started <= 4.0


async def test_a_subject_holds_a_limited_number_of_streams(
    server: tuple[ThreadServer, Settings],
) -> None:
    running, settings = server
    session_id = await _open(running, settings)
    buyer = _bearer(settings, "buyer-1", "buyer")
    async with (
        _stream(running, session_id, buyer) as one,
        _stream(running, session_id, buyer) as two,
    ):
        assert one.status_code == two.status_code == 200
        async with _stream(running, session_id, buyer) as three:
            assert three.status_code == 429
            await three.aread()
            assert assert_error_shape(three)["code"] == "too_many_streams"
        # Another subject is not held back by this one's streams.
        admin = _bearer(settings, "ops", "admin")
        async with _stream(running, session_id, admin) as other:
            assert other.status_code == 200
    # Streams that ended give their slots back.
    for _ in range(50):
        async with _stream(running, session_id, buyer) as again:
            if again.status_code == 200:
                break
        await asyncio.sleep(0.1)
    assert again.status_code == 200
