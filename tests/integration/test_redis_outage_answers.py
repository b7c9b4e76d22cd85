"""A change the store has committed is answered 2xx, whatever Redis does afterwards.

Redis here is a server of the test's own that stops answering (SIGSTOP: connections stay open,
nothing comes back) between requests, as a Redis host that hangs would.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx
from api_harness import Api, api_settings, running_api
from devstripe.testing import RunningStripe
from redisserver import RedisServer

from payment_window.config import Settings
from payment_window.domain.session import Status


async def test_changes_committed_while_redis_hangs_answer_2xx_and_are_repaired(
    pg_settings: Settings,
    stripe: RunningStripe,
    redis_server: RedisServer,
) -> None:
    server = redis_server
    url = server.url
    settings = api_settings(
        pg_settings.model_copy(
            update={"redis_url": url, "redis_prefix": f"t{uuid.uuid4().hex[:8]}:"}
        ),
        stripe,
    )
    async with running_api(settings) as api, api.container.repairing():
        extended_window = await api.open_window()
        terminated_window = await api.open_window()

        server.pause()
        try:
            extended = await override(
                api, extended_window["sessionId"], action="extend", minutes=30
            )
            terminated = await override(api, terminated_window["sessionId"], action="terminate")
            opened = await api.client.post(
                "/payments/checkout",
                json={
                    "auctionId": f"auc-{uuid.uuid4().hex[:8]}",
                    "makerId": "maker-1",
                    "buyerId": "buyer-1",
                    "amount": 5000,
                    "currency": "usd",
                },
                headers=api.auth("service", "marketplace"),
            )
            # Stored, so answered as done: a retry would extend twice or lose the window.
            assert extended.status_code == 200, extended.text
            assert terminated.status_code == 200, terminated.text
            assert opened.status_code == 201, opened.text
            # The status read does not show what Redis still holds: the store has closed it.
            body = await status(api, terminated_window["sessionId"])
            assert (body["status"], body["reason"]) == ("expired", "admin_terminated")
            body = await status(api, extended_window["sessionId"])
            assert body["expiresAt"] == extended.json()["expiresAt"]
        finally:
            server.resume()

        # Within seconds of Redis answering again, its entries match the store.
        index = api.container.index
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            closed = await index.snapshot(terminated_window["sessionId"])
            fresh = await index.snapshot(opened.json()["sessionId"])
            if closed is not None and closed.status is Status.EXPIRED and fresh is not None:
                break
            assert asyncio.get_running_loop().time() < deadline, "the index was never repaired"
            await asyncio.sleep(0.2)
        assert len(api.container.repairs) == 0


async def override(api: Api, session_id: str, **body: object) -> httpx.Response:
    return await api.client.post(
        f"/payments/window/{session_id}/override", json=body, headers=api.admin
    )


async def status(api: Api, session_id: str) -> dict[str, object]:
    response = await api.client.get(f"/payments/checkout/{session_id}/status", headers=api.admin)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body
