"""`payment-window policy`: the real CLI in a child process, on the store the API reads."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest
from api_harness import Api, api_settings, running_api
from conftest import settings_env
from devstripe.testing import RunningStripe
from sqlalchemy import select

from payment_window.adapters.tables import maker_policy_audit
from payment_window.config import Settings


@pytest.fixture
async def api(pg_settings: Settings, stripe: RunningStripe) -> AsyncIterator[Api]:
    async with running_api(api_settings(pg_settings, stripe)) as running:
        yield running


async def cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "payment_window",
        *args,
        env=settings_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(child.communicate(), timeout=60)
    assert child.returncode is not None
    return child.returncode, out.decode(), err.decode()


async def policy_via_api(api: Api, maker_id: str) -> object:
    response = await api.client.get(f"/makers/{maker_id}/policy", headers=api.admin)
    assert response.status_code == 200, response.text
    return response.json()


async def test_an_operator_sets_second_chance_offers_and_the_api_reads_it(
    api: Api, pg_settings: Settings
) -> None:
    code, out, err = await cli(pg_settings, "policy", "mk-cli")
    assert code == 0, err
    assert "the defaults" in out and "relist" in out

    code, out, err = await cli(
        pg_settings, "policy", "mk-cli", "--on-expiry", "offer_next_bidder",
        "--max-extension-minutes", "45",
    )  # fmt: skip

    assert code == 0, err
    assert "its own" in out and "offer_next_bidder" in out
    assert await policy_via_api(api, "mk-cli") == {
        "maxExtensionMinutes": 45,
        "makersMayOverride": False,  # unchanged from the default
        "onExpiry": "offer_next_bidder",
    }
    # Through the use case: audited like the API's PUT, naming the operator.
    assert await policy_changes(api, "mk-cli") == [
        (
            "admin:cli",
            None,
            {
                "maxExtensionMinutes": 45,
                "makersMayOverride": False,
                "onExpiry": "offer_next_bidder",
            },
        )
    ]


async def policy_changes(api: Api, maker_id: str) -> list[tuple[str, object, object]]:
    async with api.container.engine.connect() as connection:
        rows = await connection.execute(
            select(maker_policy_audit)
            .where(maker_policy_audit.c.maker_id == maker_id)
            .order_by(maker_policy_audit.c.id)
        )
        return [(row.actor, row.before, row.after) for row in rows]


async def test_an_admins_policy_change_through_the_api_is_audited_who_before_after(
    api: Api,
) -> None:
    body = {"maxExtensionMinutes": 30, "makersMayOverride": True, "onExpiry": "notify_maker"}
    first = await api.client.put("/makers/mk-a/policy", json=body, headers=api.admin)
    assert first.status_code == 200, first.text
    second = {**body, "maxExtensionMinutes": 90}
    assert (
        await api.client.put("/makers/mk-a/policy", json=second, headers=api.admin)
    ).status_code == 200
    refused = await api.client.put(
        "/makers/mk-a/policy", json=body, headers=api.auth("maker", "m-1", "mk-a")
    )
    assert refused.status_code == 403

    assert await policy_changes(api, "mk-a") == [
        ("admin:admin-1", None, body),
        ("admin:admin-1", body, second),
    ]


@pytest.mark.parametrize(
    "args",
    [
        ("mk-cli", "--on-expiry", "give_away"),
        ("mk-cli", "--max-extension-minutes", "-5"),
        ("mk\tcli", "--on-expiry", "relist"),  # the API refuses control characters too
    ],
)
async def test_bad_input_is_refused_and_changes_nothing(
    api: Api, pg_settings: Settings, args: tuple[str, ...]
) -> None:
    code, _, err = await cli(pg_settings, "policy", *args)

    assert code == 2 and err
    assert (await policy_via_api(api, "mk-cli"))["onExpiry"] == "relist"  # type: ignore[index]
