"""The real app over a real store and the local Stripe server, driven in-process with httpx."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from devstripe.testing import RunningStripe
from fastapi import FastAPI
from pydantic import SecretStr
from seeding import count_rows

from payment_window.api.app import create_app
from payment_window.api.auth import mint_token
from payment_window.bootstrap import Container, bootstrap
from payment_window.config import Settings

JWT_SECRET = "api-tests-secret-0123456789abcdef0123456789abcdef"
TABLES = ("payment_sessions", "audit_log", "outbox")


def api_settings(base: Settings, stripe: RunningStripe, **update: Any) -> Settings:
    """`base` with the local Stripe (no SDK retries: a down Stripe fails fast) and a JWT secret."""
    return base.model_copy(
        update={
            "stripe_api_key": SecretStr("sk_test_x"),
            "stripe_api_base": stripe.url,
            "stripe_max_network_retries": 0,
            "jwt_secret": SecretStr(JWT_SECRET),
            # Tests that measure the Stripe budget set their own.
            "stripe_rps": 100_000.0,
            **update,
        }
    )


@dataclass
class Api:
    app: FastAPI
    container: Container
    client: httpx.AsyncClient

    def token(self, role: str, sub: str | None = None, maker_id: str | None = None) -> str:
        return mint_token(self.container.settings, sub or f"{role}-1", role, maker_id=maker_id)

    def auth(
        self, role: str, sub: str | None = None, maker_id: str | None = None
    ) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, sub, maker_id)}"}

    @property
    def admin(self) -> dict[str, str]:
        return self.auth("admin")

    async def open_window(self, **fields: Any) -> dict[str, Any]:
        """A new window (as the marketplace service) for a fresh auction; its status body."""
        body = {
            "auctionId": f"auc-{uuid.uuid4().hex[:10]}",
            "makerId": "maker-1",
            "buyerId": "buyer-1",
            "amount": 12_500,
            "currency": "usd",
            **fields,
        }
        response = await self.client.post(
            "/payments/checkout", json=body, headers=self.auth("service", "marketplace")
        )
        assert response.status_code == 201, response.text
        opened: dict[str, Any] = response.json()
        return opened

    async def set_policy(
        self, maker_id: str, *, max_minutes: int = 1440, makers_may_override: bool = False
    ) -> None:
        response = await self.client.put(
            f"/makers/{maker_id}/policy",
            json={
                "maxExtensionMinutes": max_minutes,
                "makersMayOverride": makers_may_override,
                "onExpiry": "relist",
            },
            headers=self.admin,
        )
        assert response.status_code == 200, response.text

    async def counts(self) -> dict[str, int]:
        return {table: await count_rows(self.container, table) for table in TABLES}


@asynccontextmanager
async def running_api(settings: Settings) -> AsyncIterator[Api]:
    container = await bootstrap(settings)
    app = create_app(container=container)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Api(app, container, client)
    finally:
        await container.close()


def assert_error_shape(response: httpx.Response) -> dict[str, Any]:
    """The one error shape: `{"error": {"code": str, "message": str, ...}}`, no trace."""
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert isinstance(error.get("code"), str) and error["code"], body
    assert isinstance(error.get("message"), str) and error["message"], body
    assert "Traceback" not in response.text
    return error
