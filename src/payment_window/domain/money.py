"""Amounts are integers in the currency's smallest unit, as Stripe takes them."""

from __future__ import annotations

from payment_window.domain.errors import InvalidWindow

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
