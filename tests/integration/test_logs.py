"""Structured logs as production writes them: JSON lines on stderr, context on every line, no
secrets. The service runs over PostgreSQL, Redis and the local Stripe server; the API is driven
in-process through httpx.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import structlog
from api_harness import JWT_SECRET, Api
from conftest import with_stripe
from devstripe.testing import RunningStripe
from pydantic import SecretStr
from seeding import seed_windows

from payment_window.api.app import create_app
from payment_window.api.auth import mint_token
from payment_window.bootstrap import Container, bootstrap
from payment_window.config import Settings
from payment_window.logs import configure_logging
from payment_window.redaction import JWT_MASK, Redactor, mask

REQUEST_ID = "req-logs-0001"
# Recognisable, and never printed whole anywhere the tests look.
STRIPE_KEY = "sk_test_SECRET" + secrets.token_hex(12)
# Lines about a pass or the index as a whole, not about one window (keep in step with expiry.py,
# expiry_group.py and expiry_loop.py).
PASS_EVENTS = {
    "expiry_pass",
    "expiry_loop_failed",
    "expiry_batch_failed",
    "reindexed_overdue_windows",
    "window_index_rebuilding",
}

Capture = pytest.CaptureFixture[str]


@pytest.fixture
def log_settings(redis_settings: Settings, stripe: RunningStripe) -> Settings:
    return with_stripe(redis_settings, stripe).model_copy(
        update={
            "stripe_api_key": SecretStr(STRIPE_KEY),
            "stripe_max_network_retries": 0,
            "jwt_secret": SecretStr(JWT_SECRET),
            "log_json": True,
        }
    )


@pytest.fixture
def json_logs(log_settings: Settings) -> Iterator[Callable[[], None]]:
    """Call it first thing in the test: production logging into the test's captured stderr.

    Not configured by the fixture itself: pytest gives each phase (setup, call) its own capture
    stream, and the logger factory keeps the stream it was configured with. Loggers must not
    cache their configuration either, or they would keep writing to this test's stream after it
    closed. The previous configuration comes back afterwards.
    """
    previous = structlog.get_config()

    def start() -> None:
        configure_logging(log_settings)
        structlog.configure(cache_logger_on_first_use=False)

    try:
        yield start
    finally:
        structlog.configure(**previous)


@pytest.fixture
async def api(log_settings: Settings) -> AsyncIterator[Api]:
    container = await bootstrap(log_settings)
    app = create_app(container=container)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Api(app, container, client)
    finally:
        await container.close()


@pytest.fixture
async def container(log_settings: Settings) -> AsyncIterator[Container]:
    built = await bootstrap(log_settings)
    yield built
    await built.close()


def json_lines(capfd: Capture) -> tuple[str, list[dict[str, Any]]]:
    """Everything written to stdout and stderr since the last read, and stderr's lines parsed:
    in production every line is one JSON object."""
    out, err = capfd.readouterr()
    lines = []
    for line in err.splitlines():
        if not line.strip():
            continue
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"a log line that is not JSON: {line!r}")
    return out + err, lines


# --- the processor ------------------------------------------------------------------------------


def test_the_redactor_masks_jwts_stripe_keys_and_configured_secrets() -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    redactor = Redactor(["wk_segment_write_key_1234"])

    cleaned = redactor(
        None,
        "info",
        {
            "event": f"Authorization: Bearer {token}",
            "error": "Invalid API Key provided: sk_live_abcdefghijklmnop1234",
            "nested": {"keys": ["whsec_0123456789abcdef", "write key wk_segment_write_key_1234"]},
            "count": 3,
        },
    )

    assert cleaned == {
        "event": f"Authorization: Bearer {JWT_MASK}",
        "error": "Invalid API Key provided: sk_live_…1234",
        "nested": {"keys": ["whsec_…cdef", "write key [secret redacted]"]},
        "count": 3,
    }
    assert mask("session pw_0123 for auc_1 at 2025-01-01T00:00:00Z") == (
        "session pw_0123 for auc_1 at 2025-01-01T00:00:00Z"
    )


def test_a_token_or_key_that_reaches_a_log_line_is_masked_in_production_output(
    log_settings: Settings, json_logs: Callable[[], None], capfd: Capture
) -> None:
    json_logs()
    token = mint_token(log_settings, "buyer-1", "buyer")
    log = structlog.get_logger("payment_window.test")

    log.warning("header_seen", authorization=f"Bearer {token}")
    try:
        raise RuntimeError(f"Stripe refused key {STRIPE_KEY}")
    except RuntimeError:
        log.exception("stripe_call_failed")
    everything, lines = json_lines(capfd)

    assert [line["event"] for line in lines] == ["header_seen", "stripe_call_failed"]
    assert lines[0]["authorization"] == f"Bearer {JWT_MASK}"
    assert "[secret redacted]" in lines[1]["exception"]  # the configured key, matched exactly
    for secret in (token, STRIPE_KEY, JWT_SECRET, "sk_test_SECRET"):
        assert secret not in everything


# --- a request ----------------------------------------------------------------------------------


async def test_every_line_of_a_request_carries_its_correlation_and_session_ids_and_no_secret(
    api: Api, json_logs: Callable[[], None], capfd: Capture
) -> None:
    json_logs()
    service_token = api.token("service", "marketplace")
    admin_token = api.token("admin", "ops-1")
    headers = {"X-Request-ID": REQUEST_ID}
    json_lines(capfd)  # start-up lines are not part of a request

    created = await api.client.post(
        "/payments/checkout",
        json={
            "auctionId": "auc-logs-1",
            "makerId": "maker-1",
            "buyerId": "buyer-1",
            "amount": 4200,
            "currency": "usd",
        },
        headers={**headers, "Authorization": f"Bearer {service_token}"},
    )
    assert created.status_code == 201, created.text
    session_id = created.json()["sessionId"]
    _, create_lines = json_lines(capfd)

    admin = {**headers, "Authorization": f"Bearer {admin_token}"}
    read = await api.client.get(f"/payments/checkout/{session_id}/status", headers=admin)
    extended = await api.client.post(
        f"/payments/window/{session_id}/override",
        json={"action": "extend", "minutes": 30, "reason": "buyer asked"},
        headers=admin,
    )
    terminated = await api.client.post(
        f"/payments/window/{session_id}/override",
        json={"action": "terminate", "reason": "fraud check"},
        headers=admin,
    )
    # A refused token: its text must not reach the log either.
    forged = admin_token[:-4] + ("AAAA" if not admin_token.endswith("AAAA") else "BBBB")
    refused = await api.client.get(
        f"/payments/checkout/{session_id}/status",
        headers={**headers, "Authorization": f"Bearer {forged}"},
    )
    assert [read.status_code, extended.status_code, terminated.status_code] == [200, 200, 200]
    assert refused.status_code == 401
    assert created.headers["X-Request-ID"] == REQUEST_ID
    everything, session_lines = json_lines(capfd)

    lines = create_lines + session_lines
    assert {line["event"] for line in lines} >= {"payment_window_opened", "payment_window_closed"}
    for line in lines:
        assert line.get("correlation_id") == REQUEST_ID, line
        assert line.get("level") and line.get("timestamp"), line
    assert [line.get("session_id") for line in create_lines if "session_id" in line] == [
        session_id
    ] * sum("session_id" in line for line in create_lines)
    for line in session_lines:
        assert line.get("session_id") == session_id, line
    for secret in (STRIPE_KEY, service_token, admin_token, forged, JWT_SECRET):
        assert secret not in everything
    assert "sk_test_SECRET" not in everything


# --- an expiry pass -----------------------------------------------------------------------------


async def test_the_lines_of_an_expiry_pass_name_their_window(
    container: Container, stripe: RunningStripe, json_logs: Callable[[], None], capfd: Capture
) -> None:
    json_logs()
    windows = await seed_windows(container, stripe, 3)
    # One window's Stripe call fails, so the pass logs a retry as well as closings.
    stripe.fail_for(60, status=500, path=f"/{windows[0].checkout_session_id}/expire")
    json_lines(capfd)

    await container.expiry_task().run_pass()
    everything, lines = json_lines(capfd)

    ids = {window.id for window in windows}
    per_window = [line for line in lines if line["event"] not in PASS_EVENTS]
    assert {line["event"] for line in per_window} >= {"payment_window_closed"}
    for line in per_window:
        assert line.get("session_id") in ids, line
    assert {line["session_id"] for line in per_window} == ids
    assert STRIPE_KEY not in everything and "sk_test_SECRET" not in everything


async def test_every_line_of_an_expiry_pass_carries_a_correlation_id(
    container: Container, stripe: RunningStripe, json_logs: Callable[[], None], capfd: Capture
) -> None:
    json_logs()
    await seed_windows(container, stripe, 2, deadline=container.clock.now() - timedelta(seconds=1))
    json_lines(capfd)

    await container.expiry_task().run_pass()
    _, lines = json_lines(capfd)

    assert lines
    correlation_ids = {line.get("correlation_id") for line in lines}
    assert len(correlation_ids) == 1 and None not in correlation_ids, lines
