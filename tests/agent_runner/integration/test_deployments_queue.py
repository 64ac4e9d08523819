"""The runner's own queue for `model.deployed` on real RabbitMQ: one per instance (exclusive,
auto-delete), bodies that break the contract dead-lettered to the shared DLQ, and gone with the
instance. The scripted engine: only the messaging is under test here."""

from __future__ import annotations

import asyncio
import json
import subprocess

import aio_pika
import httpx

from agent_runner.bootstrap import build_app
from agent_runner.handlers import DEPLOYMENTS_DLQ_KEY
from contracts import ModelDeployed, dead_letter_queue_name

from .conftest import RunnerInfra, eventually, runner_settings


def instance_queue(instance_id: str) -> str:
    return f"{DEPLOYMENTS_DLQ_KEY}.{instance_id}"


def queues(vhost: str) -> dict[str, tuple[str, str, str]]:
    """name → (durable, auto_delete, exclusive) as the broker reports them (an exclusive queue
    cannot even be declared passively from another connection)."""
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "durable", "auto_delete",
                          "exclusive"], check=True, capture_output=True, text=True, timeout=60).stdout
    rows = [line.split("\t") for line in out.splitlines()[1:] if line.strip()]
    return {r[0]: tuple(r[1:4]) for r in rows}


async def test_each_instance_consumes_its_own_queue_and_bad_bodies_are_dead_lettered(runner_infra: RunnerInfra,
                                                                                     amqp):
    settings = runner_settings(runner_infra, engine={"kind": "scripted", "model_version": "scripted-v1"})
    app = build_app(settings)
    own = instance_queue(settings.instance_id)
    vhost = runner_infra.broker_url.rsplit("/", 1)[1]
    async with app.router.lifespan_context(app):
        assert (await asyncio.to_thread(queues, vhost)).get(own) == ("false", "true", "true")

        await amqp.publish(body=b"{not json", routing_key=ModelDeployed.routing_key, message_id="bad-deploy-1")
        await amqp.publish(body=json.dumps({"model_version": "v9"}).encode(), routing_key=ModelDeployed.routing_key,
                           message_id="bad-deploy-2")
        good = ModelDeployed.create(correlation_id="d", model_version="v9", gguf_uri="s3://m/v9.gguf", sha256="ab" * 32)
        await amqp.publish(good)

        channel = await amqp.connection.channel()
        try:
            dlq = await channel.declare_queue(dead_letter_queue_name(DEPLOYMENTS_DLQ_KEY), passive=True)
            dead: list[str] = []

            async def both_dead() -> bool:
                if (message := await dlq.get(no_ack=True, fail=False)) is not None:
                    dead.append(message.message_id)
                return {"bad-deploy-1", "bad-deploy-2"} <= set(dead)

            await eventually(both_dead, what="the malformed deployments on the DLQ")
        finally:
            await channel.close()

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://runner") as client:
            async def wanted() -> bool:
                return (await client.get("/health/detailed")).json()["desired_model_version"] == "v9"

            await eventually(wanted, what="the valid deployment after the bad ones")
    assert own not in await asyncio.to_thread(queues, vhost)  # gone with the instance's connection


async def test_the_retired_shared_deployments_queue_is_deleted_at_start_up(runner_infra: RunnerInfra, amqp):
    """Upgrade step: the durable queue every replica shared before per-instance queues has no
    consumer any more; a new runner deletes it (with a stale message in it) when it starts."""
    from contracts import queue_name

    from agent_runner.handlers import RETIRED_QUEUES

    old = queue_name("agent-runner", ModelDeployed)
    assert RETIRED_QUEUES == (old,)
    vhost = runner_infra.broker_url.rsplit("/", 1)[1]
    channel = await amqp.connection.channel()
    try:
        queue = await channel.declare_queue(old, durable=True, arguments={"x-queue-type": "quorum"})
        await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=old)
        await eventually(lambda: old in queues(vhost), what="the old queue declared")
        await queue.consume(lambda m: None)  # an old replica still consumes: left alone
        settings = runner_settings(runner_infra, engine={"kind": "scripted", "model_version": "scripted-v1"})
        app = build_app(settings)
        async with app.router.lifespan_context(app):
            assert old in await asyncio.to_thread(queues, vhost)
    finally:
        await channel.close()  # the old replica is gone

    app = build_app(runner_settings(runner_infra, engine={"kind": "scripted", "model_version": "scripted-v1"}))
    async with app.router.lifespan_context(app):
        assert old not in await asyncio.to_thread(queues, vhost)
