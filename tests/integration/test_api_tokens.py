"""Bearer tokens: no secret from the source verifies one; odd claims are a 401, never a 500."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from api_harness import JWT_SECRET, Api, api_settings, assert_error_shape, running_api
from conftest import settings_env
from devstripe.testing import RunningStripe
from liveserver import ThreadServer
from pydantic import SecretStr

from payment_window.api.app import create_app
from payment_window.api.auth import JWT_SECRET_FILE, mint_token
from payment_window.config import Environment, Settings

# The development secret that api/auth.py used to hold: it must verify nothing any more.
OLD_SOURCE_SECRET = "payment-window-development-secret-do-not-use-in-production"


@pytest.fixture
async def api(pg_settings: Settings, stripe: RunningStripe) -> AsyncIterator[Api]:
    async with running_api(api_settings(pg_settings, stripe)) as running:
        yield running


@pytest.fixture
def dev_settings(sqlite_settings: Settings, stripe: RunningStripe) -> Settings:
    """Development settings without PW_JWT_SECRET, over a SQLite file of this test's own."""
    return api_settings(sqlite_settings, stripe, jwt_secret=None)


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": "ops", "role": "admin", "iat": now, "exp": now + 600}
    claims.update(changes)
    return {key: value for key, value in claims.items() if value is not ...}


async def _status_with(api: Api, token: str) -> httpx.Response:
    opened = await api.open_window()
    return await api.client.get(
        f"/payments/checkout/{opened['sessionId']}/status",
        headers={"Authorization": f"Bearer {token}"},
    )


def _secret_file(settings: Settings) -> Path:
    return settings.data_dir / JWT_SECRET_FILE


async def test_a_token_signed_with_the_old_source_secret_is_refused(
    dev_settings: Settings,
) -> None:
    async with running_api(dev_settings) as api:
        token = jwt.encode(_claims(), OLD_SOURCE_SECRET, algorithm="HS256")
        response = await _status_with(api, token)
    assert response.status_code == 401, response.text
    assert_error_shape(response)


async def test_the_development_secret_is_made_once_private_and_reused(
    dev_settings: Settings,
) -> None:
    path = _secret_file(dev_settings)
    assert not path.exists()
    async with running_api(dev_settings) as api:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        secret = path.read_text()
        assert len(secret) >= 40
        token = mint_token(dev_settings, "ops", "admin")
        assert (await _status_with(api, token)).status_code == 200
    # A second process (a restart, or `payment-window demo`) reads the same secret.
    async with running_api(dev_settings) as api:
        assert path.read_text() == secret
        assert (await _status_with(api, token)).status_code == 200


def test_production_without_a_jwt_secret_does_not_start(dev_settings: Settings) -> None:
    production = dev_settings.model_copy(
        update={
            "env": Environment.PRODUCTION,
            "stripe_api_key": SecretStr("sk_live_x"),
            "jwt_secret": None,
        }
    )
    serve = subprocess.run(
        [sys.executable, "-m", "payment_window", "serve", "--port", "1"],
        env=settings_env(production),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert serve.returncode == 2 and "PW_JWT_SECRET" in serve.stderr, serve.stderr
    # Nor does an app built some other way: no generated secret verifies a token in production.
    with pytest.raises(ValueError, match="PW_JWT_SECRET"):
        create_app(production)


def test_the_demo_mints_tokens_the_running_service_accepts(dev_settings: Settings) -> None:
    with ThreadServer(create_app(dev_settings)) as server:
        env = settings_env(dev_settings)
        assert "PW_JWT_SECRET" not in env
        demo = subprocess.run(
            [sys.executable, "-m", "payment_window", "demo", "--url", server.url],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert demo.returncode == 0, demo.stderr
        session_id = re.search(r"window (pw_\w+) is open", demo.stdout)
        token = re.search(r"admin token \(for curl\):\s+(\S+)", demo.stdout)
        assert session_id and token, demo.stdout
        # Where a person goes next: the operations page (signed in) and the API docs.
        assert f"{server.url}/ops#token=" in demo.stdout
        assert f"{server.url}/docs" in demo.stdout
        ops = httpx.get(f"{server.url}/", follow_redirects=True)
        assert (ops.status_code, ops.url.path) == (200, "/ops")
        status = httpx.get(
            f"{server.url}/payments/checkout/{session_id.group(1)}/status",
            headers={"Authorization": f"Bearer {token.group(1)}"},
        )
    assert status.status_code == 200, status.text
    assert stat.S_IMODE(_secret_file(dev_settings).stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        (["admin"], 200),
        (["admin", "buyer"], 401),
        ([], 401),
        ({"name": "admin"}, 401),
        ([["admin"]], 401),
        ([{"admin": True}], 401),
        (7, 401),
        (None, 401),
    ],
    ids=[
        "one-in-list",
        "two",
        "empty-list",
        "object",
        "nested-list",
        "object-in-list",
        "int",
        "null",
    ],
)
async def test_a_role_claim_of_another_shape_is_a_401_not_a_500(
    api: Api, role: Any, expected: int
) -> None:
    token = jwt.encode(_claims(role=role), JWT_SECRET, algorithm="HS256")
    response = await _status_with(api, token)
    assert response.status_code == expected, response.text
    if expected == 401:
        assert_error_shape(response)


@pytest.mark.parametrize(
    "claims",
    [
        _claims(iat=...),
        _claims(exp=int(time.time()) + 86_400 + 3600),
        _claims(iat=int(time.time()) - 86_400, exp=int(time.time()) + 60),
        _claims(exp=10**400),
        _claims(iat=-(10**400)),
        _claims(iat="yesterday"),
        _claims(exp=1e300),
        _claims(iat=int(time.time()) + 3600, exp=int(time.time()) + 7200),
    ],
    ids=[
        "no-iat",
        "exp-beyond-max-ttl-from-now",
        "exp-beyond-max-ttl-from-iat",
        "huge-exp",
        "huge-negative-iat",
        "string-iat",
        "float-exp",
        "issued-in-the-future",
    ],
)
async def test_tokens_without_iat_or_living_too_long_are_refused(
    api: Api, claims: dict[str, Any]
) -> None:
    token = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
    response = await _status_with(api, token)
    assert response.status_code == 401, response.text
    assert_error_shape(response)


async def test_a_shorter_max_ttl_is_honoured(pg_settings: Settings, stripe: RunningStripe) -> None:
    settings = api_settings(pg_settings, stripe, jwt_max_ttl_seconds=300)
    async with running_api(settings) as api:
        refused = jwt.encode(_claims(), JWT_SECRET, algorithm="HS256")  # 600 s
        accepted = jwt.encode(_claims(exp=int(time.time()) + 300), JWT_SECRET, algorithm="HS256")
        assert (await _status_with(api, refused)).status_code == 401
        assert (await _status_with(api, accepted)).status_code == 200


@pytest.mark.parametrize(
    "claims",
    [
        _claims(sub="o" * 300),
        _claims(sub="ops\x00admin"),
        _claims(sub="ops\ud800"),
        _claims(role="maker", sub="m", makerId="maker\x00-1"),
        _claims(role="maker", sub="m", makerId="m" * 300),
    ],
    ids=["sub-longer-than-the-store-holds", "sub-with-nul", "sub-with-lone-surrogate",
         "maker-id-with-nul", "maker-id-too-long"],
)  # fmt: skip
async def test_a_token_naming_what_the_store_cannot_hold_is_a_401_not_a_500(
    api: Api, claims: dict[str, Any]
) -> None:
    token = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
    opened = await api.open_window()
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "k-1"}
    # The paths that write the caller's identity: the audit actor, the Idempotency-Key's owner.
    extend = await api.client.post(
        f"/payments/window/{opened['sessionId']}/override",
        json={"action": "extend", "minutes": 5},
        headers=headers,
    )
    create = await api.client.post(
        "/payments/checkout",
        json={"auctionId": "auc-odd", "makerId": "maker-1", "buyerId": "buyer-1",
              "amount": 1000, "currency": "usd"},
        headers=headers,
    )  # fmt: skip
    for response in (extend, create):
        assert response.status_code == 401, response.text
        assert_error_shape(response)
