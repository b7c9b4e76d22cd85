"""The relay task runs with only what its role is given (payments.tf): in production, with the
store's URL and no Stripe key or token secret, `payment-window relay` delivers what a closed
window left in the outbox, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

from api_harness import api_settings, running_api
from conftest import settings_env
from devstripe.testing import RunningStripe
from motoserver import MotoServer, TopicTap

from payment_window.config import Environment, Settings


async def test_the_relay_delivers_in_production_without_the_stripe_key_or_token_secret(
    pg_settings: Settings, stripe: RunningStripe, moto: MotoServer
) -> None:
    auction = TopicTap.create(moto, "auction-events")
    async with running_api(api_settings(pg_settings, stripe)) as api:
        opened = await api.open_window()
        closed = await api.client.post(
            f"/payments/window/{opened['sessionId']}/override",
            json={"action": "terminate"},
            headers=api.admin,
        )
        assert closed.status_code == 200, closed.text
    relay_settings = pg_settings.model_copy(
        update={
            "env": Environment.PRODUCTION,
            "stripe_api_key": None,
            "jwt_secret": None,
            "aws_endpoint_url": moto.url,
            "auction_events_topic_arn": auction.topic_arn,
            "log_json": True,
        }
    )
    environment = settings_env(relay_settings)
    assert not {"PW_STRIPE_API_KEY", "PW_JWT_SECRET"} & set(environment)

    relay = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "payment_window", "relay",
        env=environment, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        delivered: list[dict[str, object]] = []
        for _ in range(150):
            delivered += [json.loads(n["Message"]) for n in auction.drain(moto)]
            if delivered or relay.returncode is not None:
                break
            await asyncio.sleep(0.1)
    finally:
        if relay.returncode is None:
            relay.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(relay.communicate(), timeout=30)

    assert relay.returncode == 0, output.decode()[-2000:]
    assert [(m["event"], m["sessionId"]) for m in delivered] == [
        ("auction.relist_requested", opened["sessionId"])
    ], output.decode()[-2000:]
