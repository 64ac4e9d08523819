"""The agent path as a client sees it: gateway → RabbitMQ → runner on the real Gemma model."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import websockets

from contracts import deterministic_id
from tests.harness import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SHORT = {"max_tokens": 48, "max_steps": 3}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def get_run(stack, token: str, run_id: str) -> dict:
    resp = httpx.get(f"{stack.gateway_url}/v1/runs/{run_id}", headers=auth(token), timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_rest_run_with_wait_returns_the_answer_and_stores_the_trajectory(stack, token, db):
    t = token("user")
    resp = httpx.post(
        f"{stack.gateway_url}/v1/runs?wait=true&timeout=120",
        json={"instruction": "What is 17*23?", "options": SHORT},
        headers=auth(t),
        timeout=150,
    )
    assert resp.status_code == 200, resp.text
    run = resp.json()
    assert run["status"] == "completed"
    assert run["outcome"] in {"answered", "max_steps"}
    assert run["model_version"]
    row = db.execute(
        "SELECT model_version, engine, jsonb_array_length(messages), jsonb_array_length(steps)"
        " FROM agent_runner.trajectories WHERE run_id = %s",
        (run["run_id"],),
    ).fetchone()
    assert row is not None, "no trajectory row for the run"
    model_version, engine, n_messages, n_steps = row
    assert engine == "llamacpp" and model_version == run["model_version"]
    assert n_messages >= 2 and n_steps >= 1


def test_rest_run_without_wait_is_accepted_then_completes(stack, token):
    t = token("user")
    resp = httpx.post(
        f"{stack.gateway_url}/v1/runs", json={"instruction": "Say hello.", "options": SHORT}, headers=auth(t), timeout=10
    )
    assert resp.status_code == 202, resp.text
    run_id = resp.json()["run_id"]
    done = wait_until(
        lambda: (r := get_run(stack, t, run_id))["status"] != "queued" and r, 120, interval=0.5, what="run to finish"
    )
    assert done["status"] == "completed"
    assert done["steps"], "a finished run lists its steps"


async def stream_run(stack, token: str, request: dict, on_step=None) -> list[dict]:
    ws_url = stack.gateway_url.replace("http", "ws") + f"/v1/runs/stream?token={token}"
    events: list[dict] = []
    async with websockets.connect(ws_url, open_timeout=10) as ws:
        await ws.send(json.dumps(request))
        async for raw in ws:
            event = json.loads(raw)
            events.append(event)
            if on_step and event.get("type") == "step":
                await on_step(event)
            if event["type"] in {"completed", "failed"}:
                break
    return events


def test_websocket_streams_steps_as_they_happen_then_the_result(stack, token):
    events = asyncio.run(
        asyncio.wait_for(stream_run(stack, token("user"), {"instruction": "What is 17*23?", "options": SHORT}), 150)
    )
    kinds = [e.get("kind") for e in events if e["type"] == "step"]
    assert events[0]["type"] == "accepted"
    assert kinds[0] == "started"
    assert "token" in kinds, "the model's text is streamed as it is generated"
    assert kinds[-1] in {"final", "error"}
    assert events[-1]["type"] == "completed"
    indexes = [e["index"] for e in events if e["type"] == "step"]
    assert indexes == sorted(indexes), "steps arrive in order"


def test_feedback_reaches_the_log_miner(stack, token, db):
    t = token("user")
    run = httpx.post(
        f"{stack.gateway_url}/v1/runs?wait=true", json={"instruction": "What is 2+2?", "options": SHORT},
        headers=auth(t), timeout=150,
    ).json()
    resp = httpx.post(
        f"{stack.gateway_url}/v1/runs/{run['run_id']}/feedback",
        json={"rating": -1, "corrected_answer": "4", "comment": "too long"},
        headers=auth(t),
        timeout=10,
    )
    assert resp.status_code == 201, resp.text
    feedback_id = resp.json()["feedback_id"]
    stored = db.execute("SELECT rating, corrected_answer FROM gateway.feedback WHERE feedback_id = %s", (feedback_id,)).fetchone()
    assert stored == (-1, "4")
    wait_until(
        lambda: db.execute(
            "SELECT count(*) FROM log_miner.inbox WHERE message_type = 'FeedbackSubmitted'"
        ).fetchone()[0] >= 1,
        30,
        what="log-miner to consume FeedbackSubmitted",
    )


def test_roles_gate_privileged_routes(stack, token):
    # The audit log is admin-only. (Retrain's operator gate is covered by the gateway's own
    # integration tests; posting one here would start a real training run beside the e2e tests.)
    url = f"{stack.gateway_url}/v1/ops/audit"
    assert httpx.get(url, headers=auth(token("user")), timeout=10).status_code == 403
    assert httpx.get(url, headers=auth(token("operator")), timeout=10).status_code == 403
    resp = httpx.get(url, headers=auth(token("admin")), timeout=10)
    assert resp.status_code == 200, resp.text


def test_runner_killed_mid_run_completes_the_run_exactly_once_after_restart(stack, token, db):
    runner = stack.service("agent_runner")
    t = token("user")
    request = {
        "instruction": "Write a long story about a lighthouse keeper and the sea, with many details.",
        "options": {"max_tokens": 400, "max_steps": 1, "server_tools": False, "timeout_s": 300},
    }
    killed_at: dict[str, float] = {}

    async def kill_on_first_token(event: dict) -> None:
        if event.get("kind") == "token" and not killed_at:
            killed_at["t"] = time.monotonic()
            runner.kill()
            runner.start(wait=False)  # the redelivered message is picked up by the new process

    async def scenario() -> list[dict]:
        return await stream_run(stack, t, request, on_step=kill_on_first_token)

    # The gateway's reply queue outlives the runner, so the same socket sees the rerun finish.
    events = asyncio.run(asyncio.wait_for(scenario(), 400))
    assert killed_at, "the runner was never killed mid-run"
    runner.wait_ready()
    run_id = events[0]["run_id"]
    assert events[-1]["type"] == "completed", events[-1]
    run = wait_until(lambda: (r := get_run(stack, t, run_id))["status"] == "completed" and r, 60, what="run index")
    assert run["outcome"] in {"answered", "max_steps"}
    assert db.execute("SELECT count(*) FROM agent_runner.trajectories WHERE run_id = %s", (run_id,)).fetchone()[0] == 1
    staged = dict(db.execute(
        "SELECT message_type, count(*) FROM agent_runner.outbox WHERE body->>'run_id' = %s GROUP BY 1", (run_id,),
    ).fetchall())
    # exactly one outcome event, and the legacy ones beside it while consumers switch
    assert staged == {"AgentRunFinished": 1, "AgentRunCompleted": 1, "InteractionLogged": 1}, staged
    # the one published AgentRunFinished reached the log-miner once ...
    wait_until(
        lambda: db.execute(
            "SELECT count(*) FROM log_miner.inbox i JOIN agent_runner.outbox o ON o.message_id = i.message_id"
            " WHERE o.message_type = 'AgentRunFinished' AND o.body->>'run_id' = %s",
            (run_id,),
        ).fetchone()[0] == 1,
        30,
        what="log-miner to receive the finished run once",
    )
    # ... and the gateway claimed the run's outcome once, whichever message brought it first
    assert db.execute("SELECT count(*) FROM gateway.inbox WHERE message_id = %s",
                      (deterministic_id("run-outcome", run_id),)).fetchone()[0] == 1


def test_a_websocket_client_that_leaves_cancels_its_run(stack, token):
    t = token("user")
    # held long by the answer's grammar (40 lines of 40 characters), whatever model production is
    long = {"type": "object", "required": ["lines"], "properties": {"lines": {
        "type": "array", "minItems": 40, "items": {"type": "string", "minLength": 40}}}}
    request = {"instruction": "Write a long story about a fox.",
               "options": {"max_tokens": 512, "server_tools": False,
                           "response_format": {"type": "json_schema", "json_schema": long}}}

    async def leave_after_a_step() -> str:
        ws_url = stack.gateway_url.replace("http", "ws") + f"/v1/runs/stream?token={t}"
        async with websockets.connect(ws_url, open_timeout=10) as ws:
            await ws.send(json.dumps(request))
            run_id = None
            async for raw in ws:
                event = json.loads(raw)
                run_id = run_id or event.get("run_id")
                if event["type"] == "step" and event["kind"] == "token":
                    return run_id  # leaving the block closes the socket mid-run
        raise AssertionError("the run ended before any token")

    run_id = asyncio.run(leave_after_a_step())
    run = wait_until(lambda: (r := get_run(stack, t, run_id))["status"] != "queued" and r, 120, interval=0.5,
                     what="the cancelled run recorded")
    assert run["status"] == "failed" and run["error"]["code"] == "cancelled", run
