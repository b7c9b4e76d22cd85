"""Stripe's minimum charge per currency (https://docs.stripe.com/currencies, "Minimum and
maximum charge amounts"), in the currency's minor unit as the API takes amounts.

payment-window's `domain/money.py` keeps the same table for its own check before calling Stripe;
a test asserts the two agree.
"""

from __future__ import annotations

MINIMUM_CHARGE: dict[str, int] = {
    "usd": 50,
    "aed": 200,
    "aud": 50,
    "bgn": 100,
    "brl": 50,
    "cad": 50,
    "chf": 50,
    "czk": 1500,
    "dkk": 250,
    "eur": 50,
    "gbp": 30,
    "hkd": 400,
    "huf": 17500,
    "inr": 50,
    "jpy": 50,
    "mxn": 1000,
    "myr": 200,
    "nok": 300,
    "nzd": 50,
    "pln": 200,
    "ron": 200,
    "sek": 300,
    "sgd": 50,
    "thb": 1000,
}
ZERO_DECIMAL = frozenset(
    "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split()  # noqa: SIM905
)
_SYMBOL = {
    "usd": "$", "aud": "$", "cad": "$", "hkd": "$", "mxn": "$", "nzd": "$", "sgd": "$",
    "eur": "€", "gbp": "£", "jpy": "¥", "inr": "₹", "thb": "฿",
}  # fmt: skip


def too_small_message(currency: str) -> str:
    """Stripe's words, e.g. "... must add up to at least $0.50 usd" (or "175.00 Ft huf"-like
    for currencies without a prefix symbol: here, plainly "175.00 huf")."""
    minimum = MINIMUM_CHARGE[currency]
    major = str(minimum) if currency in ZERO_DECIMAL else f"{minimum / 100:.2f}"
    return (
        "The Checkout Session's total amount due must add up to at least "
        f"{_SYMBOL.get(currency, '')}{major} {currency}"
    )
