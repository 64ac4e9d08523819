"""Typed dependencies of the routes: the container's use cases and the caller's identity.

All `async def`: FastAPI runs a plain `def` dependency in a thread pool, a thread hop per
dependency per request for what is an attribute lookup."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from starlette.requests import HTTPConnection

from ..container import Container
from ..domain import Identity, Role
from ..service.api_keys import ApiKeyService
from ..service.models import ModelService
from ..service.ops import OpsService
from ..service.runs import RunService


async def get_container(conn: HTTPConnection) -> Container:
    return conn.app.state.container


ContainerDep = Annotated[Container, Depends(get_container)]


async def _runs(conn: HTTPConnection) -> RunService:
    return conn.app.state.container.runs


async def _ops(conn: HTTPConnection) -> OpsService:
    return conn.app.state.container.ops


async def _models(conn: HTTPConnection) -> ModelService:
    return conn.app.state.container.models


async def _api_keys(conn: HTTPConnection) -> ApiKeyService:
    return conn.app.state.container.api_keys


RunsDep = Annotated[RunService, Depends(_runs)]
OpsDep = Annotated[OpsService, Depends(_ops)]
ApiKeysDep = Annotated[ApiKeyService, Depends(_api_keys)]
ModelsDep = Annotated[ModelService, Depends(_models)]


def peer_ip(conn: HTTPConnection) -> str | None:
    return conn.client.host if conn.client else None


async def client_ip(conn: HTTPConnection) -> str | None:
    return peer_ip(conn)


ClientIp = Annotated[str | None, Depends(client_ip)]
# `?wait_s=` of the operator commands that can wait for the exporter (promote, rollback, canary)
WaitSeconds = Annotated[float, Query(gt=0, le=300, description="how long ?wait=true waits at most")]


def require(role: Role, action: str | None = None, *, api_keys: bool = False):
    """Dependency: the caller, if its bearer token is valid and its role at least `role`.
    `action` names a privileged route, whose refusals are audited; with `api_keys` an API key is a
    bearer credential too (the OpenAI-compatible routes)."""

    async def caller(request: Request) -> Identity:
        access = request.app.state.container.access
        return await access.require(
            request.headers.get("authorization"), role, action=action, client_ip=peer_ip(request), api_keys=api_keys
        )

    # What this guard can answer, for the OpenAPI document (api/openapi.py): every valid token has
    # at least the user's role, so only a higher role can be refused.
    caller.error_statuses = (401,) if role == Role.USER else (401, 403)  # type: ignore[attr-defined]
    return Depends(caller)


CurrentUser = Annotated[Identity, require(Role.USER)]
OpenAIUser = Annotated[Identity, require(Role.USER, api_keys=True)]
