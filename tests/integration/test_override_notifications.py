"""Overrides notify maker and buyer over SNS, and an SNS outage delays them, loses none."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

from conftest import with_stripe
from devstripe.testing import RunningStripe
from motoserver import MotoServer, TopicTap
from outboxsupport import ManualClock
from test_outbox_relay import FAST, TOPICS, with_topics

from payment_window.adapters.metrics import NullMetrics
from payment_window.adapters.outbox_store import SqlOutboxStore
from payment_window.adapters.sinks import create_sinks
from payment_window.bootstrap import bootstrap
from payment_window.config import Settings
from payment_window.domain.access import Actor, Role
from payment_window.domain.events import Destination
from payment_window.outbox import OutboxRelay
from payment_window.service import OpenWindow

ADMIN = Actor("ops-7", Role.ADMIN)
MARKETPLACE = Actor("marketplace", Role.SERVICE)


async def test_overrides_during_an_sns_outage_succeed_and_every_notice_arrives_once(
    moto: MotoServer, pg_settings: Settings, stripe: RunningStripe
) -> None:
    taps = {dest: TopicTap.create(moto, name) for dest, name in TOPICS.items()}
    settings = with_topics(with_stripe(pg_settings, stripe), moto, taps)
    container = await bootstrap(settings)
    clock = ManualClock()
    relay = OutboxRelay(
        SqlOutboxStore(container.engine), create_sinks(settings, FAST), NullMetrics(), clock
    )
    try:
        opened = [
            await container.windows.open(
                OpenWindow(f"auc-{n}", "maker-9", f"buyer-{n}", 2500, "gbp", window_minutes=90),
                MARKETPLACE,
            )
            for n in range(3)
        ]
        moto.stop()

        await container.windows.extend(opened[0].id, 15, ADMIN, reason="buyer asked")
        await container.windows.extend(opened[1].id, 30, ADMIN)
        await container.windows.terminate(opened[2].id, ADMIN, reason="fraud check")
        clock.advance(timedelta(minutes=1))
        outage = await relay.run_once()

        assert outage.delivered == 0 and outage.failed == outage.claimed > 0
        moto.start()
        taps = {dest: TopicTap.create(moto, name) for dest, name in TOPICS.items()}
        clock.advance(timedelta(hours=2))
        recovered = await relay.run_once()
        again = await relay.run_once()
    finally:
        await container.close()

    assert recovered.delivered == outage.claimed and recovered.failed == 0
    assert again.claimed == 0
    notes = {dest: taps[dest].drain(moto) for dest in (Destination.MAKER, Destination.BUYER)}
    for dest, received in notes.items():
        bodies = [json.loads(note["Message"]) for note in received]
        assert Counter(body["event"] for body in bodies) == {
            "payment_window.extended": 2,
            "payment_window.terminated": 1,
        }, dest
        event_ids = [body["eventId"] for body in bodies]
        assert len(set(event_ids)) == len(event_ids)
        extended = next(b for b in bodies if b["sessionId"] == opened[0].id)
        assert extended["minutes"] == 15 and extended["reason"] == "buyer asked"
        assert extended["previousExpiresAt"] < extended["expiresAt"]
        terminated = next(b for b in bodies if b["sessionId"] == opened[2].id)
        assert terminated["reason"] == "admin_terminated"
        assert received[0]["MessageAttributes"]["sessionId"]["Value"] in {w.id for w in opened}
