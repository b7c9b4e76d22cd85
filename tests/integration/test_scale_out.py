"""Several API processes and several workers on one PostgreSQL and one Redis: every process
tells the same story about a window, and live streams hear changes made anywhere."""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_harness import api_settings
from conftest import settings_env
from devstripe.testing import RunningStripe
from liveserver import ProcessServer
from test_expiry_workers import Workers
from test_live_events import Stream

from payment_window.api.auth import mint_token
from payment_window.config import Settings

pytestmark = pytest.mark.slow


def bearer(settings: Settings, sub: str, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings, sub, role)}"}


async def test_three_api_processes_and_two_workers_agree_on_every_window(
    redis_settings: Settings, stripe: RunningStripe, tmp_path: Path
) -> None:
    settings = api_settings(redis_settings, stripe).model_copy(
        update={"worker_max_sleep_seconds": 0.5, "stripe_max_network_retries": 2}
    )
    env = settings_env(settings)
    with ExitStack() as stack:
        apis = [stack.enter_context(ProcessServer(env)) for _ in range(3)]
        workers = Workers(settings, tmp_path)
        stack.callback(workers.stop_all)
        workers.start(2)
        service = bearer(settings, "marketplace", "service")
        admin = bearer(settings, "ops", "admin")
        deadline = datetime.now(UTC) + timedelta(seconds=4)
        async with httpx.AsyncClient(timeout=20) as client:

            async def open_one(number: int) -> dict[str, Any]:
                response = await client.post(
                    f"{apis[number % 3].url}/payments/checkout",
                    headers=service,
                    json={
                        "auctionId": f"auc-scale-{number}",
                        "makerId": "maker-1",
                        "buyerId": f"buyer-{number}",
                        "amount": 1000 + number,
                        "currency": "usd",
                        "expiresAt": deadline.isoformat().replace("+00:00", "Z"),
                    },
                )
                assert response.status_code == 201, response.text
                body: dict[str, Any] = response.json()
                return body

            windows = await asyncio.gather(*(open_one(n) for n in range(12)))
            extended_ids = {w["sessionId"] for w in windows[:4]}
            watched = windows[4]
            async with client.stream(
                "GET",
                f"{apis[1].url}/payments/checkout/{watched['sessionId']}/events",
                headers={**bearer(settings, "buyer-4", "buyer"), "Accept": "text/event-stream"},
            ) as response:
                stream = Stream(response)
                first = await stream.next_event()
                assert first is not None and first.data is not None
                for session_id in extended_ids:
                    extended = await client.post(
                        f"{apis[2].url}/payments/window/{session_id}/override",
                        headers=admin,
                        json={"action": "extend", "minutes": 10},
                    )
                    assert extended.status_code == 200, extended.text
                closed = await stream.next_event(timeout=20)
            assert closed is not None and closed.event == "expired"
            assert closed.data is not None and closed.data["status"] == "expired"

            async def statuses(session_id: str) -> list[dict[str, Any]]:
                buyer = bearer(settings, f"buyer-{session_id_to_number[session_id]}", "buyer")
                answers = [
                    await client.get(
                        f"{api.url}/payments/checkout/{session_id}/status", headers=buyer
                    )
                    for api in apis
                ]
                return [answer.json() for answer in answers]

            session_id_to_number = {w["sessionId"]: n for n, w in enumerate(windows)}
            for _ in range(100):
                views = {w["sessionId"]: await statuses(w["sessionId"]) for w in windows}
                settled = all(
                    v[0]["status"] == ("open" if sid in extended_ids else "expired")
                    for sid, v in views.items()
                )
                if settled:
                    break
                await asyncio.sleep(0.2)

        for session_id, answers in views.items():
            agreed = {(a["status"], a["version"], a["expiresAt"], a["reason"]) for a in answers}
            assert len(agreed) == 1, f"processes disagree about {session_id}: {agreed}"
            status, _, _, reason = agreed.pop()
            if session_id in extended_ids:
                assert status == "open"
            else:
                assert (status, reason) == ("expired", "window_elapsed")
