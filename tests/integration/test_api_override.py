"""POST /payments/window/{sessionId}/override: who may act, policy limits, versions, races."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from api_harness import Api, api_settings, assert_error_shape, running_api
from devstripe.testing import RunningStripe
from sqlalchemy import func, select

from payment_window.adapters.tables import audit_log
from payment_window.config import Settings


@pytest.fixture
async def api(pg_settings: Settings, stripe: RunningStripe) -> AsyncIterator[Api]:
    async with running_api(api_settings(pg_settings, stripe)) as running:
        yield running


def _url(session_id: str) -> str:
    return f"/payments/window/{session_id}/override"


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def _audit_count(api: Api, action: str) -> int:
    async with api.container.engine.connect() as connection:
        query = select(func.count()).select_from(audit_log).where(audit_log.c.action == action)
        return int((await connection.execute(query)).scalar_one())


# (caller, the maker's policy lets makers override?) -> expected status for extend, terminate.
# Roles that may never override (buyer, service) get 403 before the window is even looked up;
# a maker asking about another maker's window gets 404, as for status: it does not exist for them.
RBAC: list[tuple[str, bool, int, int]] = [
    ("admin", False, 200, 200),
    ("maker-own", True, 200, 200),
    ("maker-own", False, 403, 403),
    ("maker-other", True, 404, 404),
    ("buyer-own", True, 403, 403),
    ("buyer-other", True, 403, 403),
    ("service", True, 403, 403),
    ("no-token", True, 401, 401),
]
CALLERS: dict[str, dict[str, str] | None] = {
    "admin": {"role": "admin", "sub": "ops"},
    "maker-own": {"role": "maker", "sub": "alice", "maker_id": "maker-own"},
    "maker-other": {"role": "maker", "sub": "bob", "maker_id": "maker-other"},
    "buyer-own": {"role": "buyer", "sub": "buyer-1"},
    "buyer-other": {"role": "buyer", "sub": "buyer-2"},
    "service": {"role": "service", "sub": "marketplace"},
    "no-token": None,
}
ACTIONS: dict[str, dict[str, Any]] = {
    "extend": {"action": "extend", "minutes": 30, "reason": "buyer asked"},
    "terminate": {"action": "terminate", "reason": "fraud check"},
}


async def test_override_rbac_matrix(api: Api) -> None:
    mismatches = []
    for caller, makers_may_override, *expected_by_action in RBAC:
        await api.set_policy("maker-own", makers_may_override=makers_may_override)
        for (action, body), expected in zip(ACTIONS.items(), expected_by_action, strict=True):
            opened = await api.open_window(makerId="maker-own", buyerId="buyer-1")
            before = await api.counts()
            who = CALLERS[caller]
            headers = api.auth(**who) if who else {}
            response = await api.client.post(_url(opened["sessionId"]), json=body, headers=headers)
            row = f"{caller} (policy allows: {makers_may_override}) {action}"
            if response.status_code != expected:
                mismatches.append(f"{row}: {response.status_code}, expected {expected}")
                continue
            if expected != 200:
                assert_error_shape(response)
                assert await api.counts() == before, row
                continue
            after = response.json()
            assert after["version"] > opened["version"], row
            if action == "extend":
                moved = _at(after["expiresAt"]) - _at(opened["expiresAt"])
                assert after["status"] == "open" and moved == timedelta(minutes=30), row
            else:
                assert after["status"] == "expired" and after["remainingTime"] == 0, row
                expected_reason = "admin_terminated" if caller == "admin" else "maker_terminated"
                assert after["reason"] == expected_reason, row
    assert not mismatches, "\n".join(mismatches)


async def test_a_closed_window_cannot_be_overridden(api: Api) -> None:
    opened = await api.open_window()
    terminated = await api.client.post(
        _url(opened["sessionId"]), json=ACTIONS["terminate"], headers=api.admin
    )
    assert terminated.status_code == 200, terminated.text
    for body in ACTIONS.values():
        response = await api.client.post(_url(opened["sessionId"]), json=body, headers=api.admin)
        assert response.status_code == 409, response.text
        assert assert_error_shape(response)["code"] == "window_not_open"


async def test_extension_past_policy_is_refused_naming_minutes_still_allowed(api: Api) -> None:
    await api.set_policy("maker-1", max_minutes=60)
    opened = await api.open_window()
    first = await api.client.post(
        _url(opened["sessionId"]), json={"action": "extend", "minutes": 45}, headers=api.admin
    )
    assert first.status_code == 200, first.text
    before = await api.counts()

    response = await api.client.post(
        _url(opened["sessionId"]), json={"action": "extend", "minutes": 30}, headers=api.admin
    )

    assert response.status_code == 422, response.text
    error = assert_error_shape(response)
    assert error["code"] == "extension_exceeds_policy"
    assert error["minutesStillAllowed"] == 15
    assert "15 minutes" in error["message"]
    assert await api.counts() == before


async def test_if_match_guards_against_stale_versions(api: Api) -> None:
    opened = await api.open_window()
    url, extend = _url(opened["sessionId"]), {"action": "extend", "minutes": 5}

    fresh = await api.client.post(url, json=extend, headers={**api.admin, "If-Match": '"1"'})
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["version"] == 2 and fresh.headers["etag"] == '"2"'

    stale = await api.client.post(url, json=extend, headers={**api.admin, "If-Match": "1"})
    assert stale.status_code == 412, stale.text
    assert assert_error_shape(stale)["code"] == "precondition_failed"

    for bad in ("abc", 'W/"2"', "2.0", "-1"):
        response = await api.client.post(url, json=extend, headers={**api.admin, "If-Match": bad})
        assert response.status_code == 400, (bad, response.text)
        assert assert_error_shape(response)["code"] == "invalid_if_match"

    current = await api.client.post(url, json=extend, headers={**api.admin, "If-Match": "2"})
    assert current.status_code == 200, current.text


BAD_BODIES: list[tuple[str, Any]] = [
    ("unknown action", {"action": "pause"}),
    ("no action", {"minutes": 5}),
    ("extend without minutes", {"action": "extend"}),
    ("minutes 0", {"action": "extend", "minutes": 0}),
    ("minutes over 7 days", {"action": "extend", "minutes": 10081}),
    ("string minutes", {"action": "extend", "minutes": "5"}),
    ("float minutes", {"action": "extend", "minutes": 5.0}),
    ("boolean minutes", {"action": "extend", "minutes": True}),
    ("terminate with minutes", {"action": "terminate", "minutes": 5}),
    ("reason of 501", {"action": "terminate", "reason": "x" * 501}),
    ("NUL in reason", {"action": "terminate", "reason": "a\u0000b"}),
    ("unknown field", {"action": "terminate", "force": True}),
    ("not an object", ["terminate"]),
]


@pytest.mark.parametrize("body", [case[1] for case in BAD_BODIES], ids=[c[0] for c in BAD_BODIES])
async def test_bad_override_bodies_are_422_and_change_nothing(api: Api, body: Any) -> None:
    opened = await api.open_window()
    before = await api.counts()
    response = await api.client.post(_url(opened["sessionId"]), json=body, headers=api.admin)
    assert response.status_code == 422, response.text
    assert assert_error_shape(response)["code"] == "invalid_request"
    assert await api.counts() == before


async def test_concurrent_extensions_never_exceed_the_policy(api: Api) -> None:
    await api.set_policy("maker-1", max_minutes=50)
    opened = await api.open_window()
    admins = [api.auth("admin", f"ops-{n}") for n in range(5)]

    responses = await asyncio.gather(
        *(
            api.client.post(
                _url(opened["sessionId"]), json={"action": "extend", "minutes": 20}, headers=h
            )
            for h in admins
        )
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 422, 422, 422], [r.text for r in responses]
    status = await api.client.get(
        f"/payments/checkout/{opened['sessionId']}/status", headers=api.admin
    )
    moved = _at(status.json()["expiresAt"]) - _at(opened["expiresAt"])
    assert moved == timedelta(minutes=40)
    assert await _audit_count(api, "payment_window_extended") == 2
