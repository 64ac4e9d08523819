"""API keys: format, hashing, and the exchange for an access token (with fakes of our ports)."""

from __future__ import annotations

import pytest

from gateway.domain import ApiKeyRecord, AuthenticationError, RateLimitedError, Role, SigningKey
from gateway.service.api_keys import ApiKeyService, hash_secret, new_api_key, parse_api_key, verify_secret
from gateway.service.tokens import Keyring, TokenService

from . import jwt_forge as forge
from .fakes import FakeApiKeys, FakeAuditLog, FakeLimiter

KEY = forge.new_rsa_key()


def test_a_new_key_has_the_documented_shape():
    key, key_id, stored = new_api_key()
    prefix, kid, secret = key.split("_", 2)
    assert prefix == "al" and kid == key_id and len(key_id) == 16
    assert len(secret) >= 43  # 32 random bytes
    assert parse_api_key(key) == (key_id, secret)


def test_only_a_hash_of_the_secret_is_stored():
    key, _, stored = new_api_key()
    secret = parse_api_key(key)[1]
    assert secret not in stored and stored.startswith("sha256:")
    assert verify_secret(secret, stored)


def test_every_key_is_different():
    keys = {new_api_key()[0] for _ in range(100)}
    assert len(keys) == 100


def test_a_wrong_secret_does_not_verify():
    _, _, stored = new_api_key()
    assert not verify_secret("guess", stored)
    assert not verify_secret("", stored)


@pytest.mark.parametrize("bad", ["", "al_", "al_xyz_secret", "sk_0123456789abcdef_" + "a" * 43,
                                 "al_0123456789abcdef_short", "al_0123456789ABCDEF_" + "a" * 43])
def test_malformed_keys_are_rejected(bad):
    with pytest.raises(ValueError):
        parse_api_key(bad)


def test_hashing_is_deterministic():
    assert hash_secret("abc") == hash_secret("abc") != hash_secret("abd")


def make_service(*records: ApiKeyRecord, limiter: FakeLimiter | None = None):
    tokens = TokenService(Keyring([SigningKey("k", KEY, 1.0)]), issuer="i", audience="a", ttl_s=600)
    failures: list[str] = []
    audit = FakeAuditLog()
    svc = ApiKeyService(FakeApiKeys(*records), tokens, limiter or FakeLimiter(), audit, on_failure=failures.append)
    return svc, tokens, failures, audit


def record(role: Role = Role.USER, revoked: bool = False) -> tuple[str, ApiKeyRecord]:
    key, key_id, stored = new_api_key()
    return key, ApiKeyRecord(key_id=key_id, secret_hash=stored, role=role, name="alice", revoked=revoked)


async def test_a_valid_key_is_exchanged_for_a_token_of_its_owner_and_role():
    key, rec = record(Role.OPERATOR)
    svc, tokens, _, audit = make_service(rec)
    issued = await svc.exchange(key, "10.0.0.1")
    who = tokens.verify(issued.access_token)
    assert (who.subject, who.role) == ("alice", Role.OPERATOR)
    assert svc.store.touched == [rec.key_id]
    assert [(e.action, e.subject) for e in audit.entries] == [("auth.token", "alice")]


async def test_a_revoked_key_is_refused():
    key, rec = record(revoked=True)
    svc, _, failures, _ = make_service(rec)
    with pytest.raises(AuthenticationError):
        await svc.exchange(key, None)
    assert failures == ["revoked_api_key"]


async def test_a_wrong_secret_for_a_known_key_id_is_refused():
    key, rec = record()
    svc, _, failures, _ = make_service(rec)
    forged = key[: -4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    with pytest.raises(AuthenticationError):
        await svc.exchange(forged, None)
    assert failures == ["invalid_api_key"]


@pytest.mark.parametrize("key", [None, "", "not-a-key"])
async def test_a_missing_or_malformed_key_is_refused(key):
    svc, _, failures, _ = make_service()
    with pytest.raises(AuthenticationError):
        await svc.exchange(key, None)
    assert failures and failures[0] in {"missing_api_key", "malformed_api_key"}


async def test_exchanges_are_rate_limited_per_client_ip():
    key, rec = record()
    svc, _, _, _ = make_service(rec, limiter=FakeLimiter(allowed=2, retry_after=9))
    await svc.exchange(key, "10.0.0.1")
    await svc.exchange(key, "10.0.0.1")
    with pytest.raises(RateLimitedError) as info:
        await svc.exchange(key, "10.0.0.1")
    assert info.value.retry_after_s == 9
    await svc.exchange(key, "10.0.0.2")  # another client is not affected


# ------------------------------------------------------------------ an API key as the bearer credential


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def identify_service(*records: ApiKeyRecord, cache_s: float = 30.0):
    clock = Clock()
    tokens = TokenService(Keyring([SigningKey("k", KEY, 1.0)]), issuer="i", audience="a", ttl_s=600)
    svc = ApiKeyService(FakeApiKeys(*records), tokens, FakeLimiter(), FakeAuditLog(), cache_s=cache_s, clock=clock)
    return svc, clock


async def test_a_bearer_key_is_verified_once_per_cache_lifetime():
    key, rec = record(Role.OPERATOR)
    svc, clock = identify_service(rec, cache_s=30)
    who = await svc.identify(key, "10.0.0.1")
    assert (who.subject, who.role) == ("alice", Role.OPERATOR)
    clock.now += 29
    assert await svc.identify(key, "10.0.0.1") == who
    assert svc.store.touched == [rec.key_id]  # the second call hit the cache
    clock.now += 2
    await svc.identify(key, "10.0.0.1")
    assert svc.store.touched == [rec.key_id, rec.key_id]


async def test_a_key_revoked_elsewhere_works_until_the_cache_lifetime_ends():
    key, rec = record()
    svc, clock = identify_service(rec, cache_s=30)
    await svc.identify(key, None)
    svc.store.records[rec.key_id] = ApiKeyRecord(rec.key_id, rec.secret_hash, rec.role, rec.name, revoked=True)
    await svc.identify(key, None)  # another instance revoked it: still cached here
    clock.now += 31
    with pytest.raises(AuthenticationError) as info:
        await svc.identify(key, None)
    assert info.value.reason == "revoked_api_key"


async def test_a_key_revoked_through_this_instance_stops_at_once():
    key, rec = record()
    svc, _ = identify_service(rec, cache_s=300)
    admin = (await svc.identify(key, None))
    await svc.revoke(admin, rec.key_id, None)
    with pytest.raises(AuthenticationError):
        await svc.identify(key, None)


async def test_a_wrong_bearer_key_is_refused_and_not_cached():
    key, rec = record()
    svc, _ = identify_service(rec)
    with pytest.raises(AuthenticationError):
        await svc.identify(key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB"), None)
    assert (await svc.identify(key, None)).subject == "alice"
