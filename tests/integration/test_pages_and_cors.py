"""`/`, the favicon, the timer element served from its one source, and CORS: off unless
PW_CORS_ORIGINS names an origin, and then for that origin on the three endpoints only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from api_harness import Api, api_settings, running_api
from devstripe.testing import RunningStripe
from pydantic import ValidationError

from payment_window.config import Settings

CLIENT_SRC = Path(__file__).resolve().parents[2] / "clients" / "web" / "src"
STATIC = Path(__file__).resolve().parents[2] / "src" / "payment_window" / "web" / "static"
SHOP = "https://shop.example"


@pytest.fixture
async def api(pg_settings: Settings, stripe: RunningStripe) -> AsyncIterator[Api]:
    async with running_api(api_settings(pg_settings, stripe)) as running:
        yield running


@pytest.fixture
async def cors_api(pg_settings: Settings, stripe: RunningStripe) -> AsyncIterator[Api]:
    settings = api_settings(pg_settings, stripe, cors_origins=[SHOP, "http://127.0.0.1:9000"])
    async with running_api(settings) as running:
        yield running


async def test_root_leads_to_the_operations_page(api: Api) -> None:
    response = await api.client.get("/")
    assert response.status_code == 307
    assert response.headers["location"] == "/ops"


async def test_the_favicon_is_there(api: Api) -> None:
    icon = await api.client.get("/favicon.svg")
    assert icon.status_code == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.content.startswith(b"<svg")
    legacy = await api.client.get("/favicon.ico")
    assert (legacy.status_code, legacy.headers["location"]) == (308, "/favicon.svg")


@pytest.mark.parametrize(
    "name",
    [
        "payment-window-timer.js",
        "timer.js",
        "format.js",
        "sse.js",
        "i18n.js",
        "messages.en.js",
        "messages.de.js",
    ],
)
async def test_the_element_is_served_from_its_one_source(api: Api, name: str) -> None:
    # The static folder links to clients/web/src; the wheel carries the files themselves.
    assert (STATIC / name).resolve() == (CLIENT_SRC / name).resolve()
    response = await api.client.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.content == (CLIENT_SRC / name).read_bytes()


async def test_without_origins_no_cors_at_all(api: Api) -> None:
    body = await api.open_window()
    path = f"/payments/checkout/{body['sessionId']}/status"
    read = await api.client.get(path, headers={"Origin": SHOP, **api.admin})
    assert read.status_code == 200
    assert "access-control-allow-origin" not in read.headers
    preflight = await api.client.options(
        path, headers={"Origin": SHOP, "Access-Control-Request-Method": "GET"}
    )
    assert "access-control-allow-origin" not in preflight.headers


async def test_the_configured_origin_gets_cors_on_the_three_endpoints(cors_api: Api) -> None:
    api = cors_api
    body = await api.open_window()
    sid = body["sessionId"]
    read = await api.client.get(
        f"/payments/checkout/{sid}/status", headers={"Origin": SHOP, **api.admin}
    )
    assert read.status_code == 200
    assert read.headers["access-control-allow-origin"] == SHOP
    assert "access-control-allow-credentials" not in read.headers
    # Errors carry it too, so the page can read the 401 and ask for a new token.
    unauthorized = await api.client.get(
        f"/payments/checkout/{sid}/status", headers={"Origin": SHOP}
    )
    assert unauthorized.status_code == 401
    assert unauthorized.headers["access-control-allow-origin"] == SHOP
    extend = await api.client.post(
        f"/payments/window/{sid}/override",
        json={"action": "extend", "minutes": 5},
        headers={"Origin": SHOP, **api.admin},
    )
    assert extend.status_code == 200
    assert extend.headers["access-control-allow-origin"] == SHOP
    preflight = await api.client.options(
        f"/payments/checkout/{sid}/events",
        headers={
            "Origin": SHOP,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, last-event-id",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == SHOP
    assert "Last-Event-ID" in preflight.headers["access-control-allow-headers"]
    for other in ("https://evil.example", "https://shop.example.evil.example", "null"):
        refused = await api.client.get(
            f"/payments/checkout/{sid}/status", headers={"Origin": other, **api.admin}
        )
        assert "access-control-allow-origin" not in refused.headers, other
    # The element's module: cacheable, so it varies on Origin even when asked without one.
    module = await api.client.get("/static/payment-window-timer.js", headers={"Origin": SHOP})
    assert module.headers["access-control-allow-origin"] == SHOP
    plain = await api.client.get("/static/payment-window-timer.js")
    assert "access-control-allow-origin" not in plain.headers
    assert "Origin" in plain.headers.get_list("vary")
    # Not one of the three: creating windows stays server to server.
    create = await api.client.options(
        "/payments/checkout", headers={"Origin": SHOP, "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in create.headers


@pytest.mark.parametrize("value", ["*", "https://shop.example/path", "shop.example", "https://*.x"])
def test_a_wildcard_or_a_non_origin_is_refused_at_start_up(value: str) -> None:
    with pytest.raises(ValidationError):
        Settings(cors_origins=value)  # type: ignore[arg-type]


def test_origins_are_read_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW_CORS_ORIGINS", "https://a.example, http://127.0.0.1:8080")
    assert Settings().cors_origins == ["https://a.example", "http://127.0.0.1:8080"]
    monkeypatch.delenv("PW_CORS_ORIGINS")
    assert Settings().cors_origins == []
