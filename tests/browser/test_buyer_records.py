"""The operations page shows each window's buyer record beside it, links to the buyer's windows,
and lists the repeat non-payers; axe finds no accessibility violation in any of it.

The suite's server is shared, so the buyers here are this test's own (a fresh id per run) and
assertions are about their rows only.
"""

from __future__ import annotations

import re
import uuid

import pytest
from checkout_page import Api, assert_no_axe_violations
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


def _windows_closed_unpaid(api: Api, buyer_id: str, unpaid: int, running: int) -> list[str]:
    """`unpaid` windows an admin terminates, then `running` left open: every session id."""
    ids = []
    for number in range(unpaid + running):
        session_id = api.open_window(buyerId=buyer_id, windowMinutes=60 + number)["sessionId"]
        if number < unpaid:
            assert api.override(session_id, action="terminate").status_code == 200
        ids.append(session_id)
    return ids


def test_each_window_shows_its_buyers_record_and_links_to_their_windows(
    ops_page: Page, api: Api
) -> None:
    run = uuid.uuid4().hex[:6]
    repeat, prompt = f"by-{run}-late", f"by-{run}-prompt"
    late_ids = _windows_closed_unpaid(api, repeat, unpaid=3, running=1)
    [prompt_id] = _windows_closed_unpaid(api, prompt, unpaid=0, running=1)

    ops_page.goto(f"{api.base_url}/ops#token={api.token('admin', 'ops-lead')}")
    expect(ops_page.locator("#ops")).to_have_attribute("data-state", "ready")

    for session_id in late_ids:
        row = ops_page.locator(f'tr[data-session-id="{session_id}"]')
        expect(row.locator("td.buyer a")).to_have_text(repeat)
        expect(row.locator(".buyer-record")).to_have_text("3 of 4 unpaid in 90 days")
        expect(row.locator(".buyer-record")).to_have_attribute("data-unpaid", "3")
    prompt_row = ops_page.locator(f'tr[data-session-id="{prompt_id}"]')
    expect(prompt_row.locator(".buyer-record")).to_have_text("0 of 1 unpaid in 90 days")

    # The repeat non-payers, from the summary.
    listed = ops_page.get_by_role("table", name=re.compile("Repeat non-payers"))
    entry = listed.locator(f'tr[data-buyer-id="{repeat}"]')
    expect(entry.locator("td.unpaid")).to_have_text("3")
    expect(entry.locator("td.opened")).to_have_text("4")
    expect(listed.locator(f'tr[data-buyer-id="{prompt}"]')).to_have_count(0)
    expect(ops_page.locator("#non-payers-days")).to_have_text("90")
    assert_no_axe_violations(ops_page)

    # The link shows the buyer's windows, and only theirs, on the same page.
    entry.get_by_role("link", name=repeat).click()
    expect(ops_page).to_have_url(re.compile(rf"/ops\?buyerId={re.escape(repeat)}$"))
    expect(ops_page.get_by_label("Buyer")).to_have_value(repeat)
    expect(ops_page.locator("#window-rows tr[data-session-id]")).to_have_count(len(late_ids))
    shown = ops_page.locator("#window-rows tr[data-session-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.sessionId)"
    )
    assert sorted(shown) == sorted(late_ids)
    expect(ops_page.locator("#announcer")).to_have_text(f"Showing the windows of buyer {repeat}")
    assert_no_axe_violations(ops_page)

    # The address works on its own too: a reload keeps the filter.
    ops_page.reload()
    expect(ops_page.locator("#ops")).to_have_attribute("data-state", "ready")
    expect(ops_page.locator("#window-rows tr[data-session-id]")).to_have_count(len(late_ids))
