"""Access tokens: issue, verify, and refuse every forged or misused token."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.adapters.key_files import KeyDirectory, KeyFileError, generate_key_file
from gateway.domain import AuthenticationError, Role, SigningKey
from gateway.service.tokens import Keyring, TokenService

from . import jwt_forge as forge

# RSA key generation is the slow part: one pair of keys for the whole module.
KEY_A = forge.new_rsa_key()
KEY_B = forge.new_rsa_key()
OTHER = forge.new_rsa_key()


def service(*keys: SigningKey, active: str | None = None, failures: list | None = None, clock=time.time,
            ttl_s: int = 1800) -> TokenService:
    keys = keys or (SigningKey("k-a", KEY_A, created=1.0),)
    return TokenService(
        Keyring(keys, active), issuer=forge.ISSUER, audience=forge.AUDIENCE, ttl_s=ttl_s, leeway_s=0,
        on_failure=failures.append if failures is not None else None, clock=clock,
    )


def reason_of(tokens: TokenService, token: str) -> str:
    with pytest.raises(AuthenticationError) as info:
        tokens.verify(token)
    return info.value.reason


def decode_segment(segment: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


# --------------------------------------------------------------------------- the happy path


def test_issued_token_verifies_to_its_subject_and_role():
    tokens = service()
    issued = tokens.issue("alice", Role.OPERATOR)
    who = tokens.verify(issued.access_token)
    assert (who.subject, who.role) == ("alice", Role.OPERATOR)
    assert issued.expires_in == 1800 and issued.token_type == "bearer"


def test_issued_token_carries_kid_and_all_required_claims():
    token = service().issue("alice", Role.USER).access_token
    header, payload, _ = token.split(".")
    assert decode_segment(header) == {"alg": "RS256", "kid": "k-a", "typ": "JWT"}
    doc = decode_segment(payload)
    assert set(doc) == {"iss", "aud", "sub", "role", "iat", "exp", "jti"}
    assert doc["exp"] - doc["iat"] == 1800 and doc["role"] == "user"


def test_each_token_has_its_own_jti():
    tokens = service()
    a, b = (tokens.verify(tokens.issue("alice", Role.USER).access_token) for _ in range(2))
    assert a.token_id != b.token_id


def test_authenticate_reads_a_bearer_header():
    tokens = service()
    token = tokens.issue("alice", Role.USER).access_token
    assert tokens.authenticate(f"Bearer {token}").subject == "alice"
    assert tokens.authenticate(f"bearer {token}").subject == "alice"


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc"])
def test_rejects_a_missing_or_non_bearer_authorization_header(header):
    with pytest.raises(AuthenticationError) as info:
        service().authenticate(header)
    assert info.value.reason == "missing_token"


# --------------------------------------------------------------------------- attacks


def test_rejects_a_token_signed_by_another_key_under_our_kid():
    assert reason_of(service(), forge.rs256(OTHER, "k-a", forge.claims())) == "bad_signature"


def test_rejects_alg_none():
    assert reason_of(service(), forge.alg_none("k-a", forge.claims())) == "unsupported_algorithm"


@pytest.mark.parametrize("alg", ["None", "NONE", "nOnE"])
def test_rejects_alg_none_in_any_case(alg):
    assert reason_of(service(), forge.alg_none("k-a", forge.claims(), alg=alg)) == "unsupported_algorithm"


def test_rejects_hs256_signed_with_the_public_key_as_hmac_secret():
    token = forge.hs256_with_public_key(forge.public_pem(KEY_A), "k-a", forge.claims())
    assert reason_of(service(), token) == "unsupported_algorithm"


def test_rejects_hs256_signed_with_the_jwks_modulus_as_secret():
    jwk = service().keyring.jwks["keys"][0]
    token = forge.hs256_with_public_key(jwk["n"].encode(), "k-a", forge.claims())
    assert reason_of(service(), token) == "unsupported_algorithm"


@pytest.mark.parametrize("alg", ["RS384", "RS512", "PS256"])
def test_rejects_other_rsa_algorithms_even_with_our_key(alg):
    assert reason_of(service(), forge.rs256(KEY_A, "k-a", forge.claims(), alg=alg)) == "unsupported_algorithm"


def test_rejects_an_expired_token():
    token = forge.rs256(KEY_A, "k-a", forge.claims(iat=int(time.time()) - 120, exp=int(time.time()) - 60))
    assert reason_of(service(), token) == "expired"


def test_rejects_a_token_for_another_audience():
    assert reason_of(service(), forge.rs256(KEY_A, "k-a", forge.claims(aud="someone-else"))) == "wrong_audience"


def test_rejects_a_token_from_another_issuer():
    assert reason_of(service(), forge.rs256(KEY_A, "k-a", forge.claims(iss="evil-issuer"))) == "wrong_issuer"


def test_rejects_an_unknown_kid():
    assert reason_of(service(), forge.rs256(OTHER, "not-ours", forge.claims())) == "unknown_kid"


def test_rejects_our_own_signature_under_an_unknown_kid():
    assert reason_of(service(), forge.rs256(KEY_A, "k-zzz", forge.claims())) == "unknown_kid"


def test_rejects_a_token_without_kid():
    assert reason_of(service(), forge.rs256(KEY_A, None, forge.claims())) == "unknown_kid"


def test_rejects_a_path_traversal_kid():
    assert reason_of(service(), forge.rs256(KEY_A, "../../k-a", forge.claims())) == "unknown_kid"


def test_rejects_a_tampered_payload():
    tokens = service()
    token = tokens.issue("alice", Role.USER).access_token
    escalated = forge.claims(sub="alice", role="admin")
    assert reason_of(tokens, forge.with_payload(token, escalated)) == "bad_signature"


@pytest.mark.parametrize("garbage", ["garbage", "a.b.c", "....", "eyJhbGciOiJSUzI1NiJ9", "x" * 5000, "é.é.é"])
def test_rejects_garbage(garbage):
    assert reason_of(service(), garbage) == "malformed_token"


@pytest.mark.parametrize("claim", ["exp", "iat", "jti", "sub", "role", "iss", "aud"])
def test_rejects_a_token_missing_a_required_claim(claim):
    token = forge.rs256(KEY_A, "k-a", forge.claims(**{claim: None}))
    assert reason_of(service(), token) in {"missing_claim", "wrong_issuer", "wrong_audience"}


def test_rejects_an_unknown_role():
    assert reason_of(service(), forge.rs256(KEY_A, "k-a", forge.claims(role="root"))) == "invalid_claims"


def test_rejects_a_token_issued_in_the_future():
    future = int(time.time()) + 3600
    token = forge.rs256(KEY_A, "k-a", forge.claims(iat=future, exp=future + 600))
    assert reason_of(service(), token) == "not_yet_valid"


def test_failures_are_reported_by_reason():
    failures: list[str] = []
    tokens = service(failures=failures)
    for token in (forge.alg_none("k-a", forge.claims()), "garbage"):
        with pytest.raises(AuthenticationError):
            tokens.verify(token)
    assert failures == ["unsupported_algorithm", "malformed_token"]


def test_a_cached_token_still_expires():
    now = [time.time()]
    tokens = service(clock=lambda: now[0], ttl_s=60)
    token = tokens.issue("alice", Role.USER).access_token
    assert tokens.verify(token).subject == "alice"
    assert tokens.verify(token).subject == "alice"  # from the cache
    now[0] += 61
    assert reason_of(tokens, token) == "expired"


# --------------------------------------------------------------------------- rotation


def test_the_newest_key_signs_and_older_tokens_still_verify():
    old = service(SigningKey("k-old", KEY_A, created=1.0))
    old_token = old.issue("alice", Role.USER).access_token
    rotated = service(SigningKey("k-old", KEY_A, created=1.0), SigningKey("k-new", KEY_B, created=2.0))
    new_token = rotated.issue("alice", Role.USER).access_token
    assert decode_segment(new_token.split(".")[0])["kid"] == "k-new"
    assert rotated.verify(old_token).subject == "alice"
    assert rotated.verify(new_token).subject == "alice"


def test_jwks_lists_every_key_with_its_kid_and_rs256():
    keyring = Keyring([SigningKey("k-old", KEY_A, 1.0), SigningKey("k-new", KEY_B, 2.0)])
    keys = keyring.jwks["keys"]
    assert [k["kid"] for k in keys] == ["k-new", "k-old"]
    for k in keys:
        assert k["kty"] == "RSA" and k["alg"] == "RS256" and k["use"] == "sig"
        assert set(k) == {"kty", "n", "e", "kid", "alg", "use"}  # public parts only


def test_jwks_keys_verify_the_issued_tokens():
    import jwt

    tokens = service()
    token = tokens.issue("alice", Role.USER).access_token
    public = jwt.PyJWK(tokens.keyring.jwks["keys"][0]).key
    assert jwt.decode(token, public, algorithms=["RS256"], audience=forge.AUDIENCE)["sub"] == "alice"


def test_active_kid_overrides_the_newest_key():
    tokens = service(SigningKey("k-old", KEY_A, 1.0), SigningKey("k-new", KEY_B, 2.0), active="k-old")
    token = tokens.issue("alice", Role.USER).access_token
    assert decode_segment(token.split(".")[0])["kid"] == "k-old"


def test_an_active_kid_that_is_not_in_the_keyring_is_refused():
    with pytest.raises(ValueError, match="not in the keyring"):
        Keyring([SigningKey("k-a", KEY_A, 1.0)], "k-missing")


def test_an_empty_keyring_is_refused():
    with pytest.raises(ValueError, match="empty"):
        Keyring([])


def test_a_removed_key_stops_verifying_even_cached_tokens():
    tokens = service(SigningKey("k-old", KEY_A, 1.0), SigningKey("k-new", KEY_B, 2.0), active="k-old")
    old_token = tokens.issue("alice", Role.USER).access_token
    assert tokens.verify(old_token).subject == "alice"
    tokens.replace_keyring(Keyring([SigningKey("k-new", KEY_B, 2.0)]))
    assert reason_of(tokens, old_token) == "unknown_kid"


# --------------------------------------------------------------------------- the key directory


def test_key_directory_loads_each_pem_under_its_file_name(tmp_path: Path):
    generate_key_file(tmp_path, "first")
    generate_key_file(tmp_path, "second")
    (tmp_path / "README.txt").write_text("not a key")
    keys = KeyDirectory(tmp_path).load()
    assert sorted(k.kid for k in keys) == ["first", "second"]
    assert oct((tmp_path / "first.pem").stat().st_mode & 0o777) == "0o600"


def test_the_newest_file_signs(tmp_path: Path):
    older = generate_key_file(tmp_path, "zz-older")
    generate_key_file(tmp_path, "aa-newer")
    os.utime(older, (time.time() - 3600, time.time() - 3600))
    assert Keyring(KeyDirectory(tmp_path).load()).active.kid == "aa-newer"


def test_dropping_a_key_in_changes_the_fingerprint(tmp_path: Path):
    generate_key_file(tmp_path, "one")
    directory = KeyDirectory(tmp_path)
    before = directory.fingerprint()
    generate_key_file(tmp_path, "two")
    assert directory.fingerprint() != before


def test_a_non_rsa_key_file_is_refused(tmp_path: Path):
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ec.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    with pytest.raises(KeyFileError, match="RSA"):
        KeyDirectory(tmp_path).load()


def test_a_short_rsa_key_is_refused(tmp_path: Path):
    key = forge.new_rsa_key(1024)
    (tmp_path / "short.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    with pytest.raises(KeyFileError, match="2048"):
        KeyDirectory(tmp_path).load()


def test_a_missing_key_directory_is_reported(tmp_path: Path):
    with pytest.raises(KeyFileError, match="not a directory"):
        KeyDirectory(tmp_path / "nope").load()
