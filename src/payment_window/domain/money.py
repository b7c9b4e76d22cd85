"""Amounts are integers in the currency's smallest unit, as Stripe takes them."""

from __future__ import annotations

from payment_window.domain.errors import AmountTooSmall, InvalidWindow

# Stripe's presentment currencies (ISO 4217, lower case).
CURRENCIES = frozenset(
    """
    usd aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob
    brl bsd bwp byn bzd cad cdf chf clp cny cop crc cve czk djf dkk dop dzd egp etb
    eur fjd fkp gbp gel gip gmd gnf gtq gyd hkd hnl htg huf idr ils inr isk jmd jod
    jpy kes kgs khr kmf krw kwd kyd kzt lak lbp lkr lrd lsl mad mdl mga mkd mmk mnt
    mop mur mvr mwk mxn myr mzn nad ngn nio nok npr nzd omr pab pen pgk php pkr pln
    pyg qar ron rsd rub rwf sar sbd scr sek sgd shp sle sos srd std szl thb tjs tnd
    top try ttd twd tzs uah ugx uyu uzs vnd vuv wst xaf xcd xof xpf yer zar zmw
    """.split()  # noqa: SIM905
)
# Stripe refuses charges above eight digits in the smallest unit (99,999,999).
MAX_AMOUNT = 99_999_999


def checked_currency(code: str) -> str:
    """A known ISO 4217 code, in Stripe's lower case."""
    normalised = code.strip().lower()
    if normalised not in CURRENCIES:
        raise InvalidWindow(f"unknown currency code {code!r}")
    return normalised


def checked_amount(amount: int) -> int:
    if amount < 1 or amount > MAX_AMOUNT:
        raise InvalidWindow(
            f"amount must be from 1 to {MAX_AMOUNT} in the currency's smallest unit"
        )
    return amount


# Stripe's minimum charge per currency (https://docs.stripe.com/currencies, "Minimum and maximum
# charge amounts"), in minor units. The local Stripe stand-in keeps its own copy as Stripe's
# data; tests/unit/test_money.py asserts the two agree.
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
# Amounts in these are whole units already (https://docs.stripe.com/currencies#zero-decimal).
ZERO_DECIMAL = frozenset(
    "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split()  # noqa: SIM905
)


# Stripe takes these in thousandths but settles them in hundredths: the last digit must be 0
# (https://docs.stripe.com/currencies#three-decimal).
THREE_DECIMAL = frozenset("bhd jod kwd omr tnd".split())  # noqa: SIM905


def check_three_decimal(amount: int, currency: str) -> None:
    """Refuse, before Stripe does, a three-decimal amount whose last digit is not 0."""
    code = currency.strip().lower()
    if code in THREE_DECIMAL and amount % 10 != 0:
        raise InvalidWindow(
            f"amounts in {code.upper()} are in thousandths, but Stripe only charges them in "
            f"hundredths: the amount must end in 0 (e.g. {amount - amount % 10} or "
            f"{amount - amount % 10 + 10})"
        )


def minimum_charge(currency: str) -> int | None:
    """Stripe's smallest charge in `currency`'s minor unit; None where Stripe lists none
    (it then converts to the account's currency and applies that minimum)."""
    return MINIMUM_CHARGE.get(currency.strip().lower())


def major_units(amount: int, currency: str) -> str:
    """`amount` in minor units as people write it: 50 EUR cents is "0.50", 50 JPY is "50"."""
    if currency.strip().lower() in ZERO_DECIMAL:
        return str(amount)
    if currency.strip().lower() in THREE_DECIMAL:
        return f"{amount // 1000}.{amount % 1000:03d}"
    return f"{amount // 100}.{amount % 100:02d}"


def check_minimum(amount: int, currency: str) -> None:
    """Refuse, before Stripe does, an amount below Stripe's minimum charge for `currency`."""
    minimum = minimum_charge(currency)
    if minimum is not None and amount < minimum:
        raise AmountTooSmall(currency.strip().lower(), minimum, major_units(minimum, currency))
