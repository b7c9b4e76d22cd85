"""The operations API: who may read it, filters, keyset pages while windows change, the summary's
figures and a session's audit trail — over PostgreSQL and the local Stripe server."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from api_harness import Api, api_settings, assert_error_shape, running_api
from devstripe.testing import RunningStripe
from seeding import count_rows, seed_windows

from payment_window.api.routes.operations import (
    AuditEntryOut,
    SummaryOut,
    WindowListOut,
)
from payment_window.config import Settings


@pytest.fixture
async def api(pg_settings: Settings, stripe: RunningStripe) -> AsyncIterator[Api]:
    settings = api_settings(pg_settings, stripe, stripe_expire_rps=100_000.0)
    async with running_api(settings) as running:
        yield running


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def _list(api: Api, **params: Any) -> dict[str, Any]:
    response = await api.client.get("/payments/windows", params=params, headers=api.admin)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    WindowListOut.model_validate(body)
    return body


async def _all_pages(api: Api, limit: int, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(100):
        body = await _list(api, limit=limit, **({"cursor": cursor} if cursor else {}), **params)
        assert len(body["items"]) <= limit
        items.extend(body["items"])
        cursor = body["nextCursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination never ended")


def _keys(items: list[dict[str, Any]]) -> list[tuple[datetime, str]]:
    return [(datetime.fromisoformat(item["expiresAt"]), item["sessionId"]) for item in items]


# --- who may read it ------------------------------------------------------------------------

CALLERS: dict[str, dict[str, str] | None] = {
    "admin": {"role": "admin", "sub": "ops"},
    "maker-own": {"role": "maker", "sub": "alice", "maker_id": "maker-own"},
    "maker-other": {"role": "maker", "sub": "bob", "maker_id": "maker-other"},
    "buyer-own": {"role": "buyer", "sub": "buyer-own"},
    "buyer-other": {"role": "buyer", "sub": "buyer-2"},
    "service": {"role": "service", "sub": "marketplace"},
    "no-token": None,
}
# Listing and the summary are for admins only. The audit trail is also the session's maker's;
# buyers and services may never read audit trails, so they get 403 by role before anything is
# looked up (as for overrides), while another maker gets 404: the session does not exist for them.
RBAC: dict[str, dict[str, int]] = {
    "list": {
        "admin": 200,
        "maker-own": 403,
        "maker-other": 403,
        "buyer-own": 403,
        "buyer-other": 403,
        "service": 403,
        "no-token": 401,
    },
    "summary": {
        "admin": 200,
        "maker-own": 403,
        "maker-other": 403,
        "buyer-own": 403,
        "buyer-other": 403,
        "service": 403,
        "no-token": 401,
    },
    "audit": {
        "admin": 200,
        "maker-own": 200,
        "maker-other": 404,
        "buyer-own": 403,
        "buyer-other": 403,
        "service": 403,
        "no-token": 401,
    },
}


async def test_every_operations_endpoint_enforces_its_roles(api: Api) -> None:
    opened = await api.open_window(makerId="maker-own", buyerId="buyer-own")
    urls = {
        "list": "/payments/windows",
        "summary": "/payments/windows/summary",
        "audit": f"/payments/checkout/{opened['sessionId']}/audit",
    }
    mismatches = []
    for endpoint, expected_by_caller in RBAC.items():
        for caller, expected in expected_by_caller.items():
            who = CALLERS[caller]
            response = await api.client.get(urls[endpoint], headers=api.auth(**who) if who else {})
            if response.status_code != expected:
                mismatches.append(f"{endpoint} as {caller}: {response.status_code} != {expected}")
            elif expected != 200:
                error = assert_error_shape(response)
                assert opened["sessionId"] not in response.text or expected == 404, error
                if expected == 401:
                    assert response.headers["www-authenticate"].startswith("Bearer")
    assert not mismatches, "\n".join(mismatches)


async def test_an_unknown_session_has_no_audit_trail_even_for_admins(api: Api) -> None:
    response = await api.client.get("/payments/checkout/pw_nope/audit", headers=api.admin)
    assert response.status_code == 404
    assert assert_error_shape(response)["code"] == "session_not_found"


# --- filters --------------------------------------------------------------------------------


async def test_filters_narrow_the_list(api: Api, stripe: RunningStripe) -> None:
    now = datetime.now(UTC)
    a = [await api.open_window(makerId="mk-a", windowMinutes=m) for m in (30, 90, 300)]
    b = [await api.open_window(makerId="mk-b", windowMinutes=m) for m in (45, 600)]
    overdue = await seed_windows(
        api.container, stripe, 3, deadline=now - timedelta(minutes=20), maker_id="mk-c"
    )
    closed = await api.open_window(makerId="mk-b", windowMinutes=120)
    terminated = await api.client.post(
        f"/payments/window/{closed['sessionId']}/override",
        json={"action": "terminate"},
        headers=api.admin,
    )
    assert terminated.status_code == 200

    def ids(body: dict[str, Any]) -> set[str]:
        return {item["sessionId"] for item in body["items"]}

    assert ids(await _list(api, makerId="mk-a")) == {w["sessionId"] for w in a}
    assert ids(await _list(api, makerId="mk-b", status="open")) == {w["sessionId"] for w in b}
    assert ids(await _list(api, status="expired")) == {closed["sessionId"]}
    assert ids(await _list(api, auctionId=a[1]["auctionId"])) == {a[1]["sessionId"]}
    assert ids(await _list(api, overdue="true")) == {s.id for s in overdue}
    within_hour = await _list(api, dueAfter=_iso(now), dueBefore=_iso(now + timedelta(hours=1)))
    assert ids(within_hour) == {a[0]["sessionId"], b[0]["sessionId"]}
    assert ids(await _list(api, dueBefore=_iso(now))) == {s.id for s in overdue}

    everything = await _list(api, limit=200)
    assert len(everything["items"]) == 9 and everything["nextCursor"] is None
    assert _keys(everything["items"]) == sorted(_keys(everything["items"]))
    item = next(i for i in everything["items"] if i["sessionId"] == b[1]["sessionId"])
    assert {k: item[k] for k in b[1] if k not in ("serverTime", "remainingTime")} == {
        k: v for k, v in b[1].items() if k not in ("serverTime", "remainingTime")
    }
    assert item["buyerId"] == "buyer-1" and item["attempts"] == 0
    assert item["lastStripeError"] is None
    assert 599 * 60 <= item["remainingTime"] <= 600 * 60


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 201},
        {"status": "nearly"},
        {"dueBefore": "2030-01-01T00:00:00"},
        {"dueAfter": "tomorrow"},
        {"overdue": "perhaps"},
        {"makerId": "a\x01b"},
    ],
)
async def test_bad_filters_are_refused_with_422(api: Api, params: dict[str, Any]) -> None:
    response = await api.client.get("/payments/windows", params=params, headers=api.admin)
    assert response.status_code == 422, response.text
    assert assert_error_shape(response)["code"] == "invalid_request"


async def test_a_cursor_is_checked(api: Api) -> None:
    for _ in range(3):
        await api.open_window()
    first = await _list(api, limit=2, status="open")
    assert first["nextCursor"]
    for params, message in [
        ({"cursor": "bm90LWEtY3Vyc29y"}, "not one this service handed out"),
        ({"cursor": first["nextCursor"], "status": "expired"}, "other filters"),
    ]:
        response = await api.client.get("/payments/windows", params=params, headers=api.admin)
        assert response.status_code == 400, response.text
        error = assert_error_shape(response)
        assert error["code"] == "invalid_cursor" and message in error["message"]


# --- pages ----------------------------------------------------------------------------------


async def _open_spread(api: Api, count: int, start: datetime) -> list[dict[str, Any]]:
    """Windows for several makers; every third pair shares a deadline (the id breaks the tie)."""
    opened = []
    for number in range(count):
        deadline = start + timedelta(minutes=10 * (number // 3 * 3 if number % 3 == 2 else number))
        opened.append(
            await api.open_window(
                makerId=f"mk-{number % 4}",
                buyerId=f"by-{number}",
                expiresAt=_iso(deadline.replace(microsecond=0)),
            )
        )
    return opened


async def test_pages_concatenate_to_the_full_ordered_list(api: Api) -> None:
    start = datetime.now(UTC) + timedelta(hours=1)
    opened = await _open_spread(api, 25, start)
    assert len({w["expiresAt"] for w in opened}) < 25, "some deadlines should tie"

    full = (await _list(api, limit=200))["items"]
    paged = await _all_pages(api, 7)

    assert [i["sessionId"] for i in paged] == [i["sessionId"] for i in full]
    assert len(paged) == 25 == len({i["sessionId"] for i in paged})
    assert _keys(paged) == sorted(_keys(paged))
    maker_pages = await _all_pages(api, 7, makerId="mk-1")
    assert [i["sessionId"] for i in maker_pages] == [
        i["sessionId"] for i in full if i["makerId"] == "mk-1"
    ]


async def test_paging_while_windows_open_and_move_loses_and_repeats_none_that_stayed(
    api: Api,
) -> None:
    start = datetime.now(UTC) + timedelta(hours=1)
    opened = await _open_spread(api, 25, start)
    before = [i["sessionId"] for i in (await _list(api, limit=200))["items"]]

    seen: list[dict[str, Any]] = []
    first = await _list(api, limit=7)
    second = await _list(api, limit=7, cursor=first["nextCursor"])
    seen += first["items"] + second["items"]
    cursor = second["nextCursor"]

    # Between pages: new windows before the cursor, after it and at the very end; one window
    # already handed out and one not yet reached are extended past everything.
    handed_out, not_reached = seen[3]["sessionId"], before[20]
    early = await api.open_window(expiresAt=_iso(start - timedelta(minutes=5)))
    middle = await api.open_window(expiresAt=_iso(start + timedelta(minutes=155, seconds=7)))
    for moved in (handed_out, not_reached):
        response = await api.client.post(
            f"/payments/window/{moved}/override",
            json={"action": "extend", "minutes": 600},
            headers=api.admin,
        )
        assert response.status_code == 200, response.text

    third = await _list(api, limit=7, cursor=cursor)
    seen += third["items"]
    late = await api.open_window(expiresAt=_iso(start + timedelta(hours=20)))
    while third["nextCursor"]:
        third = await _list(api, limit=7, cursor=third["nextCursor"])
        seen += third["items"]

    counts = Counter(item["sessionId"] for item in seen)
    stayed = [sid for sid in before if sid not in (handed_out, not_reached)]
    assert all(counts[sid] == 1 for sid in stayed), {s: counts[s] for s in stayed if counts[s] != 1}
    assert [sid for sid in (i["sessionId"] for i in seen) if sid in stayed] == stayed
    # The extended window not yet reached comes once, at its new deadline; the one already
    # handed out comes again at its new deadline with a higher version.
    assert counts[not_reached] == 1
    assert counts[handed_out] == 2
    versions = [i["version"] for i in seen if i["sessionId"] == handed_out]
    assert versions[1] > versions[0]
    # New windows behind the cursor wait for the next listing; those ahead of it are seen.
    assert counts[early["sessionId"]] == 0
    assert counts[middle["sessionId"]] == 1 and counts[late["sessionId"]] == 1
    assert len(opened) == 25


# --- the summary ----------------------------------------------------------------------------


async def test_summary_figures_match_a_known_set_of_windows(
    api: Api, stripe: RunningStripe
) -> None:
    container = api.container
    now = datetime.now(UTC)
    later = [await api.open_window(windowMinutes=120) for _ in range(3)]
    soon = [await api.open_window(windowMinutes=30) for _ in range(2)]
    response = await api.client.post(
        f"/payments/window/{later[0]['sessionId']}/override",
        json={"action": "terminate", "reason": "fraud check"},
        headers=api.admin,
    )
    assert response.status_code == 200
    await seed_windows(container, stripe, 4, deadline=now - timedelta(minutes=30))
    report = await container.expiry_task().run_pass()
    assert report.claimed == 4

    # Two more overdue windows, which Stripe then refuses to expire: they stay open, failing.
    stuck = await seed_windows(
        container, stripe, 2, deadline=now - timedelta(minutes=20), spread=timedelta(minutes=5)
    )
    stripe.fail_for(60, path="/expire")
    try:
        await container.expiry_task().run_pass()
    finally:
        stripe.clear_faults()

    response = await api.client.get("/payments/windows/summary", headers=api.admin)
    assert response.status_code == 200, response.text
    summary = response.json()
    SummaryOut.model_validate(summary)
    server_time = datetime.fromisoformat(summary["serverTime"])
    oldest = (server_time - stuck[0].expires_at).total_seconds()

    assert summary["openCount"] == 2 + 2 + 2
    assert summary["dueWithinHour"] == len(soon)
    assert summary["overdueCount"] == 2
    assert abs(summary["oldestOverdueSeconds"] - oldest) <= 1
    assert summary["failingAtStripe"] == 2
    assert summary["undeliveredOutbox"] == await count_rows(container, "outbox") > 0
    assert summary["expiredLast24hByReason"] == {"admin_terminated": 1, "window_elapsed": 4}

    failing = await _list(api, overdue="true")
    assert {i["sessionId"] for i in failing["items"]} == {s.id for s in stuck}
    assert all(i["attempts"] == 1 and i["lastStripeError"] for i in failing["items"])


async def test_an_empty_store_sums_to_zero(api: Api) -> None:
    response = await api.client.get("/payments/windows/summary", headers=api.admin)
    body = response.json()
    assert {k: v for k, v in body.items() if k != "serverTime"} == {
        "openCount": 0,
        "dueWithinHour": 0,
        "overdueCount": 0,
        "oldestOverdueSeconds": None,
        "failingAtStripe": 0,
        "awaitingConfirmationOverDay": 0,
        "duplicatePayments": 0,
        "undeliveredOutbox": 0,
        "expiredLast24hByReason": {},
        "buyerPeriodDays": 90,
        "repeatNonPayers": [],
        # The Stripe budget, at its full pace: no 429 has slowed it.
        "stripeBudgetRps": api.container.settings.stripe_rps,
        "stripeBudgetMaxRps": api.container.settings.stripe_rps,
    }


async def test_a_429_from_stripe_shows_on_the_summary_as_a_slower_stripe_budget(
    api: Api, stripe: RunningStripe
) -> None:
    full = api.container.settings.stripe_rps
    stripe.rate_limit_next(1, path="/v1/checkout/sessions")

    refused = await api.client.post(
        "/payments/checkout",
        json={
            "auctionId": f"auc-{uuid.uuid4().hex[:6]}",
            "makerId": "maker-1",
            "buyerId": "buyer-1",
            "amount": 12_500,
            "currency": "usd",
        },
        headers=api.auth("service", "marketplace"),
    )
    body = (await api.client.get("/payments/windows/summary", headers=api.admin)).json()

    assert refused.status_code == 503
    assert body["stripeBudgetMaxRps"] == full
    # Halved at once, growing back by a twentieth of the budget a second.
    assert full / 2 <= body["stripeBudgetRps"] < full * 0.6


# --- the audit trail ------------------------------------------------------------------------


async def test_the_audit_trail_tells_the_sessions_story_in_order(api: Api) -> None:
    opened = await api.open_window(makerId="maker-own", auctionId=f"auc-{uuid.uuid4().hex[:6]}")
    sid = opened["sessionId"]
    url = f"/payments/window/{sid}/override"
    extend = {"action": "extend", "minutes": 45, "reason": "bank holiday"}
    assert (await api.client.post(url, json=extend, headers=api.admin)).status_code == 200
    terminate = {"action": "terminate", "reason": "buyer withdrew"}
    assert (await api.client.post(url, json=terminate, headers=api.admin)).status_code == 200

    for who in ({"role": "admin", "sub": "ops"}, CALLERS["maker-own"]):
        assert who is not None
        response = await api.client.get(f"/payments/checkout/{sid}/audit", headers=api.auth(**who))
        assert response.status_code == 200, response.text
        trail = response.json()
        for entry in trail:
            AuditEntryOut.model_validate(entry)
        assert [e["action"] for e in trail] == [
            "payment_window_opened",
            "payment_window_extended",
            "payment_expired",
        ]
        actors = [e["actor"] for e in trail]
        assert actors == ["service:marketplace", "admin:admin-1", "admin:admin-1"]
        assert [(e["fromStatus"], e["toStatus"]) for e in trail] == [
            (None, "open"),
            ("open", "open"),
            ("open", "expired"),
        ]
        assert [e["id"] for e in trail] == sorted(e["id"] for e in trail)
        assert [e["at"] for e in trail] == sorted(e["at"] for e in trail)
        assert all(e["at"].endswith("Z") for e in trail)
        assert trail[0]["details"]["expiresAt"] == opened["expiresAt"]
        extended = trail[1]["details"]
        assert extended["minutes"] == 45 and extended["reason"] == "bank holiday"
        assert extended["previousExpiresAt"] == opened["expiresAt"]
        closed = trail[2]["details"]
        assert closed["reason"] == "admin_terminated" and closed["note"] == "buyer withdrew"
