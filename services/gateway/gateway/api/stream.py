"""WebSocket `/v1/runs/stream`: submit one run, receive its steps as they happen, then the result.

Protocol: connect with `?token=<jwt>` (or an `Authorization: Bearer` header); send one JSON run
request (the body of `POST /v1/runs`); receive `{"type": "accepted", "run_id"}`, then
`{"type": "step", ...}` per step, then `{"type": "completed", ...run}` or
`{"type": "failed", ...run}` (or `{"type": "timeout", "run_id"}`), then the server closes.

A client that leaves before the outcome cancels the run (`agent.run.cancel.v1`: the runner stops
the turn and records the run as failed, `cancelled`).

Close codes: 4401 bad token, 4403 role too low, 4413 message too large, 4422 invalid request,
4429 rate limited, 4408 no request sent in time, 1000 done.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from servicekit.text import unstorable_json

from ..container import Container
from ..domain import (
    AuthenticationError,
    Identity,
    InvalidRequestError,
    PermissionDeniedError,
    RateLimitedError,
    RunRecord,
    RunSubmission,
)
from ..service.runs import RunStream
from .errors import validation_detail
from .schemas import RunView

router = APIRouter(tags=["runs"])

REQUEST_TIMEOUT_S = 30.0


async def _close(ws: WebSocket, code: int, reason: str, event: dict | None = None) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        if event is not None:
            await ws.send_json(event)
        await ws.close(code=code, reason=reason[:120])


def _token(ws: WebSocket) -> str | None:
    if token := ws.query_params.get("token"):
        return token
    scheme, _, value = (ws.headers.get("authorization") or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


@router.websocket("/v1/runs/stream")
async def stream_run(ws: WebSocket) -> None:
    container: Container = ws.app.state.container
    # Accept first: a close code (4401/4403) can only be sent on an open socket.
    await ws.accept()
    try:
        who = container.access.identify(_token(ws))
    except AuthenticationError as exc:
        await _close(ws, 4401, exc.reason, {"type": "error", "status": 401, "reason": exc.reason, "detail": exc.detail})
        return
    except PermissionDeniedError as exc:
        await _close(ws, 4403, "forbidden", {"type": "error", "status": 403, "detail": str(exc)})
        return
    container.metrics.websockets_active.inc()
    try:
        await _serve(ws, container, who)
    except WebSocketDisconnect:
        pass
    finally:
        container.metrics.websockets_active.dec()


async def _serve(ws: WebSocket, container: Container, who: Identity) -> None:
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            raw = await ws.receive_text()
    except TimeoutError:
        await _close(ws, 4408, "no run request received")
        return
    if len(raw.encode()) > container.max_body_bytes:
        await _close(ws, 4413, "request too large", {"type": "error", "status": 413, "detail": "request too large"})
        return
    if (bad := unstorable_json(raw.encode())) is not None:  # the rule every HTTP route keeps (servicekit.app)
        detail = [{"type": "unstorable_text", "loc": ["body", *bad.loc], "msg": bad.reason}]
        await _close(ws, 4422, "invalid run request", {"type": "error", "status": 422, "detail": detail})
        return
    try:
        body = RunSubmission.model_validate_json(raw)
    except ValidationError as exc:
        detail = [{"type": e["type"], "loc": ["body", *e["loc"]], "msg": e["msg"]} for e in exc.errors()]
        await _close(ws, 4422, "invalid run request", {"type": "error", "status": 422, "detail": detail})
        return
    runs = container.runs
    try:
        async with runs.stream(who, body) as stream:
            await ws.send_json({"type": "accepted", "run_id": stream.run_id, "status": "queued"})
            try:
                finished = await _relay(ws, stream, runs.wait_timeout(body, None))
            except WebSocketDisconnect:
                finished = False
            if not finished:
                runs.cancel_soon(stream.run_id, "the client left the run's WebSocket")
    except InvalidRequestError as exc:
        await _close(ws, 4422, "invalid run request",
                     {"type": "error", "status": 422, "detail": validation_detail(exc)})
    except RateLimitedError as exc:
        await _close(ws, 4429, "rate limited", {"type": "error", "status": 429, "retry_after": exc.retry_after_s,
                                                "detail": str(exc)})


async def _relay(ws: WebSocket, stream: RunStream, timeout_s: float) -> bool:
    """Forward events until the outcome, the deadline, or the client leaving (False: it left first)."""

    async def watch_client() -> None:
        # The client has nothing more to say; a receive returning means it left.
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
        stream.close()

    watcher = asyncio.create_task(watch_client())
    try:
        async with asyncio.timeout(timeout_s):
            while (event := await stream.next()) is not None:
                if isinstance(event, RunRecord):
                    kind = "completed" if event.status == "completed" else "failed"
                    await ws.send_text(json.dumps({"type": kind, **RunView.of(event).model_dump(mode="json")}))
                    await ws.close(code=1000)
                    return True
                await ws.send_text(json.dumps({"type": "step", **event.model_dump(mode="json", exclude={"envelope"})}))
    except TimeoutError:
        await _close(ws, 1000, "timeout", {"type": "timeout", "run_id": stream.run_id, "status": "queued"})
        return True
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    return False
