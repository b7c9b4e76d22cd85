"""Liveness, readiness, the checkout page, request ids and the error shape of the framework."""

from __future__ import annotations

import asyncio
import gc
import socket
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import structlog
from api_harness import Api, api_settings, assert_error_shape, running_api
from devstripe.testing import RunningStripe
from seeding import seed_windows

from payment_window.api.app import create_app
from payment_window.config import Settings
from payment_window.domain.access import Actor, Role
from payment_window.domain.session import Status


@pytest.fixture
async def api(pg_settings: Settings, stripe: RunningStripe) -> AsyncIterator[Api]:
    async with running_api(api_settings(pg_settings, stripe)) as running:
        yield running


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


PYPROJECT_VERSION = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())[
    "project"
]["version"]


async def test_healthz_answers_without_a_token_and_names_the_release(api: Api) -> None:
    response = await api.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": PYPROJECT_VERSION}


async def test_readyz_is_ok_when_store_and_index_answer(api: Api) -> None:
    response = await api.client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok", "version": PYPROJECT_VERSION}


async def test_readyz_is_503_when_the_database_is_unreachable(
    pg_settings: Settings, stripe: RunningStripe
) -> None:
    unreachable = Settings(
        database_url=f"postgresql://postgres@127.0.0.1:{_closed_port()}/test", redis_url=None
    )
    async with running_api(api_settings(unreachable, stripe)) as api:
        response = await api.client.get("/readyz")
        healthz = await api.client.get("/healthz")
    assert response.status_code == 503, response.text
    error = assert_error_shape(response)
    assert error["code"] == "not_ready"
    assert error["checks"] == {"store": "unreachable", "index": "unreachable"}
    assert "store" in error["message"]
    assert healthz.status_code == 200


async def test_readyz_names_an_unreachable_index(
    pg_settings: Settings, stripe: RunningStripe
) -> None:
    settings = api_settings(pg_settings, stripe, redis_url=f"redis://127.0.0.1:{_closed_port()}/0")
    async with running_api(settings) as api:
        response = await api.client.get("/readyz")
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["checks"] == {"store": "ok", "index": "unreachable"}
    assert error["message"] == "index unreachable"


async def test_checkout_page_is_served_with_strict_headers(api: Api) -> None:
    response = await api.client.get("/checkout/pw_0123456789abcdef01234567")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert 'data-session-id="pw_0123456789abcdef01234567"' in response.text
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "unsafe-eval" not in csp


async def test_checkout_page_escapes_the_session_id(api: Api) -> None:
    response = await api.client.get('/checkout/"><script>alert(1)<%2Fscript>')
    assert "<script>alert(1)" not in response.text


async def test_static_files_are_served(api: Api) -> None:
    response = await api.client.get("/static/timer.js")
    assert response.status_code == 200
    assert "javascript" in response.headers["content-type"]


async def test_request_ids_are_echoed_generated_and_logged(api: Api) -> None:
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        opened = await api.client.post(
            "/payments/checkout",
            json={
                "auctionId": "auc-logged",
                "makerId": "maker-1",
                "buyerId": "buyer-1",
                "amount": 500,
                "currency": "eur",
            },
            headers={**api.admin, "X-Request-ID": "req-abc.123"},
        )
    assert opened.status_code == 201
    assert opened.headers["x-request-id"] == "req-abc.123"
    opened_logs = [e for e in logs if e["event"] == "payment_window_opened"]
    assert opened_logs and opened_logs[0]["correlation_id"] == "req-abc.123"

    generated = await api.client.get("/healthz")
    assert len(generated.headers["x-request-id"]) == 32
    tampered = await api.client.get("/healthz", headers={"X-Request-ID": "bad id\twith tabs"})
    assert tampered.headers["x-request-id"] != "bad id\twith tabs"
    assert structlog.contextvars.get_contextvars().get("correlation_id") is None


async def test_session_id_is_bound_for_a_request(api: Api) -> None:
    opened = await api.open_window()
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        await api.client.post(
            f"/payments/window/{opened['sessionId']}/override",
            json={"action": "terminate"},
            headers=api.admin,
        )
    closed = [e for e in logs if e["event"] == "payment_window_closed"]
    assert closed and closed[0]["session_id"] == opened["sessionId"]
    assert "correlation_id" in closed[0]


async def test_framework_errors_use_the_error_shape(api: Api) -> None:
    unknown = await api.client.get("/no/such/route")
    assert unknown.status_code == 404
    assert assert_error_shape(unknown)["code"] == "not_found"
    wrong_method = await api.client.get("/payments/checkout")
    assert wrong_method.status_code == 405
    assert assert_error_shape(wrong_method)["code"] == "method_not_allowed"
    assert "POST" in wrong_method.headers["allow"]


async def test_a_bug_is_a_generic_500_without_a_trace(api: Api) -> None:
    async def broken() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    api.app.add_api_route("/_test/broken", broken)
    response = await api.client.get("/_test/broken", headers={"X-Request-ID": "req-bug"})
    assert response.status_code == 500
    error = assert_error_shape(response)
    assert error["code"] == "internal_error"
    assert "req-bug" in error["message"]
    assert "hunter2" not in response.text and "RuntimeError" not in response.text
    assert response.headers["x-request-id"] == "req-bug"


async def test_openapi_is_published(api: Api) -> None:
    response = await api.client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["info"]["title"] == "payment-window"
    assert {
        "/payments/checkout",
        "/payments/checkout/{sessionId}/status",
        "/payments/window/{sessionId}/override",
        "/makers/{makerId}/policy",
        "/healthz",
        "/readyz",
    } <= set(document["paths"])


async def test_background_worker_closes_due_windows_while_serving(
    pg_settings: Settings, stripe: RunningStripe
) -> None:
    settings = api_settings(pg_settings, stripe, worker_max_sleep_seconds=0.2, serve_loops="worker")
    app = create_app(settings, background=True)
    async with app.router.lifespan_context(app):
        container = app.state.container
        [due] = await seed_windows(container, stripe, 1)
        admin = Actor("ops", Role.ADMIN)
        for _ in range(150):
            if (await container.windows.status(due.id, admin)).status is Status.EXPIRED:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the background worker did not close the due window within 15 s")


async def test_start_up_heap_is_kept_out_of_the_collector_once_serving(
    pg_settings: Settings, stripe: RunningStripe
) -> None:
    # A full collection over the start-up heap paused every request ~140 ms (docs/performance.md).
    gc.unfreeze()
    app = create_app(api_settings(pg_settings, stripe))
    assert gc.get_freeze_count() == 0
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() > 10_000
