"""Decoding the form bodies the Stripe SDKs send."""

from devstripe.app import decode_form


def test_nested_keys_become_dicts_and_lists() -> None:
    form = decode_form(
        [
            ("mode", "payment"),
            ("line_items[0][price_data][currency]", "eur"),
            ("line_items[0][quantity]", "1"),
            ("line_items[1][quantity]", "2"),
            ("metadata[sessionId]", "ps_1"),
            ("expand[]", "a"),
            ("expand[]", "b"),
        ]
    )

    assert form == {
        "mode": "payment",
        "line_items": [{"price_data": {"currency": "eur"}, "quantity": "1"}, {"quantity": "2"}],
        "metadata": {"sessionId": "ps_1"},
        "expand": ["a", "b"],
    }
