"""API keys: long-lived credentials exchanged for short-lived access tokens.

A key reads `al_<key_id>_<secret>`: `key_id` (16 hex chars) finds the row, `secret` (32 random
bytes, URL-safe base64) proves possession. Only `sha256(secret)` is stored. A plain hash is
enough here because the secret is 256 bits of randomness, not a password: there is nothing to
guess, so a slow KDF or a server-side pepper would add cost without adding safety.

The token's subject is the key's `name` (its owner), so a user who rotates API keys keeps
access to the runs made with the old one.

On the OpenAI-compatible routes a key also works as the bearer credential itself (`Authorization:
Bearer al_...`, what the OpenAI SDKs send): `identify` verifies it once and keeps the identity for
`cache_s` seconds. A key revoked through this instance stops working at once; on other gateway
instances within `cache_s`.

Keys are issued and withdrawn by `issue_key` / `withdraw_key`, the one place for those rules: the
admin routes (`/v1/admin/api-keys`, through `ApiKeyService`) use them, and so does the gateway's
admin entry point for the first key, `python -m gateway.admin api-key create` (`create_api_key`,
`revoke_api_key`, `list_api_keys`: on the database directly).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable

from ..adapters.postgres import Database, PostgresApiKeys
from ..domain import (
    ApiKeyNotFoundError,
    ApiKeyRecord,
    AuditEntry,
    AuthenticationError,
    Identity,
    RateLimitedError,
    Role,
)
from ..ports import ApiKeyStore, AuditLog, RateLimiter
from .tokens import IssuedToken, TokenService

PREFIX = "al"
_KEY_RE = re.compile(r"^al_([0-9a-f]{16})_([A-Za-z0-9_\-]{32,128})$")
HASH_SCHEME = "sha256"


def new_api_key() -> tuple[str, str, str]:
    """A fresh key: (the key to hand out, its key_id, the hash to store)."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return f"{PREFIX}_{key_id}_{secret}", key_id, hash_secret(secret)


def parse_api_key(key: str) -> tuple[str, str]:
    """(key_id, secret) of a well-formed key; ValueError otherwise."""
    match = _KEY_RE.match(key.strip())
    if not match:
        raise ValueError("not an Agent Loop API key")
    return match.group(1), match.group(2)


def hash_secret(secret: str) -> str:
    return f"{HASH_SCHEME}:{hashlib.sha256(secret.encode()).hexdigest()}"


def verify_secret(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


class ApiKeyService:
    CACHE_MAX = 10_000

    def __init__(
        self,
        store: ApiKeyStore,
        tokens: TokenService,
        limiter: RateLimiter,
        audit: AuditLog,
        on_failure: Callable[[str], None] | None = None,
        *,
        cache_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.tokens = tokens
        self.limiter = limiter
        self.audit = audit
        self._on_failure = on_failure
        self.cache_s = cache_s
        self._clock = clock
        self._cache: dict[str, tuple[Identity, float, str]] = {}  # key -> (identity, valid until, key_id)

    async def exchange(self, api_key: str | None, client_ip: str | None) -> IssuedToken:
        """Trade a valid, unrevoked API key for an access token (rate-limited per client IP)."""
        if not api_key:
            await self._check_rate(client_ip)
            raise self._fail("missing_api_key", "an API key is required (X-API-Key header or api_key in the body)")
        record = await self._verify(api_key, client_ip)
        token = self.tokens.issue(record.name, record.role)
        if record.role >= Role.OPERATOR:  # privileged credentials handed out: worth an audit line
            await self.audit.record(
                AuditEntry(subject=record.name, role=record.role.label, action="auth.token", target=record.key_id,
                           outcome="ok", client_ip=client_ip)
            )
        return token

    async def identify(self, api_key: str, client_ip: str | None) -> Identity:
        """The identity of an API key sent as the bearer credential, verified at most once per `cache_s`."""
        now = self._clock()
        cached = self._cache.get(api_key)
        if cached is not None and cached[1] > now:
            return cached[0]
        record = await self._verify(api_key, client_ip)
        identity = Identity(subject=record.name, role=record.role, token_id=f"key:{record.key_id}")
        if len(self._cache) >= self.CACHE_MAX:
            self._cache = {}
        self._cache[api_key] = (identity, now + self.cache_s, record.key_id)
        return identity

    async def _verify(self, api_key: str, client_ip: str | None) -> ApiKeyRecord:
        """The key's row if the key is well-formed, known, matches and is not revoked (rate-limited per IP)."""
        await self._check_rate(client_ip)
        try:
            key_id, secret = parse_api_key(api_key)
        except ValueError:
            raise self._fail("malformed_api_key", "invalid API key") from None
        record = await self.store.get(key_id)
        if record is None or not verify_secret(secret, record.secret_hash):
            raise self._fail("invalid_api_key", "invalid API key")
        if record.revoked:
            raise self._fail("revoked_api_key", "invalid API key")
        await self.store.touch(key_id)
        return record

    async def _check_rate(self, client_ip: str | None) -> None:
        retry_after = await self.limiter.hit("token", client_ip or "unknown")
        if retry_after is not None:
            raise RateLimitedError("token", retry_after)

    async def create(self, who: Identity, role: Role, name: str, client_ip: str | None) -> tuple[str, str]:
        """An admin issues a key (POST /v1/admin/api-keys): (the key, shown once; its key_id)."""
        return await issue_key(self.store, role, name, created_by=who.subject, creator_role=who.role.label,
                               client_ip=client_ip)

    async def revoke(self, who: Identity, key_id: str, client_ip: str | None) -> None:
        if not await withdraw_key(self.store, key_id, revoked_by=who.subject, revoker_role=who.role.label,
                                  client_ip=client_ip):
            raise ApiKeyNotFoundError(key_id)
        withdrawn = parse_api_key(key_id)[0] if key_id.startswith(f"{PREFIX}_") else key_id
        self._cache = {k: v for k, v in self._cache.items() if v[2] != withdrawn}  # this instance: at once

    async def list(self) -> list[dict]:
        return await self.store.list()

    def _fail(self, reason: str, detail: str) -> AuthenticationError:
        if self._on_failure is not None:
            self._on_failure(reason)
        return AuthenticationError(reason, detail)


# --------------------------------------------------------------------------- issuing and withdrawing keys


async def issue_key(store: ApiKeyStore, role: str | Role, name: str, *, created_by: str, creator_role: str = "admin",
                    client_ip: str | None = None) -> tuple[str, str]:
    """A new key with `role` for `name` (the token subject): (the key, shown once; its key_id)."""
    role = role if isinstance(role, Role) else Role.parse(role)
    name = name.strip()
    if not name:
        raise ValueError("an API key needs a name (its owner: the subject of its tokens)")
    key, key_id, secret_hash = new_api_key()
    audit = AuditEntry(subject=created_by, role=creator_role, action="api_key.create", target=key_id, outcome="ok",
                       client_ip=client_ip, details={"name": name, "role": role.label})
    await store.insert(key_id, secret_hash, role, name, audit)
    return key, key_id


async def withdraw_key(store: ApiKeyStore, key: str, *, revoked_by: str, revoker_role: str = "admin",
                       client_ip: str | None = None) -> bool:
    """Revoke by key id or by the full key; False when no active key matched."""
    key_id = parse_api_key(key)[0] if key.startswith(f"{PREFIX}_") else key
    audit = AuditEntry(subject=revoked_by, role=revoker_role, action="api_key.revoke", target=key_id, outcome="ok",
                       client_ip=client_ip)
    return await store.revoke(key_id, audit)


# --------------------------------------------------------------------------- the admin entry point's (database)


async def create_api_key(db: Database, role: str | Role, name: str, *, created_by: str = "admin-cli") -> str:
    """Create an API key; returns the key, shown once. `db` is an AsyncEngine or an AsyncConnection
    (joined if it is inside a transaction)."""
    return (await issue_key(PostgresApiKeys(db), role, name, created_by=created_by))[0]


async def revoke_api_key(db: Database, key: str, *, revoked_by: str = "admin-cli") -> bool:
    return await withdraw_key(PostgresApiKeys(db), key, revoked_by=revoked_by)


async def list_api_keys(db: Database) -> list[dict]:
    """Every key's id, name, role, creation/last use/revocation times (never a secret)."""
    return await PostgresApiKeys(db).list()
