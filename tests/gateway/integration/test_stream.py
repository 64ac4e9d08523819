"""The run WebSocket: steps in order as they happen, then the result, on any replica."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from websockets.exceptions import ConnectionClosed


def ws_url(gateway, token: str | None = None) -> str:
    base = gateway.url.replace("http://", "ws://") + "/v1/runs/stream"
    return f"{base}?token={token}" if token is not None else base


async def stream(url: str, request: dict, headers: dict | None = None, timeout: float = 15) -> tuple[list[dict], int]:
    """Every event until the server closes, and the close code."""
    events: list[dict] = []
    async with asyncio.timeout(timeout):
        async with websockets.connect(url, additional_headers=headers or {}) as ws:
            await ws.send(json.dumps(request))
            try:
                async for raw in ws:
                    events.append(json.loads(raw))
            except ConnectionClosed:
                pass
            return events, ws.close_code


async def test_steps_arrive_in_order_then_completed_then_the_server_closes(gateway, new_token, runner):
    token, _ = await new_token()
    events, code = await stream(ws_url(gateway, token), {"instruction": "steps:25"})
    assert events[0]["type"] == "accepted"
    run_id = events[0]["run_id"]
    steps = [e for e in events if e["type"] == "step"]
    assert [s["index"] for s in steps] == list(range(27))
    assert [s["kind"] for s in steps][:2] == ["started", "token"] and steps[-1]["kind"] == "final"
    assert all(s["run_id"] == run_id for s in steps)
    assert events[-1]["type"] == "completed" and events[-1]["answer"] == "echo: steps:25"
    assert events[-1]["run_id"] == run_id
    assert len(events) == len(steps) + 2 and code == 1000
    assert runner.requests[run_id].options.stream is True


async def test_a_failed_run_ends_the_stream_with_failed(gateway, new_token, runner):
    token, _ = await new_token()
    events, code = await stream(ws_url(gateway, token), {"instruction": "fail"})
    assert events[-1]["type"] == "failed" and events[-1]["error"]["code"] == "engine_error"
    assert code == 1000


async def test_the_token_may_come_in_the_authorization_header(gateway, new_token, runner):
    token, _ = await new_token()
    events, _ = await stream(ws_url(gateway), {"instruction": "hi"}, headers={"Authorization": f"Bearer {token}"})
    assert events[-1]["type"] == "completed"


async def test_each_replica_streams_the_runs_it_accepted(gateways, new_token, runner):
    """The run request names the accepting replica's own reply queue, so N replicas work."""
    a, b = gateways
    token, _ = await new_token()
    (events_a, _), (events_b, _) = await asyncio.gather(
        stream(ws_url(a, token), {"instruction": "steps:3"}),
        stream(ws_url(b, token), {"instruction": "steps:3"}),
    )
    for events, replica in ((events_a, "gw-a-"), (events_b, "gw-b-")):
        assert events[-1]["type"] == "completed"
        assert [e["index"] for e in events if e["type"] == "step"] == list(range(5))
        assert runner.requests[events[0]["run_id"]].reply_to.startswith(f"gateway.replies.{replica}")


@pytest.mark.parametrize("token", [None, "", "garbage", "a.b.c"])
async def test_an_invalid_token_closes_with_4401(gateway, token):
    async with websockets.connect(ws_url(gateway, token)) as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)  # the error event
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 4401


async def test_an_invalid_request_closes_with_4422_naming_the_field(gateway, new_token):
    token, _ = await new_token()
    events, code = await stream(ws_url(gateway, token), {"options": {"max_steps": 2}})
    assert code == 4422
    assert events[0]["type"] == "error" and events[0]["detail"][0]["loc"] == ["body", "messages"]
    events, code = await stream(ws_url(gateway, token), {"instruction": "hi\u0000"})
    assert code == 4422 and events[0]["detail"][0]["loc"] == ["body", "instruction"]
    assert "NUL" in events[0]["detail"][0]["msg"]


async def test_a_client_that_leaves_early_does_not_break_the_gateway(gateway, new_token, runner):
    token, _ = await new_token()
    async with websockets.connect(ws_url(gateway, token)) as ws:
        await ws.send(json.dumps({"instruction": "silent"}))
        accepted = json.loads(await ws.recv())
        assert accepted["type"] == "accepted"
    # The gateway forgot the listener and still serves streams.
    events, _ = await stream(ws_url(gateway, token), {"instruction": "hi"})
    assert events[-1]["type"] == "completed"


async def test_the_token_in_the_query_string_never_reaches_the_log(gateway, new_token, runner):
    token, _ = await new_token()
    events, _ = await stream(ws_url(gateway, token), {"instruction": "hi"})
    assert events[-1]["type"] == "completed"
    log = gateway.log_text()
    assert "token=[redacted]" in log
    assert token not in log and token.split(".")[2] not in log
