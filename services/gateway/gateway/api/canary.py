"""Canary rollouts (operator, decision 0020): start one on a registered version, read it with
the judge's live report, stop it. The exporter records each command in the registry; every
command, accepted or refused (404, 409), is audited."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Response

from ..domain import CanaryStopSubmission, CanarySubmission, Identity, Role
from .deps import ClientIp, ModelsDep, WaitSeconds, require
from .openapi import declared
from .schemas import CanaryAccepted, CanaryView

router = APIRouter(prefix="/v1/registry/canary", tags=["models"])

Reader = Annotated[Identity, require(Role.OPERATOR, action="canary.read")]
Starter = Annotated[Identity, require(Role.OPERATOR, action="canary.start")]
Stopper = Annotated[Identity, require(Role.OPERATOR, action="canary.stop")]
Wait = Annotated[bool, Query(description="answer once the registry shows the change (200), or at wait_s (202)")]
WAITED = {200: {"model": CanaryAccepted, "description": "with ?wait=true: the registry shows the change"}}


@router.post("", status_code=202, responses={**WAITED, **declared(404, 409)})
async def start_canary(
    who: Starter, models: ModelsDep, ip: ClientIp, response: Response, body: Annotated[CanarySubmission, Body()],
    wait: Wait = False, wait_s: WaitSeconds = 30.0,
) -> CanaryAccepted:
    """Route `share` per cent of live runs (by hash of the run id) to `model_version`. 404: not
    registered; 409: a canary runs already, the version is production, or (mode `canary`) it
    could never be promoted."""
    request_id = await models.start_canary(who, body, ip)
    view = CanaryAccepted(request_id=request_id, canary_id=request_id, status="accepted")
    if wait:
        found = await models.wait_for_canary(request_id, wait_s, running=True)
        view.status = "done" if found is not None else "pending"
        if found is not None:
            response.status_code = 200
            view.canary = CanaryView.of(found)
    return view


@router.get("", responses=declared(404))
async def get_canary(
    who: Reader, models: ModelsDep,
    canary_id: Annotated[str | None, Query(min_length=1, max_length=200,
                                           description="default: the running canary, else the last")] = None,
) -> CanaryView:
    """The canary with the judge's report: per arm runs, valid-call, failure and negative-feedback
    ratios, median run time, each test and the interim decision."""
    canary, report, missing = await models.canary(canary_id)
    return CanaryView.of(canary, report, missing)


@router.post("/stop", status_code=202, responses={**WAITED, **declared(409)})
async def stop_canary(
    who: Stopper, models: ModelsDep, ip: ClientIp, response: Response,
    body: Annotated[CanaryStopSubmission | None, Body()] = None, wait: Wait = False, wait_s: WaitSeconds = 30.0,
) -> CanaryAccepted:
    """End the running canary; production stays as it is (409 when none runs)."""
    request_id, running = await models.stop_canary(who, body or CanaryStopSubmission(), ip)
    view = CanaryAccepted(request_id=request_id, canary_id=running.canary_id, status="accepted")
    if wait:
        found = await models.wait_for_canary(running.canary_id, wait_s, running=False)
        view.status = "done" if found is not None else "pending"
        if found is not None:
            response.status_code = 200
            view.canary = CanaryView.of(found)
    return view
