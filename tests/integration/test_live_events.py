"""GET /payments/checkout/{sessionId}/events on real servers: changes made in another process
reach the stream over Redis; Last-Event-ID resumes; heartbeats; disconnects are cleaned up."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis.asyncio
from api_harness import api_settings
from conftest import settings_env
from devstripe.testing import RunningStripe
from liveserver import ProcessServer, ThreadServer

from payment_window.adapters.changes import changes_channel
from payment_window.api.app import create_app
from payment_window.api.auth import mint_token
from payment_window.config import Settings

HEARTBEAT = 0.5


@dataclass
class Servers:
    settings: Settings
    here: ThreadServer  # streams events
    there: ProcessServer  # another process: changes are made through it

    def auth(self, role: str, sub: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(self.settings, sub, role)}"}


@pytest.fixture
def servers(redis_settings: Settings, stripe: RunningStripe) -> Iterator[Servers]:
    settings = api_settings(redis_settings, stripe)
    app = create_app(settings)
    app.state.sse_heartbeat_seconds = HEARTBEAT
    with ThreadServer(app) as here, ProcessServer(settings_env(settings)) as there:
        yield Servers(settings, here, there)


@dataclass
class Event:
    event: str | None
    data: dict[str, Any] | None
    id: str | None
    comment: str | None = None


class Stream:
    """Reads a text/event-stream response one event (or comment) at a time."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 5.0) -> Event | None:  # noqa: ASYNC109
        """The next event or comment; None when the server ended the stream."""
        fields: dict[str, str] = {}
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if line.startswith(":"):
                    return Event(None, None, None, comment=line[1:].strip())
                if line == "":
                    if "data" in fields or "id" in fields:
                        data = json.loads(fields["data"]) if "data" in fields else None
                        return Event(fields.get("event"), data, fields.get("id"))
                    fields.clear()
                    continue
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        return None

    async def next_event(self, timeout: float = 5.0) -> Event | None:  # noqa: ASYNC109
        """The next event, skipping heartbeats."""
        while True:
            found = await self.next(timeout)
            if found is None or found.comment is None:
                return found


@asynccontextmanager
async def stream(
    servers: Servers, session_id: str, last_event_id: str | None = None
) -> AsyncIterator[Stream]:
    headers = {**servers.auth("buyer", "buyer-1"), "Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    async with (
        httpx.AsyncClient(base_url=servers.here.url, timeout=10) as client,
        client.stream("GET", f"/payments/checkout/{session_id}/events", headers=headers) as r,
    ):
        yield Stream(r)


async def open_window(servers: Servers) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=servers.here.url, timeout=10) as client:
        response = await client.post(
            "/payments/checkout",
            json={
                "auctionId": f"auc-{uuid.uuid4().hex[:10]}",
                "makerId": "maker-1",
                "buyerId": "buyer-1",
                "amount": 12_500,
                "currency": "usd",
                "windowMinutes": 60,
            },
            headers=servers.auth("service", "marketplace"),
        )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def override_elsewhere(servers: Servers, session_id: str, body: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=servers.there.url, timeout=10) as client:
        response = await client.post(
            f"/payments/window/{session_id}/override",
            json=body,
            headers=servers.auth("admin", "ops"),
        )
    assert response.status_code == 200, response.text


async def test_an_extension_made_in_another_process_reaches_the_stream(
    servers: Servers,
) -> None:
    opened = await open_window(servers)
    session_id = opened["sessionId"]

    async with stream(servers, session_id) as events:
        assert events.response.status_code == 200
        assert events.response.headers["content-type"].startswith("text/event-stream")
        first = await events.next_event()
        assert first is not None and (first.event, first.id) == ("status", "1")
        assert first.data is not None and first.data["status"] == "open"

        await override_elsewhere(servers, session_id, {"action": "extend", "minutes": 20})
        extended = await events.next_event()

        assert extended is not None and extended.event == "extended"
        assert extended.id == "2" and extended.data is not None
        assert extended.data["version"] == 2
        assert extended.data["expiresAt"] > opened["expiresAt"]


async def test_a_viewer_that_missed_changes_resumes_from_its_last_event_id(
    servers: Servers,
) -> None:
    session_id = (await open_window(servers))["sessionId"]
    await override_elsewhere(servers, session_id, {"action": "extend", "minutes": 20})

    async with stream(servers, session_id, last_event_id="1") as events:
        caught_up = await events.next_event()
        assert caught_up is not None and (caught_up.event, caught_up.id) == ("extended", "2")
        assert caught_up.data is not None and caught_up.data["status"] == "open"

    async with stream(servers, session_id, last_event_id="2") as events:
        # Up to date: nothing is repeated, only heartbeats until something happens.
        beat = await events.next(timeout=HEARTBEAT * 6)
        assert beat is not None and beat.comment == "ping"

        await override_elsewhere(servers, session_id, {"action": "terminate"})
        closed = await events.next_event()
        assert closed is not None and (closed.event, closed.id) == ("terminated", "3")
        assert closed.data is not None and closed.data["reason"] == "admin_terminated"
        assert await events.next_event() is None  # final: the server ends the stream

    headers = {**servers.auth("buyer", "buyer-1"), "Last-Event-ID": "3"}
    async with httpx.AsyncClient(base_url=servers.here.url, timeout=10) as client:
        done = await client.get(f"/payments/checkout/{session_id}/events", headers=headers)
    assert done.status_code == 204


async def test_heartbeats_keep_an_idle_stream_alive(servers: Servers) -> None:
    session_id = (await open_window(servers))["sessionId"]

    async with stream(servers, session_id) as events:
        assert (await events.next_event()) is not None
        beats = [await events.next(timeout=HEARTBEAT * 6) for _ in range(3)]

    assert all(beat is not None and beat.comment == "ping" for beat in beats)


async def test_a_viewer_leaving_unsubscribes_its_channel(servers: Servers) -> None:
    session_id = (await open_window(servers))["sessionId"]
    channel = changes_channel(servers.settings.redis_prefix, session_id)
    client = redis.asyncio.Redis.from_url(str(servers.settings.redis_url))
    try:
        async with stream(servers, session_id) as events:
            assert (await events.next_event()) is not None
            assert (await client.pubsub_numsub(channel)) == [(channel.encode(), 1)]
        for _ in range(100):
            if (await client.pubsub_numsub(channel)) == [(channel.encode(), 0)]:
                break
            await asyncio.sleep(0.05)
        assert (await client.pubsub_numsub(channel)) == [(channel.encode(), 0)]
    finally:
        await client.aclose()


async def test_the_stream_is_for_the_windows_viewers_only(servers: Servers) -> None:
    session_id = (await open_window(servers))["sessionId"]
    url = f"/payments/checkout/{session_id}/events"
    async with httpx.AsyncClient(base_url=servers.here.url, timeout=10) as client:
        anonymous = await client.get(url)
        stranger = await client.get(url, headers=servers.auth("buyer", "buyer-2"))

    assert anonymous.status_code == 401
    assert stranger.status_code == 404
    assert stranger.json()["error"]["code"] == "session_not_found"
