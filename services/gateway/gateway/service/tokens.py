"""Access tokens: RS256 JWTs signed by the keyring's active key, verified against every key of
the keyring (so a token signed by a rotated-out-but-present key still verifies).

Verification accepts nothing but RS256 with a `kid` we hold: `alg: none`, HMAC algorithms
(including the classic HS256-with-the-public-key confusion) and unknown keys are refused
before any signature check, and PyJWT is additionally told to accept RS256 only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from contracts import new_id

from ..domain import AuthenticationError, Identity, Role, SigningKey

ALGORITHM = "RS256"
REQUIRED_CLAIMS = ("iss", "aud", "sub", "role", "iat", "exp", "jti")


class Keyring:
    """The signing keys at one moment: the active one signs, all of them verify."""

    def __init__(self, keys: Sequence[SigningKey], active_kid: str | None = None) -> None:
        if not keys:
            raise ValueError("the keyring is empty: put at least one RSA private key (<kid>.pem) in AUTH__KEYS_DIR")
        by_kid = {k.kid: k for k in keys}
        if len(by_kid) != len(keys):
            raise ValueError("two keys share a kid")
        if active_kid is not None and active_kid not in by_kid:
            raise ValueError(f"AUTH__ACTIVE_KID={active_kid!r} is not in the keyring ({', '.join(sorted(by_kid))})")
        self.active = by_kid[active_kid] if active_kid else max(keys, key=lambda k: (k.created, k.kid))
        self.public: dict[str, RSAPublicKey] = {k.kid: k.private_key.public_key() for k in keys}
        self.jwks: dict[str, Any] = {"keys": [_jwk(kid, pub) for kid, pub in sorted(self.public.items())]}

    @property
    def kids(self) -> list[str]:
        return sorted(self.public)


def _jwk(kid: str, public_key: RSAPublicKey) -> dict[str, Any]:
    doc = jwt.algorithms.RSAAlgorithm.to_jwk(public_key, as_dict=True)
    doc.pop("key_ops", None)
    return {**doc, "kid": kid, "use": "sig", "alg": ALGORITHM}


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str
    expires_in: int
    token_type: str = "bearer"


class TokenService:
    # Verified tokens are remembered (until they expire) so a client's steady stream of
    # requests costs one dict lookup instead of an RSA verification each.
    CACHE_MAX = 10_000

    def __init__(
        self,
        keyring: Keyring,
        *,
        issuer: str,
        audience: str,
        ttl_s: int,
        leeway_s: float = 5.0,
        on_failure: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keyring = keyring
        self.issuer = issuer
        self.audience = audience
        self.ttl_s = ttl_s
        self.leeway_s = leeway_s
        self._on_failure = on_failure
        self._clock = clock
        self._cache: dict[str, Identity] = {}

    def replace_keyring(self, keyring: Keyring) -> None:
        """Key rotation: a new key signs from now on; a removed key stops verifying at once."""
        self.keyring = keyring
        self._cache = {}

    # ------------------------------------------------------------------ issue

    def issue(self, subject: str, role: Role) -> IssuedToken:
        now = int(self._clock())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "role": role.label,
            "iat": now,
            "exp": now + self.ttl_s,
            "jti": new_id(),
        }
        key = self.keyring.active
        token = jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": "JWT"})
        return IssuedToken(access_token=token, expires_in=self.ttl_s)

    # ------------------------------------------------------------------ verify

    def authenticate(self, authorization: str | None) -> Identity:
        """Identity from an `Authorization: Bearer <jwt>` header value."""
        if not authorization:
            raise self._fail("missing_token", "an Authorization: Bearer token is required")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise self._fail("missing_token", "the Authorization header must be `Bearer <token>`")
        return self.verify(token.strip())

    def verify(self, token: str) -> Identity:
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at + self.leeway_s > self._clock():
                return cached
            del self._cache[token]
            raise self._fail("expired", "the token has expired")
        identity = self._verify_uncached(token)
        if len(self._cache) >= self.CACHE_MAX:
            self._cache = {}
        self._cache[token] = identity
        return identity

    def _verify_uncached(self, token: str) -> Identity:
        if not token:
            raise self._fail("missing_token", "no token given")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise self._fail("malformed_token", "the token is not a well-formed JWT") from None
        alg = header.get("alg")
        if alg != ALGORITHM:
            raise self._fail("unsupported_algorithm", f"only {ALGORITHM} tokens are accepted, not {alg!r}")
        kid = header.get("kid")
        public_key = self.keyring.public.get(kid) if isinstance(kid, str) else None
        if public_key is None:
            raise self._fail("unknown_kid", "the token was not signed by a key of this gateway")
        try:
            claims = jwt.decode(
                token,
                public_key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError:
            raise self._fail("expired", "the token has expired") from None
        except jwt.InvalidSignatureError:
            raise self._fail("bad_signature", "the token signature does not verify") from None
        except jwt.InvalidAudienceError:
            raise self._fail("wrong_audience", "the token is meant for another audience") from None
        except jwt.InvalidIssuerError:
            raise self._fail("wrong_issuer", "the token was issued by someone else") from None
        except jwt.MissingRequiredClaimError as exc:
            raise self._fail("missing_claim", f"the token lacks the {exc.claim!r} claim") from None
        except (jwt.ImmatureSignatureError, jwt.InvalidIssuedAtError):
            raise self._fail("not_yet_valid", "the token is not valid yet") from None
        except jwt.PyJWTError as exc:
            raise self._fail("invalid_token", f"the token is invalid: {type(exc).__name__}") from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise self._fail("invalid_claims", "the token's subject is empty")
        try:
            role = Role.parse(claims["role"])
        except ValueError:
            raise self._fail("invalid_claims", "the token's role is not one of user, operator, admin") from None
        return Identity(subject=subject, role=role, token_id=str(claims["jti"]), expires_at=float(claims["exp"]))

    def _fail(self, reason: str, detail: str) -> AuthenticationError:
        if self._on_failure is not None:
            self._on_failure(reason)
        return AuthenticationError(reason, detail)
