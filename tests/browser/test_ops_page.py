"""The operations page: summary, a sortable table with live countdowns, extend/terminate per row.

Uses the suite's server, browser and API helpers (conftest.py, checkout_page.py). Other tests
share the server, so assertions are about this test's own rows, or about the whole table's
order, never about how many rows there are.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from checkout_page import Api, iso
from conftest import screenshot_path
from devstripe.testing import RunningStripe
from playwright.sync_api import Locator, Page, expect

pytestmark = pytest.mark.browser


def _open(page: Page, api: Api, token: str | None = None) -> None:
    fragment = f"#token={token or api.token('admin', 'ops-lead')}"
    page.goto(f"{api.base_url}/ops{fragment}")


def _row(page: Page, session_id: str) -> Locator:
    return page.locator(f'tr[data-session-id="{session_id}"]')


def _order(page: Page, session_ids: list[str]) -> list[str]:
    shown: list[str] = page.locator("#window-rows tr").evaluate_all(
        "rows => rows.map(r => r.dataset.sessionId)"
    )
    return [sid for sid in shown if sid in session_ids]


def _overdue(api: Api, stripe: RunningStripe, maker_id: str, count: int) -> list[str]:
    """Windows past their deadline and still open, the way that happens: opened through the
    API with a deadline two seconds out, then an expiry pass whose Stripe calls fail (a 500)
    records the failure and leaves them open, to be retried."""
    soon = datetime.now(UTC) + timedelta(seconds=2)
    windows = [
        api.open_window(makerId=maker_id, buyerId=f"buyer-late-{number}", expiresAt=iso(soon))
        for number in range(count)
    ]
    for window in windows:
        api.wait_until_due(window["sessionId"])
        checkout_id = window["checkoutUrl"].rstrip("/").rsplit("/", 1)[-1]
        stripe.fail_next(1, status=500, path=f"{checkout_id}/expire")
    api.expire_due()
    for window in windows:
        assert api.status(window["sessionId"])["status"] == "open"
    return [window["sessionId"] for window in windows]


def test_the_page_shows_the_summary_and_every_window(ops_page: Page, api: Api) -> None:
    run = uuid.uuid4().hex[:6]
    mine = [
        api.open_window(makerId=f"{run}-maker", windowMinutes=minutes)["sessionId"]
        for minutes in (45, 200)
    ]
    _open(ops_page, api)

    expect(ops_page.locator("#ops")).to_have_attribute("data-state", "ready")
    summary = api.client.get("/payments/windows/summary", headers=api.auth("admin")).json()
    expect(ops_page.locator("#open-count")).to_have_text(str(summary["openCount"]))
    expect(ops_page.locator("#due-within-hour")).to_have_text(str(summary["dueWithinHour"]))
    expect(ops_page.locator("#overdue-count")).to_have_text(str(summary["overdueCount"]))
    expect(ops_page.locator("#undelivered-outbox")).to_have_text(str(summary["undeliveredOutbox"]))
    expect(ops_page.locator("#server-time")).not_to_have_text("…")
    soon, later = (_row(ops_page, sid) for sid in mine)
    expect(soon.locator("td.maker")).to_have_text(f"{run}-maker")
    expect(soon.locator("td.status")).to_have_text("open")
    expect(soon.locator("td.time-left")).to_have_text(re.compile(r"^44 mins? \d+ secs?$"))
    expect(soon).to_have_attribute("data-mood", "soon")
    expect(later.locator("td.time-left")).to_have_text(re.compile(r"^3 hrs 1[89] mins?$"))
    # Live: the seconds count down without a reload.
    first = soon.locator("td.time-left").inner_text()
    expect(soon.locator("td.time-left")).not_to_have_text(first)


def test_columns_sort_by_deadline_status_and_maker(ops_page: Page, api: Api) -> None:
    run = uuid.uuid4().hex[:6]
    opened = {
        maker: api.open_window(makerId=f"{run}-{maker}", windowMinutes=minutes)["sessionId"]
        for maker, minutes in (("c", 60), ("a", 240), ("b", 120))
    }
    terminated = api.override(opened["c"], action="terminate")
    assert terminated.status_code == 200
    ids = list(opened.values())
    _open(ops_page, api)
    expect(ops_page.locator("#ops")).to_have_attribute("data-state", "ready")

    deadline = ops_page.locator('th[data-sort="deadline"]')
    expect(deadline).to_have_attribute("aria-sort", "ascending")
    assert _order(ops_page, ids) == [opened["c"], opened["b"], opened["a"]]

    ops_page.get_by_role("button", name="Maker").click()
    expect(ops_page.locator('th[data-sort="maker"]')).to_have_attribute("aria-sort", "ascending")
    expect(deadline).to_have_attribute("aria-sort", "none")
    assert _order(ops_page, ids) == [opened["a"], opened["b"], opened["c"]]
    ops_page.get_by_role("button", name="Maker").click()
    expect(ops_page.locator('th[data-sort="maker"]')).to_have_attribute("aria-sort", "descending")
    assert _order(ops_page, ids) == [opened["c"], opened["b"], opened["a"]]

    ops_page.get_by_role("button", name="Status").click()
    statuses = ops_page.locator("#window-rows td.status").evaluate_all(
        "cells => cells.map(c => c.dataset.status)"
    )
    rank = ["open", "awaiting_payment_confirmation", "paid", "expired"]
    assert statuses == sorted(statuses, key=rank.index)
    assert _order(ops_page, ids) == [opened["b"], opened["a"], opened["c"]]
    expect(ops_page.locator("#announcer")).to_have_text("Sorted by status, ascending")


def test_extending_from_a_row_updates_its_countdown(ops_page: Page, api: Api) -> None:
    session_id = api.open_window(makerId="ops-extend", windowMinutes=20)["sessionId"]
    _open(ops_page, api)
    row = ops_page.locator(f'tr[data-session-id="{session_id}"]')
    left = row.locator("td.time-left")
    expect(left).to_have_text(re.compile(r"^19 mins \d+ secs?$"))
    before = row.locator("td.deadline time").get_attribute("datetime")

    manage = ops_page.get_by_role("button", name=f"Manage {session_id}")
    manage.click()
    expect(manage).to_have_attribute("aria-expanded", "true")
    controls = ops_page.get_by_role("region", name=f"Manage {session_id}")
    expect(controls.get_by_label("Extend by (minutes)")).to_be_focused()
    controls.get_by_label("Extend by (minutes)").fill("60")
    controls.get_by_label("Reason (optional, kept in the audit log)").fill("bank delay")
    controls.get_by_role("button", name="Extend window").click()

    expect(left).to_have_text(re.compile(r"^1 hr 19 mins?$"))
    expect(row).to_have_attribute("data-mood", "open")
    expect(ops_page.locator("#announcer")).to_have_text(re.compile(r"^Extended by 1 hour\."))
    after = row.locator("td.deadline time").get_attribute("datetime")
    assert before and after
    moved = datetime.fromisoformat(after.replace("Z", "+00:00")) - datetime.fromisoformat(
        before.replace("Z", "+00:00")
    )
    assert moved == timedelta(minutes=60)
    assert api.status(session_id)["version"] == 2

    # Terminate needs two presses; then the row shows the window closed and the controls go inert.
    close = controls.get_by_role("button", name=re.compile("close window now", re.I))
    close.click()
    close.click()
    expect(row.locator("td.status")).to_have_text("expired")
    expect(left).to_have_text("—")
    expect(controls.get_by_role("button", name="Extend window")).to_have_attribute(
        "aria-disabled", "true"
    )


@pytest.mark.parametrize(
    ("role", "message"),
    [
        ("maker", "operations admins only"),
        ("buyer", "operations admins only"),
        ("service", "operations admins only"),
        (None, "needs an admin token"),
    ],
)
def test_a_viewer_who_is_not_an_admin_sees_an_error(
    ops_page: Page, api: Api, role: str | None, message: str
) -> None:
    api.open_window()
    if role is None:
        ops_page.goto(f"{api.base_url}/ops")
    else:
        _open(ops_page, api, api.token(role, maker_id="maker-1" if role == "maker" else None))
    error = ops_page.locator("#page-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text(message)
    expect(ops_page.locator("#window-rows tr")).to_have_count(0)
    expect(ops_page.locator("#ops")).to_have_attribute("data-state", "error")
    expect(ops_page.locator("#open-count")).to_have_text("…")


def test_the_page_has_the_checkout_pages_security_headers(api: Api) -> None:
    ops = api.client.get("/ops")
    checkout = api.client.get("/checkout/pw_anything")
    assert ops.status_code == 200
    for header in (
        "content-security-policy",
        "referrer-policy",
        "cache-control",
        "x-content-type-options",
        "x-frame-options",
    ):
        assert ops.headers[header] == checkout.headers[header], header


def test_screenshot_of_the_operations_page(
    ops_page: Page, api: Api, stripe_server: RunningStripe, tmp_path: Path
) -> None:
    """A few windows in every state an operator cares about (`make docs` keeps it as
    docs/ops-page.png)."""
    _overdue(api, stripe_server, "maker-north", 2)
    for maker, minutes in (("maker-south", 35), ("maker-east", 125), ("maker-north", 600)):
        api.open_window(makerId=maker, windowMinutes=minutes)
    # A buyer who let two windows close unpaid: their record shows beside each of their windows.
    for minutes in (45, 90, 240):
        session_id = api.open_window(buyerId="buyer-slow", windowMinutes=minutes)["sessionId"]
        if minutes < 240:
            assert api.override(session_id, action="terminate").status_code == 200
    _open(ops_page, api)
    expect(ops_page.locator("#ops")).to_have_attribute("data-state", "ready")
    expect(ops_page.locator('tr[data-mood="overdue"]').first).to_be_visible()
    ops_page.locator('tr[data-mood="open"] button.manage').first.click()
    screenshot = screenshot_path(tmp_path, "ops-page.png")
    ops_page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
