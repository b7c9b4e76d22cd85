"""Bearer JWTs (PyJWT): HS256 with `PW_JWT_SECRET`, or RS256 from a JWKS URL in production.

Exactly one algorithm is accepted, and `iat`, `exp`, `sub` and `role` are required (`makerId`
too for makers); `exp` may lie at most `PW_JWT_MAX_TTL_SECONDS` after `iat` and after now.
Anything else — no token, `alg: none`, another algorithm, a bad signature, expired, too
long-lived — is a 401 with a `WWW-Authenticate: Bearer` challenge. No secret written in the
source verifies a token: without `PW_JWT_SECRET`, development generates one per installation.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import jwt
import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from payment_window.api.errors import ApiError, Unauthorized
from payment_window.config import Environment, Settings
from payment_window.domain.access import Actor, Role

log = structlog.get_logger(__name__)

DEFAULT_TTL = timedelta(hours=1)
ROLES = frozenset(role.value for role in Role)
JWT_SECRET_FILE = "payment-window.jwt-secret"

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="A JWT with `sub`, `role` (admin, maker, buyer, service), `iat`, `exp`, and "
    "`makerId` for makers.",
)


def hs256_secret(settings: Settings) -> str:
    """The HMAC secret: PW_JWT_SECRET, else (development only) this installation's own.

    The development secret is generated on first need and kept beside the SQLite database, so
    `payment-window demo` in one process mints tokens that `serve` in another accepts, while no
    secret written in the source ever verifies a token.
    """
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    if settings.env is Environment.DEVELOPMENT:
        return development_secret(settings.data_dir / JWT_SECRET_FILE)
    raise ValueError("PW_JWT_SECRET is not set")


def development_secret(path: Path) -> str:
    """The secret kept in `path` (mode 0600), created with a random one if there is none yet."""
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written under a private name, then linked into place: two processes starting together
    # both end up reading the one that won, and nobody ever reads a half-written file.
    descriptor, draft = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(secrets.token_urlsafe(32))
        try:
            os.link(draft, path)
            log.info("jwt_development_secret_created", path=str(path))
        except FileExistsError:
            pass
    finally:
        os.unlink(draft)
    return _read_secret(path)


def _read_secret(path: Path) -> str:
    secret = path.read_text(encoding="ascii").strip()
    if len(secret) < 32:
        raise ValueError(f"{path} holds no usable secret; delete it to have a new one made")
    return secret


def mint_token(
    settings: Settings,
    sub: str,
    role: Role | str,
    maker_id: str | None = None,
    ttl: timedelta = DEFAULT_TTL,
    **claims: Any,
) -> str:
    """An HS256 token the API accepts (for the CLI demo and tests); not for JWKS deployments.

    It lives `ttl`, at most `PW_JWT_MAX_TTL_SECONDS`.
    """
    if settings.jwt_jwks_url:
        raise ValueError("tokens for a JWKS (RS256) deployment come from its identity provider")
    lifetime = min(ttl.total_seconds(), settings.jwt_max_ttl_seconds)
    now = int(time.time())
    payload: dict[str, Any] = {
        "sub": sub,
        "role": Role(role).value,
        "iat": now,
        "exp": int(now + lifetime),
    }
    if maker_id is not None:
        payload["makerId"] = maker_id
    if settings.jwt_audience:
        payload["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        payload["iss"] = settings.jwt_issuer
    payload.update(claims)
    return jwt.encode(payload, hs256_secret(settings), algorithm="HS256")


# The store names an actor `role:subject` in 256 characters (the longest role has 7) and keeps
# maker ids in 128: a token whose identities it cannot store is refused, never a 500.
MAX_SUBJECT_LENGTH = 200
MAX_MAKER_ID_LENGTH = 128


def _storable(value: str, limit: int) -> bool:
    """Within `limit` and printable: no U+0000 or other control character (PostgreSQL text
    cannot hold U+0000), no lone surrogate (not encodable as UTF-8)."""
    return len(value) <= limit and value.isprintable()


def actor_from_claims(claims: dict[str, Any]) -> Actor:
    subject, role, maker_id = claims.get("sub"), claims.get("role"), claims.get("makerId")
    if not isinstance(subject, str) or not subject:
        raise Unauthorized("the token's sub claim must be a non-empty string")
    if not _storable(subject, MAX_SUBJECT_LENGTH):
        raise Unauthorized(
            f"the token's sub claim must be at most {MAX_SUBJECT_LENGTH} printable characters"
        )
    if isinstance(maker_id, str) and not _storable(maker_id, MAX_MAKER_ID_LENGTH):
        raise Unauthorized(
            f"the token's makerId claim must be at most {MAX_MAKER_ID_LENGTH} printable characters"
        )
    # Some identity providers send roles as a list; one role is unambiguous, more are not.
    if isinstance(role, list) and len(role) == 1:
        role = role[0]
    if not isinstance(role, str) or role not in ROLES:
        raise Unauthorized(f"the token's role must be one of {', '.join(sorted(ROLES))}")
    if role == Role.MAKER.value and (not isinstance(maker_id, str) or not maker_id):
        raise Unauthorized("a maker's token needs a makerId claim")
    return Actor(
        subject=subject,
        role=Role(role),
        maker_id=maker_id if isinstance(maker_id, str) else None,
    )


VERIFIED_TOKENS_KEPT = 10_000


class TokenVerifier:
    """Verifies bearer tokens with the one configured algorithm and key."""

    def __init__(self, settings: Settings) -> None:
        self._jwks: jwt.PyJWKClient | None = None
        self._secret: str | None = None
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._max_ttl = settings.jwt_max_ttl_seconds
        self._verified: dict[str, tuple[Actor, float]] = {}
        if settings.jwt_jwks_url:
            self.algorithm = "RS256"
            # Constructing the client fetches nothing; keys are fetched on first use and cached.
            self._jwks = jwt.PyJWKClient(settings.jwt_jwks_url, cache_keys=True, lifespan=300)
        else:
            self.algorithm = "HS256"
            self._secret = hs256_secret(settings)
            if settings.jwt_secret is None:
                log.warning(
                    "jwt_development_secret",
                    path=str(settings.data_dir / JWT_SECRET_FILE),
                    hint="PW_JWT_SECRET is unset: accepting tokens signed with this "
                    "installation's generated development secret; mint them with "
                    "`payment-window demo` or payment_window.api.auth.mint_token",
                )

    async def verify(self, token: str) -> Actor:
        """The token's actor (see `verify_until`)."""
        actor, _ = await self.verify_until(token)
        return actor

    async def verify_until(self, token: str) -> tuple[Actor, float]:
        """The token's actor and its expiry (Unix time); a token already verified is only
        checked for expiry again.

        A checkout page polls with one token for hours: verifying its signature once, not on
        every status read, takes the JWT work off the hot path. Nothing else about a token can
        change while this process runs (the key changes only with a restart).
        """
        remembered = self._verified.get(token)
        if remembered is not None:
            if time.time() < remembered[1]:
                return remembered
            del self._verified[token]
        verified = await self._verify(token)
        if len(self._verified) >= VERIFIED_TOKENS_KEPT:
            self._verified.pop(next(iter(self._verified)))
        self._verified[token] = verified
        return verified

    async def _verify(self, token: str) -> tuple[Actor, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("the bearer token is not a well-formed JWT") from None
        if header.get("alg") != self.algorithm:
            raise Unauthorized(f"tokens must be signed with {self.algorithm}")
        key: Any = self._secret
        if self._jwks is not None:
            key = await self._signing_key(self._jwks, token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[self.algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "sub", "role"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.MissingRequiredClaimError as missing:
            raise Unauthorized(f"the token lacks the {missing.claim} claim") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("the token was issued in the future") from None
        except jwt.PyJWTError:
            raise Unauthorized("the token could not be verified") from None
        # PyJWT has checked both are whole numbers; compared as ints, as a float of 10**400
        # overflows. A long-lived token is a stolen token that keeps working.
        expires, issued = int(claims["exp"]), int(claims["iat"])
        if max(expires - issued, expires - int(time.time())) > self._max_ttl:
            raise Unauthorized(f"tokens may live at most {self._max_ttl} seconds")
        return actor_from_claims(claims), float(expires)

    @staticmethod
    async def _signing_key(client: jwt.PyJWKClient, token: str) -> Any:
        try:
            # PyJWKClient fetches over blocking urllib on a cache miss: keep it off the loop.
            signing_key = await run_in_threadpool(client.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientConnectionError:
            log.warning("jwks_unreachable", exc_info=True)
            raise ApiError(
                503,
                "auth_unavailable",
                "the token keys cannot be fetched right now",
                headers={"Retry-After": "5"},
            ) from None
        except jwt.PyJWTError:
            raise Unauthorized("the token's signing key is unknown") from None
        return signing_key.key


async def current_actor(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Actor:
    """The verified caller, or 401."""
    if credentials is None:
        raise Unauthorized("a bearer token is required", invalid_token=False)
    verifier: TokenVerifier = request.app.state.verifier
    return await verifier.verify(credentials.credentials)


CurrentActor = Annotated[Actor, Depends(current_actor)]


@dataclass(frozen=True, slots=True)
class Bearer:
    """The verified caller and when its token expires (Unix time)."""

    actor: Actor
    expires: float


async def current_bearer(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Bearer:
    """`current_actor` with the token's expiry, for what lasts (a live stream), or 401."""
    if credentials is None:
        raise Unauthorized("a bearer token is required", invalid_token=False)
    verifier: TokenVerifier = request.app.state.verifier
    return Bearer(*await verifier.verify_until(credentials.credentials))


CurrentBearer = Annotated[Bearer, Depends(current_bearer)]

# How a route that skips the dependency (the hot status read) still documents its security.
BEARER_SECURITY: dict[str, Any] = {"security": [{"HTTPBearer": []}]}


def bearer_token(authorization: str) -> str:
    """The token of an `Authorization: Bearer ...` header (`current_actor` without FastAPI's
    dependency machinery, for the hot status read), or 401."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("a bearer token is required", invalid_token=False)
    return token.strip()
