"""PUT/GET /makers/{makerId}/policy: admins write, admins and the maker read, defaults otherwise."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from api_harness import Api, api_settings, assert_error_shape, running_api
from devstripe.testing import RunningStripe

from payment_window.config import Settings

POLICY = {"maxExtensionMinutes": 90, "makersMayOverride": True, "onExpiry": "notify_maker"}
CALLERS: dict[str, dict[str, str] | None] = {
    "admin": {"role": "admin", "sub": "ops"},
    "maker-own": {"role": "maker", "sub": "alice", "maker_id": "maker-7"},
    "maker-other": {"role": "maker", "sub": "bob", "maker_id": "maker-8"},
    "buyer": {"role": "buyer", "sub": "buyer-1"},
    "service": {"role": "service", "sub": "marketplace"},
    "no-token": None,
}


@pytest.fixture
async def api(pg_settings: Settings, stripe: RunningStripe) -> AsyncIterator[Api]:
    settings = api_settings(
        pg_settings, stripe, default_max_extension_minutes=720, default_makers_may_override=False
    )
    async with running_api(settings) as running:
        yield running


def _headers(api: Api, caller: str) -> dict[str, str]:
    who = CALLERS[caller]
    return api.auth(**who) if who else {}


async def test_a_maker_without_a_policy_gets_the_configured_defaults(api: Api) -> None:
    response = await api.client.get("/makers/maker-7/policy", headers=api.admin)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "maxExtensionMinutes": 720,
        "makersMayOverride": False,
        "onExpiry": "relist",
    }


async def test_an_admin_sets_a_policy_that_reads_back(api: Api) -> None:
    put = await api.client.put("/makers/maker-7/policy", json=POLICY, headers=api.admin)
    assert put.status_code == 200, put.text
    assert put.json() == POLICY
    got = await api.client.get("/makers/maker-7/policy", headers=_headers(api, "maker-own"))
    assert got.status_code == 200 and got.json() == POLICY


@pytest.mark.parametrize(
    ("caller", "read", "write"),
    [
        ("admin", 200, 200),
        ("maker-own", 200, 403),
        ("maker-other", 403, 403),
        ("buyer", 403, 403),
        ("service", 403, 403),
        ("no-token", 401, 401),
    ],
)
async def test_policy_rbac(api: Api, caller: str, read: int, write: int) -> None:
    got = await api.client.get("/makers/maker-7/policy", headers=_headers(api, caller))
    assert got.status_code == read, got.text
    put = await api.client.put("/makers/maker-7/policy", json=POLICY, headers=_headers(api, caller))
    assert put.status_code == write, put.text
    for response in (got, put):
        if response.status_code != 200:
            assert_error_shape(response)
    if write != 200:
        unchanged = await api.client.get("/makers/maker-7/policy", headers=api.admin)
        assert unchanged.json()["maxExtensionMinutes"] == 720


BAD_POLICIES: list[tuple[str, Any]] = [
    ("negative max", {**POLICY, "maxExtensionMinutes": -1}),
    ("max over 7 days", {**POLICY, "maxExtensionMinutes": 10081}),
    ("string max", {**POLICY, "maxExtensionMinutes": "60"}),
    ("float max", {**POLICY, "maxExtensionMinutes": 60.0}),
    ("string boolean", {**POLICY, "makersMayOverride": "true"}),
    ("integer boolean", {**POLICY, "makersMayOverride": 1}),
    ("unknown onExpiry", {**POLICY, "onExpiry": "delete"}),
    ("missing field", {"maxExtensionMinutes": 60, "makersMayOverride": True}),
    ("unknown field", {**POLICY, "priority": 1}),
]


@pytest.mark.parametrize("body", [c[1] for c in BAD_POLICIES], ids=[c[0] for c in BAD_POLICIES])
async def test_bad_policies_are_422_and_change_nothing(api: Api, body: Any) -> None:
    response = await api.client.put("/makers/maker-7/policy", json=body, headers=api.admin)
    assert response.status_code == 422, response.text
    assert assert_error_shape(response)["code"] == "invalid_request"
    unchanged = await api.client.get("/makers/maker-7/policy", headers=api.admin)
    assert unchanged.json()["maxExtensionMinutes"] == 720


async def test_an_impossible_maker_id_is_422(api: Api) -> None:
    response = await api.client.get("/makers/" + "m" * 129 + "/policy", headers=api.admin)
    assert response.status_code == 422
    assert "makerId" in assert_error_shape(response)["message"]
