"""Token issuance and the public keys that verify tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Header
from fastapi.responses import JSONResponse

from .deps import ApiKeysDep, ClientIp, ContainerDep
from .openapi import declared
from .schemas import TokenRequest, TokenResponse

router = APIRouter(tags=["auth"])


@router.get("/.well-known/jwks.json")
async def jwks(container: ContainerDep) -> JSONResponse:
    """Every key that may have signed a live token (rotation keeps old keys until they retire)."""
    return JSONResponse(container.tokens.keyring.jwks, headers={"Cache-Control": "public, max-age=300"})


@router.post("/v1/auth/token", response_model=TokenResponse, responses=declared(401, 429))
async def issue_token(
    api_keys: ApiKeysDep,
    ip: ClientIp,
    x_api_key: Annotated[str | None, Header()] = None,
    body: Annotated[TokenRequest | None, Body()] = None,
) -> TokenResponse:
    """Exchange an API key (`X-API-Key` header or `{"api_key": ...}`) for an access token."""
    issued = await api_keys.exchange(x_api_key or (body.api_key if body else None), ip)
    return TokenResponse(access_token=issued.access_token, token_type=issued.token_type, expires_in=issued.expires_in)
