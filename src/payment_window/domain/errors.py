"""Domain errors: plain exceptions that one handler maps to the HTTP error shape."""

from __future__ import annotations


class DomainError(Exception):
    """Base for every rule the domain refuses to break."""

    code = "domain_error"


class SessionNotFound(DomainError):
    code = "session_not_found"

    def __init__(self, session_id: str) -> None:
        super().__init__(f"no payment session {session_id}")
        self.session_id = session_id


class WindowNotOpen(DomainError):
    code = "window_not_open"

    def __init__(self, session_id: str, status: str) -> None:
        super().__init__(f"payment window {session_id} is {status}, not open")
        self.status = status


class InvalidTransition(DomainError):
    code = "invalid_transition"

    def __init__(self, from_status: str, to_status: str) -> None:
        super().__init__(f"a session cannot go from {from_status} to {to_status}")


class ExtensionExceedsPolicy(DomainError):
    code = "extension_exceeds_policy"

    def __init__(self, requested: int, still_allowed: int) -> None:
        super().__init__(
            f"extending by {requested} minutes exceeds the maker's policy; "
            f"{still_allowed} minutes are still allowed"
        )
        self.requested = requested
        self.still_allowed = still_allowed


class WindowElapsed(DomainError):
    """The deadline has passed: the window is closing, whether or not the worker got to it."""

    code = "window_elapsed"

    def __init__(self, session_id: str) -> None:
        super().__init__(f"payment window {session_id} is past its deadline")
        self.session_id = session_id


class OverrideNotAllowed(DomainError):
    code = "forbidden"


class VersionConflict(DomainError):
    """Someone changed the session since it was read."""

    code = "version_conflict"

    def __init__(self, session_id: str, expected: int) -> None:
        super().__init__(f"session {session_id} changed since version {expected}")
        self.expected = expected


class PreconditionFailed(DomainError):
    """The caller's If-Match version is stale."""

    code = "precondition_failed"


class InvalidWindow(DomainError):
    code = "invalid_window"


class PaymentProviderUnavailable(DomainError):
    """Stripe could not be reached or kept failing; nothing was changed."""

    code = "payment_provider_unavailable"

    def __init__(self, message: str, kind: str = "other") -> None:
        super().__init__(message)
        # server_error | rate_limited | connection | timeout | not_configured | other
        self.kind = kind


class CheckoutNotOpen(DomainError):
    """Stripe refused to expire a Checkout Session because it is no longer open."""

    code = "checkout_not_open"

    def __init__(self, checkout_session_id: str, status: str) -> None:
        super().__init__(f"checkout session {checkout_session_id} is {status}")
        self.checkout_session_id = checkout_session_id
        self.status = status


class InvalidWebhook(DomainError):
    """A webhook whose signature, timestamp or body cannot be trusted."""

    code = "invalid_webhook"


class WindowAlreadyOpen(DomainError):
    """An auction has one unsettled window at a time; `session_id` is that window."""

    code = "window_already_open"

    def __init__(self, auction_id: str, session_id: str | None) -> None:
        super().__init__(f"auction {auction_id} already has a payment window that is not settled")
        self.auction_id = auction_id
        self.session_id = session_id


class AuctionAlreadyPaid(DomainError):
    """An auction is paid once: a second window would let the buyer pay twice."""

    code = "auction_already_paid"

    def __init__(self, auction_id: str, session_id: str) -> None:
        super().__init__(f"auction {auction_id} is already paid")
        self.auction_id = auction_id
        self.session_id = session_id


class AmountTooSmall(DomainError):
    """Below Stripe's minimum charge for the currency: Stripe would refuse the session."""

    code = "amount_too_small"

    def __init__(self, currency: str, minimum: int, minimum_text: str) -> None:
        super().__init__(f"the minimum charge in {currency.upper()} is {minimum_text}")
        self.currency = currency
        self.minimum = minimum  # in the currency's minor unit


class CheckoutSessionMissing(DomainError):
    """Stripe has no Checkout Session by this id (`resource_missing`): retrying cannot help."""

    code = "checkout_session_missing"

    def __init__(self, checkout_session_id: str) -> None:
        super().__init__(f"Stripe has no checkout session {checkout_session_id}")
        self.checkout_session_id = checkout_session_id


class CheckoutRefused(DomainError):
    """Stripe refused to create the Checkout Session (an `invalid_request_error`)."""

    code = "checkout_refused"

    def __init__(self, stripe_code: str | None, message: str, param: str | None = None) -> None:
        super().__init__(message)
        # Stripe's own code (`amount_too_small`, `parameter_invalid_integer`, ...) when it gave one.
        self.stripe_code = stripe_code
        # The parameter Stripe refused (`expires_at`, ...) when it named one.
        self.param = param


class WindowUnreadable(DomainError):
    """A stored window this version cannot read (a status written by a newer version, say).

    It is set aside, never acted on: another version may know it, so a caller retries."""

    code = "window_unreadable"

    def __init__(self, session_id: str, problem: str) -> None:
        super().__init__(f"payment window {session_id} cannot be read by this version")
        self.session_id = session_id
        self.problem = problem


class StoreUnavailable(DomainError):
    """The store did not answer in time (down, failing over, frozen): the caller retries."""

    code = "store_unavailable"


class WindowOutlivesCheckout(DomainError):
    """A window on a Checkout Session another integration made cannot end after it: the
    service cannot remake a session it did not compose."""

    code = "window_outlives_checkout"

    def __init__(self, checkout_session_id: str, latest_end: str) -> None:
        super().__init__(
            f"the window would end after checkout session {checkout_session_id} does; "
            f"the latest end is {latest_end}"
        )
        self.checkout_session_id = checkout_session_id
        self.latest_end = latest_end


class CheckoutRecoveryEnabled(DomainError):
    """Stripe would make a recovery session once this one expires, which nobody enforces."""

    code = "checkout_recovery_enabled"

    def __init__(self, checkout_session_id: str) -> None:
        super().__init__(
            f"checkout session {checkout_session_id} has after_expiration.recovery.enabled: "
            "Stripe would offer the buyer a new session after the window closes"
        )


class CheckoutNotFound(DomainError):
    """A Checkout Session to attach to that Stripe does not know (on that account)."""

    code = "checkout_not_found"

    def __init__(self, checkout_session_id: str, account: str | None) -> None:
        where = f"on account {account}" if account else "on the platform account"
        super().__init__(f"Stripe has no checkout session {checkout_session_id} {where}")


class CheckoutAlreadyAttached(DomainError):
    """Another window already enforces this Checkout Session."""

    code = "checkout_already_attached"

    def __init__(self, checkout_session_id: str, session_id: str) -> None:
        super().__init__(
            f"checkout session {checkout_session_id} already has payment window {session_id}"
        )
        self.session_id = session_id
