"""Admin routes: API keys (the first key comes from `python -m gateway.admin`). Every call, allowed or
refused, lands in the audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response

from ..domain import ApiKeySubmission, Identity, Role
from .deps import ApiKeysDep, ClientIp, require
from .openapi import declared
from .schemas import ApiKeyCreated, ApiKeyView

router = APIRouter(prefix="/v1/admin/api-keys", tags=["admin"])

Admin = Annotated[Identity, require(Role.ADMIN, action="admin.api_keys")]


@router.post("", status_code=201)
async def create_api_key(who: Admin, keys: ApiKeysDep, ip: ClientIp, body: ApiKeySubmission) -> ApiKeyCreated:
    """Issue an API key; the key is in this answer only (a hash of its secret is stored)."""
    key, key_id = await keys.create(who, Role.parse(body.role), body.name, ip)
    return ApiKeyCreated(key=key, key_id=key_id, name=body.name.strip(), role=body.role)


@router.get("")
async def list_api_keys(who: Admin, keys: ApiKeysDep) -> list[ApiKeyView]:
    """Every key, oldest first: ids, owners, roles and times, never a secret."""
    return [ApiKeyView(**{k: row.get(k) for k in ApiKeyView.model_fields}) for row in await keys.list()]


@router.delete("/{key_id}", status_code=204, responses=declared(404))
async def revoke_api_key(who: Admin, keys: ApiKeysDep, ip: ClientIp, key_id: str) -> Response:
    """Revoke a key; tokens it already gave stay valid until they expire. 404 when no active key has this id."""
    await keys.revoke(who, key_id, ip)
    return Response(status_code=204)
