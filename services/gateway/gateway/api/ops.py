"""Operator routes. Every call, allowed or refused, lands in the audit log."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response

from ..domain import Identity, RetrainSubmission, Role, ScreenMarkSubmission, ScreenSubmission
from .deps import ClientIp, OpsDep, require
from .schemas import AuditView, FlaggedRuns, RetrainAccepted, ScreenVerdicts

router = APIRouter(prefix="/v1/ops", tags=["ops"])

Operator = Annotated[Identity, require(Role.OPERATOR, action="ops.retrain")]
Admin = Annotated[Identity, require(Role.ADMIN, action="ops.audit.read")]
Screener = Annotated[Identity, require(Role.OPERATOR, action="ops.screen")]
Marker = Annotated[Identity, require(Role.OPERATOR, action="ops.screen.mark")]


@router.post("/retrain", status_code=202)
async def retrain(
    who: Operator, ops: OpsDep, ip: ClientIp, body: Annotated[RetrainSubmission | None, Body()] = None
) -> RetrainAccepted:
    """Ask the log-miner for a fresh dataset and a training run."""
    request_id = await ops.request_retrain(who, body or RetrainSubmission(), ip)
    return RetrainAccepted(request_id=request_id)


@router.get("/audit")
async def audit(
    who: Admin, ops: OpsDep, ip: ClientIp, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[AuditView]:
    """Most recent audit entries first."""
    return [AuditView.of(e) for e in await ops.recent_audit(who, limit, ip)]


@router.post("/screen")
async def screen(who: Screener, ops: OpsDep, ip: ClientIp, body: ScreenSubmission) -> ScreenVerdicts:
    """Screen texts for prompt injection, one verdict per item in order: `flagged`, the category,
    the classifier's score, the rules that fired and which part fired (`fired_by`). The same
    screener as the gateway's and the runner's policy; `agentloop screen FILE.jsonl` sends a file."""
    verdicts = await ops.screen(who, body, ip)
    return ScreenVerdicts(verdicts=[v.to_doc() | {"source": item.source} for v, item in zip(verdicts, body.items,
                                                                                                  strict=True)])


@router.get("/screen/flagged")
async def flagged(
    who: Screener, ops: OpsDep, ip: ClientIp,
    since: Annotated[datetime | None, Query(description="runs created at or after; default: the last 7 days")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> FlaggedRuns:
    """Runs the prompt-injection screen fired on, newest first: each with its flags (a user or system
    message flagged or blocked at the gateway, a tool result quarantined or flagged by the runner),
    the verdict and an excerpt. A false positive is marked with `POST /v1/ops/screen/marks`."""
    since = since or datetime.now(UTC) - timedelta(days=7)
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return FlaggedRuns(runs=await ops.flagged(who, since, limit, ip))


@router.post("/screen/marks", status_code=201)
async def mark(who: Marker, ops: OpsDep, ip: ClientIp, body: ScreenMarkSubmission) -> dict[str, int]:
    """Mark screened texts: a false positive as `benign`, a miss as `malicious`. The marks become
    training data of the screening classifier (`GET /v1/ops/screen/marks`, then
    `python -m screening.train CORPUS --extra MARKS.jsonl`)."""
    return {"marked": await ops.mark(who, body, ip)}


@router.get("/screen/marks", response_class=Response,
            responses={200: {"content": {"application/x-ndjson": {}}, "description": "one mark per line"}})
async def marks(who: Marker, ops: OpsDep, ip: ClientIp,
                limit: Annotated[int, Query(ge=1, le=100_000, description="newest first")] = 10_000) -> Response:
    """The marks as JSON lines `{text, label, category: operator_mark, source, ...}`, the corpus
    format the training command reads."""
    lines = await ops.mark_lines(who, limit, ip)
    return Response("".join(json.dumps(line) + "\n" for line in lines), media_type="application/x-ndjson")
