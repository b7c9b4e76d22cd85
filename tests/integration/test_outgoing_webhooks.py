"""Outgoing webhooks against a real receiver on loopback: Standard Webhooks signatures checked
with the `standardwebhooks` library, retries by `webhook-id`, 410 Gone, parking after three days,
and a slow receiver next to the expiry path. Messages come from the API and the expiry pass."""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from api_harness import Api, api_settings, running_api
from devstripe.testing import RunningStripe
from liveserver import ThreadServer
from moments import until_index_time
from outboxsupport import ManualClock, outbox_rows
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from test_cli_policy import cli
from webhookreceiver import WebhookReceiver

from payment_window.api.app import create_app
from payment_window.api.auth import mint_token
from payment_window.config import Settings
from payment_window.domain.outgoing_webhooks import endpoint_destination
from payment_window.outbox import RelayGroup
from payment_window.runner import enable_endpoint, outbox_backlog

NEW_SECRET = "whsec_" + base64.b64encode(b"the-new-signing-secret-0123456789").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"the-old-signing-secret-9876543210").decode()
CLOSE_EVENTS = ["auction.relist_requested", "payment_window.expired"]


def webhook_settings(
    base: Settings, stripe: RunningStripe, *receivers: WebhookReceiver
) -> Settings:
    """The API's settings, delivering to `receivers`, signing with two secrets (a roll)."""
    return api_settings(
        base,
        stripe,
        webhook_endpoints=[receiver.url for receiver in receivers],
        webhook_secret=SecretStr(f"{NEW_SECRET},{OLD_SECRET}"),
        stripe_expire_rps=100_000.0,
    )


async def expire_through_worker(api: Api, count: int) -> list[str]:
    """Open `count` windows through the API, let them fall due, run the expiry pass."""
    deadline = datetime.now(UTC) + timedelta(seconds=3)
    due = deadline.isoformat().replace("+00:00", "Z")
    bodies = [await api.open_window(expiresAt=due) for _ in range(count)]
    opened = [body["sessionId"] for body in bodies]
    last = max(datetime.fromisoformat(body["expiresAt"].replace("Z", "+00:00")) for body in bodies)
    await until_index_time(api.container.index, last)
    report = await api.container.expiry_task().run_pass(sweep=True)
    assert report.as_dict()["expired"] == count, report
    return opened


async def webhook_row_ids(api: Api, url: str) -> set[str]:
    destination = endpoint_destination(url)
    return {
        row.id for row in await outbox_rows(api.container.engine) if row.destination == destination
    }


async def relay_until(relays: RelayGroup, clock: ManualClock, done: Any, passes: int = 40) -> None:
    """Relay passes, the clock moved two hours between them (retries fall due), until `done()`."""
    for _ in range(passes):
        await relays.run_once()
        if done():
            return
        clock.advance(timedelta(hours=2))
    raise AssertionError("the relay did not get there")


@pytest.fixture(params=["sqlite_settings", "pg_settings"])
def store_settings(request: pytest.FixtureRequest) -> Settings:
    """The embedded store and PostgreSQL, in turn."""
    settings: Settings = request.getfixturevalue(request.param)
    return settings


async def test_notices_arrive_signed_once_per_change_and_verify_with_standardwebhooks(
    store_settings: Settings, stripe: RunningStripe
) -> None:
    with WebhookReceiver() as receiver:
        settings = webhook_settings(store_settings, stripe, receiver)
        async with running_api(settings) as api:
            opened = await api.open_window()
            terminated = await api.client.post(
                f"/payments/window/{opened['sessionId']}/override",
                json={"action": "terminate", "reason": "buyer withdrew"},
                headers=api.admin,
            )
            assert terminated.status_code == 200, terminated.text
            relays = api.container.outbox_relay()
            await relays.run_once()
            await relays.close()
            row_ids = await webhook_row_ids(api, receiver.url)

    delivered = receiver.delivered()
    # Maker and buyer both hear of the termination on SNS; the endpoint hears of it once.
    assert sorted(json.loads(r.body)["type"] for r in delivered) == [
        "auction.relist_requested",
        "payment_window.terminated",
    ]
    assert {r.id for r in delivered} == row_ids
    for request in delivered:
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        for secret in (NEW_SECRET, OLD_SECRET):  # either side of a roll verifies
            payload = Webhook(secret).verify(request.body, request.headers)
            assert set(payload) == {"type", "timestamp", "data"}
            assert payload["data"]["sessionId"] == opened["sessionId"]
            assert payload["timestamp"].endswith("Z")
        stranger = "whsec_" + base64.b64encode(b"somebody-else-entirely-000000000").decode()
        with pytest.raises(WebhookVerificationError):
            Webhook(stranger).verify(request.body, request.headers)
        tampered = request.body.replace(b'"type":"', b'"type":"x')
        assert tampered != request.body
        with pytest.raises(WebhookVerificationError):
            Webhook(NEW_SECRET).verify(tampered, request.headers)


async def test_a_receiver_that_fails_then_recovers_gets_every_message_once(
    store_settings: Settings, stripe: RunningStripe
) -> None:
    with WebhookReceiver() as receiver:
        receiver.statuses.extend([500, 503, 500, 502, 500, 429, 500])
        settings = webhook_settings(store_settings, stripe, receiver)
        async with running_api(settings) as api:
            sessions = await expire_through_worker(api, 3)
            clock = ManualClock()
            relays = replace(api.container, clock=clock).outbox_relay()
            row_ids = await webhook_row_ids(api, receiver.url)
            assert len(row_ids) == 6
            await relay_until(relays, clock, lambda: len(receiver.delivered()) >= 6)
            await relays.run_once()  # nothing more goes out
            await relays.close()
            status = await outbox_backlog(settings)

    delivered = Counter(r.id for r in receiver.delivered())
    assert set(delivered) == row_ids and set(delivered.values()) == {1}
    failed = [r for r in receiver.received if r.status >= 300]
    assert len(failed) == 7
    # A retry is the same message: it carries the id the receiver will later accept.
    assert {r.id for r in failed} <= row_ids
    bodies = [json.loads(r.body) for r in receiver.delivered()]
    assert sorted(b["type"] for b in bodies) == sorted(CLOSE_EVENTS * 3)
    assert {b["data"]["sessionId"] for b in bodies} == set(sessions)
    [endpoint] = status.endpoints
    assert endpoint.url == receiver.url and endpoint.disabled_at is None
    assert endpoint.failures == 7 and endpoint.consecutive_failures == 0
    assert endpoint.last_success_at is not None and endpoint.backlog == 0


async def test_410_disables_one_endpoint_and_the_other_keeps_receiving(
    pg_settings: Settings, stripe: RunningStripe
) -> None:
    with WebhookReceiver(status=410) as gone, WebhookReceiver() as healthy:
        settings = webhook_settings(pg_settings, stripe, gone, healthy)
        async with running_api(settings) as api:
            await expire_through_worker(api, 2)
            clock = ManualClock()
            relays = replace(api.container, clock=clock).outbox_relay()
            await relays.run_once()
            asked = len(gone.received)  # the first pass's messages went out side by side
            assert 1 <= asked <= 4 and {r.status for r in gone.received} == {410}
            for _ in range(3):
                clock.advance(timedelta(hours=2))
                await relays.run_once()
            assert len(gone.received) == asked  # disabled by its 410: asked no more
            assert len(healthy.delivered()) == 4
            status = await outbox_backlog(settings)
            by_url = {endpoint.url: endpoint for endpoint in status.endpoints}
            assert by_url[gone.url].disabled_at is not None
            assert "410" in (by_url[gone.url].disabled_reason or "")
            assert by_url[gone.url].backlog == 4
            assert by_url[healthy.url].disabled_at is None and by_url[healthy.url].backlog == 0

            # The ops view shows the same (admin only).
            listed = await api.client.get("/payments/webhooks/endpoints", headers=api.admin)
            assert listed.status_code == 200
            assert [(e["url"], e["active"], e["backlog"]) for e in listed.json()] == [
                (gone.url, False, 4),
                (healthy.url, True, 0),
            ]
            refused = await api.client.get(
                "/payments/webhooks/endpoints", headers=api.auth("buyer")
            )
            assert refused.status_code == 403 and set(refused.json()) == {"error"}

            # Re-enabled (the receiver came back), its messages go out, each once.
            gone.status = 200
            assert await enable_endpoint(settings, gone.url)
            await relay_until(relays, clock, lambda: len(gone.delivered()) >= 4)
            await relays.close()
    assert len({r.id for r in gone.delivered()}) == 4
    assert {r.id for r in gone.delivered()}.isdisjoint({r.id for r in healthy.delivered()})


async def test_a_message_failing_for_three_days_is_parked_and_redelivered_from_the_cli(
    pg_settings: Settings, stripe: RunningStripe
) -> None:
    with WebhookReceiver(status=500) as receiver:
        settings = webhook_settings(pg_settings, stripe, receiver)
        async with running_api(settings) as api:
            await expire_through_worker(api, 1)
            clock = ManualClock()
            relays = replace(api.container, clock=clock).outbox_relay()
            for _ in range(40):
                await relays.run_once()
                clock.advance(timedelta(hours=2))
            row_ids = await webhook_row_ids(api, receiver.url)
            # Retried with backoff (two-hour steps here) until three days had passed, parked.
            assert 2 * 36 <= len(receiver.received) <= 2 * 38

            code, shown, _ = await cli(settings, "relay", "--status")
            assert code == 0, shown
            assert receiver.url in shown and "parked: 2" in shown
            assert shown.count("PARKED") == 2

            receiver.status = 200
            parked_id = sorted(row_ids)[0]
            code, out, err = await cli(settings, "relay", "--redeliver", parked_id)
            assert code == 0, out + err
            code, _, err = await cli(settings, "relay", "--redeliver", "no-such-message")
            assert code == 1 and "no undelivered outbox message" in err

            await relays.run_once()
            await relays.close()
    assert [r.id for r in receiver.delivered()] == [parked_id]  # the other stays parked


def test_a_slow_receiver_does_not_slow_expiry(pg_settings: Settings, stripe: RunningStripe) -> None:
    """The relay waits its 10 s on a receiver that hangs; windows still close on time."""
    with WebhookReceiver(delay=15.0) as slow:
        settings = webhook_settings(pg_settings, stripe, slow).model_copy(
            update={"worker_max_sleep_seconds": 0.5, "serve_loops": "worker,relay"}
        )
        service = {"Authorization": f"Bearer {mint_token(settings, 'shop', 'service')}"}
        admin = {"Authorization": f"Bearer {mint_token(settings, 'ops', 'admin')}"}
        lateness: list[float] = []
        with ThreadServer(create_app(settings, background=True)) as server:

            def open_and_watch(count: int) -> None:
                deadline = datetime.now(UTC) + timedelta(seconds=2)
                ids = []
                for number in range(count):
                    opened = httpx.post(
                        f"{server.url}/payments/checkout",
                        headers=service,
                        json={
                            "auctionId": f"auc-slow-{time.monotonic_ns()}-{number}",
                            "makerId": "mk-1",
                            "buyerId": "by-1",
                            "amount": 900,
                            "currency": "usd",
                            "expiresAt": deadline.isoformat().replace("+00:00", "Z"),
                        },
                        timeout=10,
                    )
                    assert opened.status_code == 201, opened.text
                    ids.append(opened.json()["sessionId"])
                pending = set(ids)
                while pending and datetime.now(UTC) < deadline + timedelta(seconds=20):
                    for session_id in list(pending):
                        body = httpx.get(
                            f"{server.url}/payments/checkout/{session_id}/status",
                            headers=admin,
                            timeout=10,
                        ).json()
                        if body["status"] == "expired":
                            pending.discard(session_id)
                            lateness.append((datetime.now(UTC) - deadline).total_seconds())
                    time.sleep(0.1)
                assert not pending

            open_and_watch(3)
            # The relay is now stuck on the hanging receiver (its first POST has not been
            # answered); a second wave closes just as quickly.
            assert not slow.received
            open_and_watch(3)
            assert slow.arrived >= 1 and not slow.received
    print(f"expiry lateness next to a hanging webhook receiver (s): {sorted(lateness)}")
    assert len(lateness) == 6
    assert max(lateness) < 3.0, lateness


async def test_the_relay_refuses_to_start_with_a_plain_http_endpoint_elsewhere(
    pg_settings: Settings,
) -> None:
    settings = pg_settings.model_copy(
        update={
            "webhook_endpoints": ["https://hooks.example.com/pw", "http://hooks.example.com/pw"],
            "webhook_secret": SecretStr(NEW_SECRET),
        }
    )
    code, _, err = await cli(settings, "relay")
    assert code == 2
    assert "PW_WEBHOOK_ENDPOINTS: http://hooks.example.com/pw" in err and "https://" in err
    assert "Traceback" not in err
