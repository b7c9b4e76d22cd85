"""The operations page's maker policy form: an admin reads a maker's policy, chooses a
second-chance offer for unpaid windows and saves it; the API then answers with it."""

from __future__ import annotations

import uuid

import pytest
from checkout_page import Api, assert_no_axe_violations
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


def open_ops(page: Page, api: Api) -> None:
    page.goto(f"{api.base_url}/ops#token={api.token('admin', 'ops-lead')}")
    expect(page.locator("#ops")).to_have_attribute("data-state", "ready")


def show_policy(page: Page, maker_id: str) -> None:
    page.get_by_label("Maker id", exact=True).fill(maker_id)
    page.get_by_role("button", name="Show policy").click()


def test_an_admin_chooses_a_second_chance_offer_for_a_maker(ops_page: Page, api: Api) -> None:
    maker = f"maker-{uuid.uuid4().hex[:6]}"
    open_ops(ops_page, api)
    expect(ops_page.locator("#policy-form")).to_be_hidden()  # nothing to edit before a lookup

    show_policy(ops_page, maker)
    expect(ops_page.locator("#policy-form")).to_be_visible()
    message = ops_page.locator("#policy-message")
    expect(message).to_contain_text("an unpaid window will relist the auction")
    expect(ops_page.get_by_label("Relist the auction")).to_be_checked()
    assert_no_axe_violations(ops_page)  # the form, open, with the rest of the page
    ops_page.get_by_label("Offer it to the next bidder (second chance)").check()
    ops_page.get_by_label("Extension allowed over a window's life, in minutes").fill("30")
    ops_page.get_by_role("button", name="Save policy").click()

    expect(message).to_contain_text(f"Saved for maker {maker}")
    expect(message).to_contain_text("offer it to the next bidder")
    saved = api.client.get(f"/makers/{maker}/policy", headers=api.auth("admin")).json()
    assert saved["onExpiry"] == "offer_next_bidder" and saved["maxExtensionMinutes"] == 30
    # Read back in a fresh page: the form shows what the store holds.
    open_ops(ops_page, api)
    show_policy(ops_page, maker)
    expect(ops_page.get_by_label("Offer it to the next bidder (second chance)")).to_be_checked()


def test_a_refused_policy_is_reported_and_not_saved(ops_page: Page, api: Api) -> None:
    maker = f"maker-{uuid.uuid4().hex[:6]}"
    open_ops(ops_page, api)
    show_policy(ops_page, maker)
    minutes = ops_page.get_by_label("Extension allowed over a window's life, in minutes")
    # Past the form's own limit: remove it, as a hand-edited request would.
    minutes.evaluate("node => node.removeAttribute('max')")
    minutes.fill("999999")
    ops_page.get_by_role("button", name="Save policy").click()

    expect(ops_page.locator("#policy-message")).to_contain_text("Not saved:")
    expect(ops_page.locator("#policy-message")).to_have_attribute("data-kind", "error")
    assert_no_axe_violations(ops_page)  # the error as it is shown
    saved = api.client.get(f"/makers/{maker}/policy", headers=api.auth("admin")).json()
    assert saved["maxExtensionMinutes"] != 999999
