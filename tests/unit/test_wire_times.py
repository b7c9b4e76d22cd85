"""The one reading of a client's time (a body's `expiresAt`, a listing's `dueBefore`)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from payment_window.api.schemas import PolicyBody, aware_utc_time
from payment_window.domain.policy import OnExpiry


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2030-01-01T12:00:00Z", datetime(2030, 1, 1, 12, tzinfo=UTC)),
        ("2030-01-01T14:30:00+02:30", datetime(2030, 1, 1, 12, tzinfo=UTC)),
        ("2030-01-01T12:00:00.250-00:00", datetime(2030, 1, 1, 12, 0, 0, 250_000, tzinfo=UTC)),
    ],
)
def test_a_time_with_a_zone_is_read_in_utc(text: str, utc: datetime) -> None:
    parsed = aware_utc_time(text)
    assert parsed == utc and parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    ["2030-01-01T12:00:00", "20300101", "tomorrow", "", 1_900_000_000, None],
    ids=["no zone", "digit string", "words", "empty", "unix number", "null"],
)
def test_anything_else_is_refused_with_an_example(value: object) -> None:
    with pytest.raises(ValueError, match="2030-01-01T12:00:00Z"):
        aware_utc_time(value)


def test_a_time_with_no_utc_form_is_refused() -> None:
    with pytest.raises(ValueError, match="between years 1 and 9999"):
        aware_utc_time("9999-12-31T23:59:59-05:00")


def test_a_policy_body_carries_the_domains_on_expiry() -> None:
    body = PolicyBody.model_validate(
        {"maxExtensionMinutes": 30, "makersMayOverride": True, "onExpiry": "offer_next_bidder"}
    )
    assert body.to_policy().on_expiry is OnExpiry.OFFER_NEXT_BIDDER
    with pytest.raises(ValueError):
        PolicyBody.model_validate(
            {"maxExtensionMinutes": 30, "makersMayOverride": True, "onExpiry": "burn"}
        )
