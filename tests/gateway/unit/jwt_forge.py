"""Build tokens the way an attacker would: real signatures, real encodings, no mocks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "agentloop-gateway"
AUDIENCE = "agentloop"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(doc: dict[str, Any]) -> str:
    return b64url(json.dumps(doc, separators=(",", ":")).encode())


def new_rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    doc = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "role": "admin", "iat": now, "exp": now + 600,
           "jti": "j-1"}
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not None}


def rs256(private_key: rsa.RSAPrivateKey, kid: str | None, payload: dict[str, Any], alg: str = "RS256") -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(payload, private_key, algorithm=alg, headers=headers)


def alg_none(kid: str, payload: dict[str, Any], alg: str = "none") -> str:
    """The unsigned token: header alg none, empty signature segment."""
    return f"{b64json({'alg': alg, 'typ': 'JWT', 'kid': kid})}.{b64json(payload)}."


def hs256_with_public_key(public_pem: bytes, kid: str, payload: dict[str, Any]) -> str:
    """Algorithm confusion: HMAC-SHA256 keyed with the server's *public* key (which anyone can
    fetch from the JWKS), hoping the server verifies with `key=public_key` and trusts `alg`."""
    signing_input = f"{b64json({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{b64json(payload)}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def public_pem(private_key: rsa.RSAPrivateKey) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def with_payload(token: str, payload: dict[str, Any]) -> str:
    """Swap the payload of a validly signed token, keeping header and signature."""
    header, _, signature = token.split(".")
    return f"{header}.{b64json(payload)}.{signature}"
