"""Model versions (operator): the registry's read model, and promotion / rollback commands to the
exporter, which owns the registry. Refused commands (404, 409) are audited too."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Path, Query, Response

from ..domain import Identity, PromoteSubmission, RollbackSubmission, Role
from ..service.models import ModelCommand, ModelService
from .deps import ClientIp, ModelsDep, WaitSeconds, require
from .openapi import declared
from .schemas import ModelCommandAccepted, ModelList, ModelView

router = APIRouter(prefix="/v1/registry/models", tags=["models"])

Reader = Annotated[Identity, require(Role.OPERATOR, action="models.read")]
Promoter = Annotated[Identity, require(Role.OPERATOR, action="models.promote")]
RollingBack = Annotated[Identity, require(Role.OPERATOR, action="models.rollback")]
Wait = Annotated[bool, Query(description="answer once production has moved (200), or when wait_s is over (202)")]
VersionName = Annotated[str, Path(min_length=1, max_length=200)]


@router.get("")
async def list_models(
    who: Reader, models: ModelsDep, alias: Annotated[Literal["production", "candidate", "previous"] | None, Query(
        description="only the version this alias names")] = None,
) -> ModelList:
    """Registered versions, newest first, with their aliases, status, lineage and scores."""
    aliases, versions = await models.versions(alias)
    return ModelList(aliases=aliases, versions=[ModelView.of(v) for v in versions])


WAITED = {200: {"model": ModelCommandAccepted, "description": "with ?wait=true: production has moved"}}


@router.post("/rollback", status_code=202, responses={**WAITED, **declared(409)})
async def rollback(
    who: RollingBack, models: ModelsDep, ip: ClientIp, response: Response,
    body: Annotated[RollbackSubmission | None, Body()] = None, wait: Wait = False, wait_s: WaitSeconds = 30.0,
) -> ModelCommandAccepted:
    """Move `production` back to `previous` (409 when there is none)."""
    command = await models.rollback(who, body or RollbackSubmission(), ip)
    return await _answer(models, command, response, wait, wait_s)


@router.get("/{version}", responses=declared(404))
async def get_model(who: Reader, models: ModelsDep, version: VersionName) -> ModelView:
    return ModelView.of(await models.version(version))


@router.post("/{version}/promote", status_code=202, responses={**WAITED, **declared(404, 409)})
async def promote(
    who: Promoter, models: ModelsDep, ip: ClientIp, response: Response, version: VersionName,
    body: Annotated[PromoteSubmission | None, Body()] = None, wait: Wait = False, wait_s: WaitSeconds = 30.0,
) -> ModelCommandAccepted:
    """Make a registered, evaluated version `production` (404 unknown, 409 not promotable)."""
    command = await models.promote(who, version, body or PromoteSubmission(), ip)
    return await _answer(models, command, response, wait, wait_s)


async def _answer(models: ModelService, command: ModelCommand, response: Response, wait: bool,
                  wait_s: float) -> ModelCommandAccepted:
    view = ModelCommandAccepted(request_id=command.request_id, action=command.action,
                                model_version=command.expected, status="accepted", production=command.production)
    if not wait:
        return view
    aliases = await models.wait_for_production(command.expected, wait_s)
    if aliases is None:
        view.status = "pending"
        view.production = (await models.aliases()).get("production")
        return view
    response.status_code = 200
    view.status, view.production, view.aliases = "done", aliases.get("production"), aliases
    return view
