"""The runner's consumer end to end against real RabbitMQ and Postgres (isolated vhost and
database), with the scripted engine so that only the runner's own machinery is under test."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aio_pika
import httpx
import pytest
from fastapi import FastAPI

from agent_runner.adapters.rabbit_steps import ReplyQueueSink
from agent_runner.bootstrap import build_app
from agent_runner.service import completed_id, finished_id, logged_id
from contracts import AgentRunRequested, AgentRunStep, ModelDeployed, dead_letter_queue_name, queue_name
from servicekit.messaging import make_broker
from .conftest import RunnerInfra, eventually, fetch_all, run_request, runner_settings

SCRIPT = json.dumps([
    '<tool_call>{"name": "calculator", "arguments": {"expression": "17*23"}}</tool_call>',
    "17*23 is 391.",
])
RUN_QUEUE = queue_name("agent-runner", AgentRunRequested)


@pytest.fixture(scope="module")
async def runner(runner_infra: RunnerInfra) -> AsyncIterator[FastAPI]:
    settings = runner_settings(runner_infra, engine={"kind": "scripted", "script": SCRIPT, "model_version": "scripted-v1"},
                               tools={"enabled": "calculator"})
    app = build_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="module")
async def events(amqp):
    return await amqp.collector(bind=("agent.run.completed.v1", "agent.run.failed.v1", "interaction.logged.v1",
                                      "agent.run.finished.v1"))


async def test_a_requested_run_streams_steps_and_completes_on_the_reply_queue(runner, amqp, db, events):
    replies = await amqp.collector()
    request = run_request(reply_to=replies.name)
    await amqp.publish(request)

    completed = await eventually(lambda: replies.typed(request.run_id, "AgentRunCompleted"), what="completion")
    body = completed[0]
    assert body["outcome"] == "answered" and body["answer"] == "17*23 is 391."
    assert body["model_version"] == "scripted-v1" and body["engine"] == "scripted"
    assert body["envelope"]["message_id"] == completed_id(request.run_id)
    kinds = [s["kind"] for s in replies.steps(request.run_id)]
    assert kinds[0] == "started" and kinds[-1] == "final"
    assert {"token", "tool_call", "tool_result"} <= set(kinds)
    tool_result = next(s for s in replies.steps(request.run_id) if s["kind"] == "tool_result")
    assert tool_result["tool_result"] == 391
    # the final result comes after the last step
    assert replies.of_run(request.run_id)[-1]["envelope"]["message_type"] == "AgentRunCompleted"

    rows = await fetch_all(db, "SELECT outcome, answer, steps, messages, model_version, engine, usage "
                               "FROM agent_runner.trajectories WHERE run_id = :r", r=request.run_id)
    assert len(rows) == 1
    row = rows[0]
    assert row.outcome == "answered" and row.model_version == "scripted-v1" and row.engine == "scripted"
    assert [s["kind"] for s in row.steps] == ["model", "tool_call", "tool_result", "model", "final"]
    assert [m["role"] for m in row.messages] == ["user", "assistant", "tool", "assistant"]
    assert row.usage["completion_tokens"] > 0

    await eventually(lambda: events.typed(request.run_id, "InteractionLogged"), what="interaction.logged")
    logged = events.typed(request.run_id, "InteractionLogged")[0]
    assert logged["envelope"]["message_id"] == logged_id(request.run_id)
    assert logged["steps"] == body["steps"]
    # the one outcome event (the old ones above still go out while consumers switch)
    await eventually(lambda: events.typed(request.run_id, "AgentRunFinished"), what="agent.run.finished")
    (finished,) = events.typed(request.run_id, "AgentRunFinished")
    assert finished["envelope"]["message_id"] == finished_id(request.run_id)
    assert (finished["status"], finished["answer"], finished["subject"]) == ("completed", body["answer"], "integration")
    assert finished["steps"] == body["steps"] and finished["messages"] == logged["messages"]


async def test_a_duplicate_delivery_is_processed_once(runner, amqp, db, events):
    replies = await amqp.collector()
    request = run_request(reply_to=replies.name)
    await amqp.publish(request)
    await amqp.publish(request)  # same message id: a redelivery or a publisher retry

    await eventually(lambda: len(replies.typed(request.run_id, "AgentRunCompleted")) == 2, what="two replies")
    await eventually(lambda: events.typed(request.run_id, "AgentRunCompleted"), what="completed event")
    rows = await fetch_all(db, "SELECT count(*) FROM agent_runner.trajectories WHERE run_id = :r", r=request.run_id)
    assert rows[0][0] == 1
    inbox = await fetch_all(db, "SELECT count(*) FROM agent_runner.inbox WHERE message_id = :m",
                            m=request.envelope.message_id)
    assert inbox[0][0] == 1
    outbox = await fetch_all(db, "SELECT count(*) FROM agent_runner.outbox WHERE message_id IN (:c, :l)",
                             c=completed_id(request.run_id), l=logged_id(request.run_id))
    assert outbox[0][0] == 2
    # it ran once; the second delivery re-sent the recorded result (same message id)
    assert [s["kind"] for s in replies.steps(request.run_id)].count("started") == 1
    finals = replies.typed(request.run_id, "AgentRunCompleted")
    assert finals[0]["envelope"]["message_id"] == finals[1]["envelope"]["message_id"]
    await eventually(lambda: len(events.typed(request.run_id, "InteractionLogged")) == 1, what="logged event")
    assert len(events.typed(request.run_id, "AgentRunCompleted")) == 1


async def test_a_request_redelivered_after_its_run_was_recorded_is_not_run_again(runner, amqp, db, events):
    replies = await amqp.collector()
    request = run_request(reply_to=replies.name)
    await amqp.publish(request)
    await eventually(lambda: replies.typed(request.run_id, "AgentRunCompleted"), what="first completion")
    await amqp.publish(request)

    await eventually(lambda: len(replies.typed(request.run_id, "AgentRunCompleted")) == 2, what="re-sent result")
    assert [s["kind"] for s in replies.steps(request.run_id)].count("started") == 1
    rows = await fetch_all(db, "SELECT count(*) FROM agent_runner.trajectories WHERE run_id = :r", r=request.run_id)
    assert rows[0][0] == 1


async def test_a_malformed_message_is_dead_lettered_and_the_consumer_keeps_serving(runner, amqp):
    dlq = dead_letter_queue_name(RUN_QUEUE)
    await amqp.publish(body=b"{not json", routing_key=AgentRunRequested.routing_key, message_id="malformed-1")
    await amqp.publish(body=json.dumps({"run_id": "x"}).encode(), routing_key=AgentRunRequested.routing_key,
                       message_id="breaks-contract-1")

    channel = await amqp.connection.channel()
    try:
        queue = await channel.declare_queue(dlq, passive=True)
        dead: list[aio_pika.abc.AbstractIncomingMessage] = []

        async def two_dead() -> bool:
            if (message := await queue.get(no_ack=True, fail=False)) is not None:
                dead.append(message)
            return len(dead) >= 2

        await eventually(two_dead, what="two messages on the DLQ")
        assert {m.message_id for m in dead} == {"malformed-1", "breaks-contract-1"}
    finally:
        await channel.close()

    replies = await amqp.collector()
    request = run_request(reply_to=replies.name)
    await amqp.publish(request)
    await eventually(lambda: replies.typed(request.run_id, "AgentRunCompleted"), what="a run after the bad ones")


async def test_a_run_without_reply_queue_still_completes_and_a_vanished_one_does_not_stop_it(runner, amqp, db, events):
    silent = run_request()
    gone = run_request(reply_to="gateway.replies.no-such-queue")
    await amqp.publish(silent)
    await amqp.publish(gone)
    for request in (silent, gone):
        await eventually(lambda r=request: events.typed(r.run_id, "AgentRunCompleted"), what="completion event")
    rows = await fetch_all(db, "SELECT count(*) FROM agent_runner.trajectories WHERE run_id IN (:a, :b)",
                           a=silent.run_id, b=gone.run_id)
    assert rows[0][0] == 2


async def test_model_deployed_is_recorded_and_health_reports_the_serving_model(runner, amqp):
    event = ModelDeployed.create(correlation_id="deploy-1", model_version="gemma3-270m-ft@v9",
                                 gguf_uri="s3://models/v9.gguf", sha256="ab" * 32)
    await amqp.publish(event)
    transport = httpx.ASGITransport(app=runner)
    async with httpx.AsyncClient(transport=transport, base_url="http://runner") as client:
        async def desired() -> dict | None:
            body = (await client.get("/health/detailed")).json()
            return body if body.get("desired_model_version") == "gemma3-270m-ft@v9" else None

        detailed = await eventually(desired, what="desired model in /health/detailed")
        assert detailed["model_version"] == "scripted-v1" and detailed["engine"] == "scripted"
        assert detailed["reload_pending"] is True
        assert all(check["ok"] for check in detailed["checks"].values()), detailed["checks"]
        metrics = (await client.get("/metrics")).text
    assert 'agent_runner_serving_model_info{engine="scripted",model_version="scripted-v1"} 1.0' in metrics
    assert 'agent_runner_runs_total{outcome="answered"}' in metrics
    assert 'agent_runner_tool_calls_total{outcome="ok",tool="calculator"}' in metrics


async def test_streaming_to_a_vanished_reply_queue_is_dropped_quietly(runner_infra, amqp):
    broker = make_broker(runner_infra.broker_url, prefetch=1, app_id="reply-sink-test")
    await broker.connect()
    try:
        request = run_request(reply_to="gateway.replies.vanished")
        step = AgentRunStep.create(correlation_id=request.run_id, run_id=request.run_id, index=0, kind="started")
        gone = ReplyQueueSink(broker, "gateway.replies.vanished")
        await gone.step(step)  # returned by the broker (mandatory): no error, streaming stops
        assert gone.gone

        replies = await amqp.collector()
        live = ReplyQueueSink(broker, replies.name)
        await live.step(step)
        await eventually(lambda: replies.steps(request.run_id), what="the step on a live reply queue")
        assert not live.gone
        headers, _ = replies.messages[0]
        assert headers["x-message-type"] == "AgentRunStep"
    finally:
        await broker.stop()
