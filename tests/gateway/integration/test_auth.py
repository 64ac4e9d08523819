"""Authentication over HTTP: API key exchange, JWKS, every JWT attack → 401, roles → 403, rotation."""

from __future__ import annotations

import asyncio
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from gateway.adapters.key_files import generate_key_file
from gateway.service.api_keys import create_api_key, revoke_api_key

from ..unit import jwt_forge as forge


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def signing_key(gateway_env):
    """The deployment's own private key (as the attacker never has it: for claim-level attacks
    that must pass the signature check and fail on something else)."""
    path = sorted(gateway_env.keys_dir.glob("*.pem"))[0]
    return path.stem, serialization.load_pem_private_key(path.read_bytes(), password=None)


async def test_an_api_key_is_exchanged_for_a_token_by_header_or_body(gateway, db):
    key = await create_api_key(db, "user", "exchange-test")
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        by_header = await client.post("/v1/auth/token", headers={"X-API-Key": key})
        by_body = await client.post("/v1/auth/token", json={"api_key": key})
    for resp in (by_header, by_body):
        assert resp.status_code == 200, resp.text
        doc = resp.json()
        assert doc["token_type"] == "bearer" and doc["expires_in"] == 1800
        claims = jwt.decode(doc["access_token"], options={"verify_signature": False})
        assert (claims["sub"], claims["role"]) == ("exchange-test", "user")


async def test_a_wrong_or_revoked_api_key_gets_401(gateway, db):
    key = await create_api_key(db, "user", "revoke-test")
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        wrong = await client.post("/v1/auth/token", headers={"X-API-Key": key[:-3] + "zzz"})
        assert wrong.status_code == 401
        assert await revoke_api_key(db, key)
        revoked = await client.post("/v1/auth/token", headers={"X-API-Key": key})
        assert revoked.status_code == 401
        missing = await client.post("/v1/auth/token")
        assert missing.status_code == 401


async def test_jwks_publishes_the_public_keys_that_verify_our_tokens(gateway, new_token):
    token, _ = await new_token()
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        jwks = (await client.get("/.well-known/jwks.json")).json()
    kid = jwt.get_unverified_header(token)["kid"]
    jwk = next(k for k in jwks["keys"] if k["kid"] == kid)
    assert "d" not in jwk and jwk["alg"] == "RS256"
    jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=["RS256"], audience="agentloop", issuer="agentloop-gateway")


def attacks(kid: str, key) -> dict[str, tuple[str, str]]:
    """name → (token, expected reason); built for real, signed for real where a signature matters."""
    now = int(time.time())
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "wrong signature": (forge.rs256(forge.new_rsa_key(), kid, forge.claims()), "bad_signature"),
        "alg none": (forge.alg_none(kid, forge.claims()), "unsupported_algorithm"),
        "hs256 with the public key": (forge.hs256_with_public_key(public_pem, kid, forge.claims()),
                                      "unsupported_algorithm"),
        "expired": (forge.rs256(key, kid, forge.claims(iat=now - 7200, exp=now - 3600)), "expired"),
        "wrong audience": (forge.rs256(key, kid, forge.claims(aud="other-service")), "wrong_audience"),
        "wrong issuer": (forge.rs256(key, kid, forge.claims(iss="someone-else")), "wrong_issuer"),
        "unknown kid": (forge.rs256(key, "kid-we-never-had", forge.claims()), "unknown_kid"),
        "garbage": ("this-is-not-a-jwt", "malformed_token"),
    }


@pytest.mark.parametrize("attack", ["wrong signature", "alg none", "hs256 with the public key", "expired",
                                    "wrong audience", "wrong issuer", "unknown kid", "garbage"])
async def test_every_jwt_attack_gets_401_with_its_reason(gateway, signing_key, attack):
    token, reason = attacks(*signing_key)[attack]
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        for method, path, body in (("GET", "/v1/runs/any", None), ("POST", "/v1/runs", {"instruction": "x"})):
            resp = await client.request(method, path, json=body, headers=auth(token))
            assert resp.status_code == 401, (attack, resp.text)
            assert resp.json()["reason"] == reason
            assert resp.headers["www-authenticate"].startswith("Bearer")


async def test_a_missing_token_gets_401(gateway):
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        resp = await client.post("/v1/runs", json={"instruction": "x"})
    assert resp.status_code == 401 and resp.json()["reason"] == "missing_token"


async def test_auth_failures_are_counted_by_reason(gateway):
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        await client.get("/v1/runs/x", headers=auth("garbage"))
        text = (await client.get("/metrics")).text
    assert 'gateway_auth_failures_total{reason="malformed_token"}' in text


async def test_roles_gate_operator_routes(gateway, new_token):
    user, _ = await new_token("user")
    operator, _ = await new_token("operator")
    admin, _ = await new_token("admin")
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        assert (await client.post("/v1/ops/retrain", json={}, headers=auth(user))).status_code == 403
        assert (await client.get("/v1/ops/audit", headers=auth(operator))).status_code == 403
        assert (await client.get("/v1/ops/audit", headers=auth(admin))).status_code == 200


async def test_dropping_a_new_key_in_rotates_without_restart(gateways, gateway_env, new_token):
    """The newest key signs new tokens; tokens of the older key keep working; JWKS lists both."""
    old_token, _ = await new_token()
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    new_kid = f"rotated-{int(time.time())}"
    generate_key_file(gateway_env.keys_dir, new_kid)
    for replica in gateways:
        async with httpx.AsyncClient(base_url=replica.url) as client:
            async with asyncio.timeout(10):
                while True:
                    kids = {k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]}
                    if new_kid in kids:
                        break
                    await asyncio.sleep(0.1)
            assert old_kid in kids
    new, _ = await new_token()
    assert jwt.get_unverified_header(new)["kid"] == new_kid
    for replica in gateways:  # every replica verifies both generations
        async with httpx.AsyncClient(base_url=replica.url) as client:
            for token in (old_token, new):
                assert (await client.get("/v1/runs/none", headers=auth(token))).status_code == 404
