"""Real answers match the schema `/openapi.json` publishes for them: one model per response."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import pytest
from api_harness import Api, api_settings, running_api
from devstripe.testing import RunningStripe

from payment_window.config import Settings


@pytest.fixture
async def api(sqlite_settings: Settings, stripe: RunningStripe) -> AsyncIterator[Api]:
    async with running_api(api_settings(sqlite_settings, stripe)) as running:
        yield running


def _validator(spec: dict[str, Any], path: str) -> jsonschema.Draft202012Validator:
    """The published 200 schema of GET `path`, resolving `#/components/...` within the spec."""
    schema = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
    document = {**schema["schema"], "components": spec["components"]}
    return jsonschema.Draft202012Validator(
        document, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


async def _get(api: Api, url: str) -> Any:
    response = await api.client.get(url, headers=api.admin)
    assert response.status_code == 200, response.text
    return response.json()


async def test_operations_answers_validate_against_the_published_schemas(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    window = await api.open_window(windowMinutes=30, buyerId="by-schema")
    terminated = await api.client.post(
        f"/payments/window/{window['sessionId']}/override",
        json={"action": "terminate", "reason": "schema check"},
        headers=api.admin,
    )
    assert terminated.status_code == 200
    await api.open_window(windowMinutes=90)

    listing = await _get(api, "/payments/windows?limit=1")
    summary = await _get(api, "/payments/windows/summary")
    trail = await _get(api, f"/payments/checkout/{window['sessionId']}/audit")
    record = await _get(api, "/payments/buyers/by-schema/record?days=30")

    assert listing["items"] and listing["nextCursor"]
    assert summary["expiredLast24hByReason"] == {"admin_terminated": 1}
    assert len(trail) >= 2
    assert summary["repeatNonPayers"] == [{"buyerId": "by-schema", "unpaid": 1, "opened": 1}]
    assert record["lastUnpaid"]["sessionId"] == window["sessionId"]
    _validator(spec, "/payments/windows").validate(listing)
    _validator(spec, "/payments/windows/summary").validate(summary)
    _validator(spec, "/payments/checkout/{sessionId}/audit").validate(trail)
    _validator(spec, "/payments/buyers/{buyerId}/record").validate(record)
    status = await _get(api, f"/payments/checkout/{window['sessionId']}/status")
    _validator(spec, "/payments/checkout/{sessionId}/status").validate(status)


async def test_a_schema_names_every_key_the_answer_has(api: Api) -> None:
    """No key leaves undocumented: each published object lists exactly what is sent."""
    spec = (await api.client.get("/openapi.json")).json()
    await api.open_window(windowMinutes=30)
    item = (await _get(api, "/payments/windows"))["items"][0]
    await api.client.post(
        f"/payments/window/{item['sessionId']}/override",
        json={"action": "terminate"},
        headers=api.admin,
    )
    summary = await _get(api, "/payments/windows/summary")
    record = await _get(api, f"/payments/buyers/{item['buyerId']}/record")
    schemas = spec["components"]["schemas"]
    assert set(item) == set(schemas["WindowItemOut"]["properties"])
    assert set(summary) == set(schemas["SummaryOut"]["properties"])
    assert set(summary["repeatNonPayers"][0]) == set(schemas["RepeatNonPayerOut"]["properties"])
    assert set(record) == set(schemas["BuyerRecordOut"]["properties"])
    assert set(record["lastUnpaid"]) == set(schemas["UnpaidWindowOut"]["properties"])
