"""Outgoing webhooks' pure rules and start-up checks: which messages each endpoint gets, which
URLs and event names are accepted, and a relay that parks what fails for three days."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from fakes import FakeClock, FakeMetrics, FakeOutboxStore, FakeSink

from payment_window.config import Settings
from payment_window.domain.events import Destination, OutboxEnvelope, OutboxMessage
from payment_window.domain.outgoing_webhooks import (
    PARK_AFTER,
    WebhookCopies,
    endpoint_destination,
    endpoint_problem,
    fan_out,
    parse_events,
)
from payment_window.outbox import OutboxRelay, status
from payment_window.runner import StartupRefused, require_for

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
HOOKS = ("webhook:aaaaaaaaaaaa", "webhook:bbbbbbbbbbbb")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PW_"):
            monkeypatch.delenv(name)


def closing_messages() -> list[OutboxMessage]:
    body = {"sessionId": "pw_1", "auctionId": "auc_1", "reason": "window_elapsed"}
    return [
        OutboxMessage(Destination.MAKER, "payment_window.expired", body),
        OutboxMessage(Destination.BUYER, "payment_window.expired", body),
        OutboxMessage(Destination.ANALYTICS, "payments.checkout.expired", body),
        OutboxMessage(Destination.AUCTION, "auction.relist_requested", body),
    ]


def test_each_endpoint_gets_each_notice_once_with_its_own_id() -> None:
    copies = fan_out(closing_messages(), HOOKS, None)

    assert sorted((c.destination, c.event_type) for c in copies) == [
        (HOOKS[0], "auction.relist_requested"),
        (HOOKS[0], "payment_window.expired"),
        (HOOKS[1], "auction.relist_requested"),
        (HOOKS[1], "payment_window.expired"),
    ]
    originals = {m.id for m in closing_messages()}
    assert len({c.id for c in copies}) == 4 and not originals & {c.id for c in copies}


def test_webhook_events_pick_the_types_and_analytics_never_goes() -> None:
    only = parse_events("auction.relist_requested, payment_window.paid")
    copies = WebhookCopies(HOOKS[:1], only)(closing_messages())
    assert [c.event_type for c in copies] == ["auction.relist_requested"]
    assert parse_events(None) is None and parse_events("all") is None
    with pytest.raises(ValueError, match=r"payment_window\.expird"):
        parse_events("payment_window.expird")
    assert fan_out(closing_messages(), (), None) == []


@pytest.mark.parametrize(
    ("url", "development", "refused"),
    [
        ("https://hooks.example.com/pw", False, False),
        ("http://127.0.0.1:9000/hooks", True, False),
        ("http://[::1]:9000/hooks", True, False),
        ("http://localhost/hooks", True, False),
        ("http://127.0.0.1:9000/hooks", False, True),
        ("http://hooks.example.com/pw", True, True),
        ("http://10.0.0.8/pw", True, True),
        ("ftp://hooks.example.com/pw", True, True),
        ("hooks.example.com/pw", True, True),
    ],
)
def test_endpoints_are_https_or_loopback_in_development(
    url: str, development: bool, refused: bool
) -> None:
    assert (endpoint_problem(url, development=development) is not None) is refused


def test_an_endpoints_destination_is_stable_and_fits_the_column() -> None:
    url = "https://hooks.example.com/payment-window?tenant=42"
    assert endpoint_destination(url) == endpoint_destination(url)
    assert endpoint_destination(url) != endpoint_destination(url + "1")
    assert len(endpoint_destination(url)) <= 32


def settings(monkeypatch: pytest.MonkeyPatch, **variables: str) -> Settings:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return Settings()


@pytest.mark.parametrize("process", ["serve", "worker", "relay", "expire-due"])
def test_a_plain_http_endpoint_elsewhere_stops_start_up(
    monkeypatch: pytest.MonkeyPatch, process: str
) -> None:
    configured = settings(
        monkeypatch,
        PW_STRIPE_API_KEY="sk_test_x",
        PW_WEBHOOK_ENDPOINTS="https://a.example/hooks, http://b.example/hooks",
        PW_WEBHOOK_SECRET=SECRET,
    )
    assert configured.webhook_endpoints == ["https://a.example/hooks", "http://b.example/hooks"]
    with pytest.raises(StartupRefused, match=r"PW_WEBHOOK_ENDPOINTS: http://b\.example/hooks"):
        require_for(process, configured)


def test_the_relay_will_not_start_unable_to_sign(monkeypatch: pytest.MonkeyPatch) -> None:
    unsigned = settings(monkeypatch, PW_WEBHOOK_ENDPOINTS="https://a.example/hooks")
    with pytest.raises(StartupRefused, match="PW_WEBHOOK_SECRET"):
        require_for("relay", unsigned)
    # The processes that only record the messages need no secret.
    require_for("serve", unsigned.model_copy(update={"stripe_api_key": "sk_test_x"}))
    bad = settings(monkeypatch, PW_WEBHOOK_SECRET="not-a-whsec")
    with pytest.raises(StartupRefused, match="whsec_"):
        require_for("relay", bad)
    rolled = settings(monkeypatch, PW_WEBHOOK_SECRET=f"{SECRET}, whsec_c2Vjb25kLXNlY3JldA==")
    assert len(rolled.webhook_secrets) == 2
    require_for("relay", rolled)
    typo = settings(monkeypatch, PW_WEBHOOK_EVENTS="auction.relisted")
    with pytest.raises(StartupRefused, match="PW_WEBHOOK_EVENTS"):
        require_for("relay", typo)


async def test_a_message_failing_for_three_days_is_parked_then_redelivered() -> None:
    clock, sink, store = FakeClock(), FakeSink(), FakeOutboxStore()
    relay = OutboxRelay(
        store, {HOOKS[0]: sink}, FakeMetrics(), clock, park_after=PARK_AFTER, reports=False
    )
    store.add(OutboxEnvelope("evt-1", HOOKS[0], "payment_window.expired", {}, "pw_1", clock.now()))
    sink.down = True
    attempts = 0
    while (await relay.run_once()).claimed:
        attempts += 1
        clock.advance(timedelta(hours=2))
        if attempts > 100:
            break
    # Two-hourly here: retried until three days had passed, then set aside, not claimed again.
    assert 36 <= attempts <= 38
    clock.advance(timedelta(days=1))
    assert (await relay.run_once()).claimed == 0
    [parked] = (await status(store)).failing
    assert parked.parked_at is not None and (await status(store)).undelivered == 1

    sink.down = False
    assert await store.redeliver("evt-1", clock.now())
    assert (await relay.run_once()).delivered == 1
    assert [m.id for m in sink.delivered] == ["evt-1"]


async def test_a_disabled_endpoint_is_not_asked_while_it_is_off() -> None:
    clock, sink, store = FakeClock(), FakeSink(), FakeOutboxStore()
    enabled = False

    async def active() -> bool:
        return enabled

    relay = OutboxRelay(store, {HOOKS[0]: sink}, FakeMetrics(), clock, active=active)
    store.add(OutboxEnvelope("evt-1", HOOKS[0], "auction.relist_requested", {}, None, clock.now()))
    assert (await relay.run_once()).claimed == 0
    enabled = True
    assert (await relay.run_once()).delivered == 1
