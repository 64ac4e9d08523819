"""Fixtures for the runner's integration tests: the session's isolated Postgres and S3
(`infra`, tests/harness.py) with a RabbitMQ vhost of the runner tests' own, so that no other
agent-runner of the session (the e2e stack) competes for the requests published here; a
client that plays the gateway (publishes requests, watches a reply queue); database access."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aio_pika
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agent_runner.settings import AgentRunnerSettings
from contracts import (
    EVENTS_EXCHANGE,
    REPLY_QUEUE_PREFIX,
    AgentRunRequested,
    ChatMessage,
    Contract,
    Principal,
    RunOptions,
)
from tests.harness import IsolatedEnv, create_vhost, delete_vhost


@dataclass
class RunnerInfra:
    infra: IsolatedEnv
    broker_url: str

    @property
    def env(self) -> dict[str, str]:
        return {**self.infra.env, "BROKER__URL": self.broker_url}


@pytest.fixture(scope="session")
def runner_infra(infra: IsolatedEnv) -> Iterator[RunnerInfra]:
    vhost = f"{infra.vhost}-runner"
    create_vhost(vhost)
    try:
        yield RunnerInfra(infra, infra.broker_url.rsplit("/", 1)[0] + "/" + vhost)
    finally:
        delete_vhost(vhost)


async def eventually(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll (sync or async) `predicate` until truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def runner_settings(runner_infra: RunnerInfra, **overrides: Any) -> AgentRunnerSettings:
    infra = runner_infra.infra
    values: dict[str, Any] = {
        "broker": {"url": runner_infra.broker_url, "prefetch": 8},
        "database": {"url": infra.database_url, "pool_size": 4},
        "s3": {"endpoint": infra.s3.endpoint, "access_key": infra.s3.access_key,
               "secret_key": infra.s3.secret_key, "bucket": infra.bucket},
        "log": {"json_format": False, "level": "INFO"},
        "instance_id": f"agent-runner-test-{uuid.uuid4().hex[:6]}",
    }
    for key, value in overrides.items():
        values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value
    return AgentRunnerSettings(**values)


def run_request(text: str = "What is 17*23?", *, run_id: str | None = None, message_id: str | None = None,
                reply_to: str | None = None, **options: Any) -> AgentRunRequested:
    run_id = run_id or f"run-{uuid.uuid4().hex[:10]}"
    return AgentRunRequested.create(
        correlation_id=run_id, message_id=message_id, run_id=run_id,
        messages=[ChatMessage(role="user", content=text)], options=RunOptions(**options),
        principal=Principal(subject="integration", role="user"), reply_to=reply_to,
    )


class Amqp:
    """A plain aio-pika client playing the gateway: publishes requests, watches a reply queue."""

    def __init__(self, connection: aio_pika.abc.AbstractRobustConnection, channel: aio_pika.abc.AbstractChannel):
        self.connection = connection
        self.channel = channel
        self.exchange: aio_pika.abc.AbstractExchange | None = None

    async def events(self) -> aio_pika.abc.AbstractExchange:
        if self.exchange is None:
            self.exchange = await self.channel.declare_exchange(
                EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
            )
        return self.exchange

    async def publish(self, message: Contract | None = None, *, body: bytes | None = None,
                      routing_key: str | None = None, message_id: str | None = None) -> None:
        exchange = await self.events()
        if message is not None:
            body = json.dumps(message.model_dump(mode="json")).encode()
            routing_key = routing_key or message.routing_key
            message_id = message_id or message.envelope.message_id
        await exchange.publish(
            aio_pika.Message(body or b"", message_id=message_id or str(uuid.uuid4()),
                             content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=routing_key or "",
            mandatory=False,
        )

    async def collector(self, *, name: str | None = None, bind: tuple[str, ...] = ()) -> Collector:
        """An exclusive queue (a gateway's reply queue, or a tap on the events exchange)."""
        queue = await self.channel.declare_queue(name or f"{REPLY_QUEUE_PREFIX}test-{uuid.uuid4().hex[:8]}",
                                                 exclusive=True, auto_delete=True)
        for key in bind:
            await queue.bind(await self.events(), routing_key=key)
        collector = Collector(queue)
        await queue.consume(collector.on_message, no_ack=True)
        return collector


class Collector:
    def __init__(self, queue: aio_pika.abc.AbstractQueue) -> None:
        self.queue = queue
        self.messages: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (headers, body)

    @property
    def name(self) -> str:
        return self.queue.name

    async def on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.messages.append((dict(message.headers or {}), json.loads(message.body)))

    def of_run(self, run_id: str) -> list[dict[str, Any]]:
        return [body for _, body in self.messages if body.get("run_id") == run_id]

    def typed(self, run_id: str, message_type: str) -> list[dict[str, Any]]:
        return [body for headers, body in self.messages
                if body.get("run_id") == run_id and headers.get("x-message-type") == message_type]

    def steps(self, run_id: str) -> list[dict[str, Any]]:
        return self.typed(run_id, "AgentRunStep")


@pytest.fixture(scope="module")
async def amqp(runner_infra: RunnerInfra) -> AsyncIterator[Amqp]:
    connection = await aio_pika.connect_robust(runner_infra.broker_url)
    channel = await connection.channel()
    try:
        yield Amqp(connection, channel)
    finally:
        await connection.close()


@pytest.fixture(scope="module")
async def db(infra: IsolatedEnv) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(infra.database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def fetch_all(db: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with db.connect() as conn:
        return (await conn.execute(sa.text(sql), params)).all()
