"""The outbox relay runs inside `worker` and inside `serve` when asked (`PW_WORKER_LOOPS`,
`PW_SERVE_LOOPS`): an expiry reaches SNS with no separate `relay` process."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from api_harness import api_settings
from devstripe.testing import RunningStripe
from liveserver import ThreadServer
from motoserver import MotoServer, TopicTap
from seeding import seed_windows
from test_expiry_workers import Workers
from test_outbox_relay import TOPICS, with_topics

from payment_window.api.app import create_app
from payment_window.api.auth import mint_token
from payment_window.bootstrap import bootstrap
from payment_window.config import Settings
from payment_window.domain.events import Destination


def wait_for_notices(moto: MotoServer, tap: TopicTap, count: int) -> list[dict[str, object]]:
    notices: list[dict[str, object]] = []
    deadline = time.monotonic() + 30
    while len(notices) < count and time.monotonic() < deadline:
        notices += [json.loads(str(note["Message"])) for note in tap.drain(moto)]
        time.sleep(0.2)
    return notices


async def test_a_worker_process_relays_what_it_expires(
    moto: MotoServer, redis_settings: Settings, stripe: RunningStripe, tmp_path: Path
) -> None:
    taps = {dest: TopicTap.create(moto, name) for dest, name in TOPICS.items()}
    settings = with_topics(api_settings(redis_settings, stripe), moto, taps).model_copy(
        update={
            "worker_max_sleep_seconds": 0.5,
            "stripe_max_network_retries": 2,
            "worker_loops": "worker,relay",
        }
    )
    container = await bootstrap(settings)
    try:
        windows = await seed_windows(container, stripe, 3)
    finally:
        await container.close()
    workers = Workers(settings, tmp_path)
    workers.start(1)
    try:
        notices = wait_for_notices(moto, taps[Destination.AUCTION], 3)
    finally:
        assert workers.stop_all() == [0]
    assert sorted(n["sessionId"] for n in notices) == sorted(w.id for w in windows)
    assert {n["event"] for n in notices} == {"auction.relist_requested"}


def test_serve_relays_in_process(
    moto: MotoServer, pg_settings: Settings, stripe: RunningStripe
) -> None:
    taps = {dest: TopicTap.create(moto, name) for dest, name in TOPICS.items()}
    settings = with_topics(api_settings(pg_settings, stripe), moto, taps).model_copy(
        update={"worker_max_sleep_seconds": 0.5, "serve_loops": "worker,relay"}
    )
    with ThreadServer(create_app(settings, background=True)) as server:
        ends = (datetime.now(UTC) + timedelta(seconds=2)).isoformat().replace("+00:00", "Z")
        opened = httpx.post(
            f"{server.url}/payments/checkout",
            headers={"Authorization": f"Bearer {mint_token(settings, 'shop', 'service')}"},
            json={
                "auctionId": "auc-serve",
                "makerId": "mk-1",
                "buyerId": "by-1",
                "amount": 900,
                "currency": "usd",
                "expiresAt": ends,
            },
            timeout=10,
        ).json()
        notices = wait_for_notices(moto, taps[Destination.BUYER], 1)
    assert [(n["event"], n["sessionId"]) for n in notices] == [
        ("payment_window.expired", opened["sessionId"])
    ]
