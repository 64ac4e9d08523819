"""The gateway as real processes (`python -m gateway`, two replicas) against the session's
isolated Postgres/Redis/S3 (`infra` from tests/conftest.py), on a RabbitMQ vhost of their own
so that no real agent-runner of the same session competes with the test runner below.

`FakeRunner` plays the agent-runner's side of the contract over real RabbitMQ: it consumes
`agent-runner.agent.run.requested.v1`, streams `AgentRunStep`s to the request's `reply_to`
queue and publishes the outcome there and on the events exchange, as the runner does.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from contracts import (
    EVENTS_EXCHANGE,
    AgentRunFinished,
    AgentRunRequested,
    AgentRunStep,
    Contract,
    TrajectoryStep,
    Usage,
    deterministic_id,
)
from gateway.service.api_keys import create_api_key
from servicekit.messaging import EVENTS, make_broker, publish_event, publish_to_queue, work_queue
from tests.harness import IsolatedEnv, ServiceProcess, create_vhost, delete_vhost

RUNS_LIMIT = 25  # per subject per minute on replica A: each test uses its own subject


@dataclass
class GatewayEnv:
    env: dict[str, str]
    broker_url: str
    keys_dir: Path
    database_url: str


@pytest.fixture(scope="session")
def gateway_env(infra: IsolatedEnv, session_tmp: Path) -> Iterator[GatewayEnv]:
    vhost = f"{infra.vhost}-gateway"
    create_vhost(vhost)
    keys_dir = session_tmp / "gateway-keys"
    keys_dir.mkdir()
    for pem in infra.keys_dir.glob("*.pem"):  # own copy: the rotation test adds keys to it
        shutil.copy2(pem, keys_dir / pem.name)
    broker_url = infra.broker_url.rsplit("/", 1)[0] + "/" + vhost
    env = {
        **infra.env,
        "BROKER__URL": broker_url,
        "AUTH__KEYS_DIR": str(keys_dir),
        "AUTH__RELOAD_INTERVAL_S": "0.3",
        "LIMITS__TOKEN": "10000/minute",
        "LIMITS__RUNS": f"{RUNS_LIMIT}/minute",
        "LOG__JSON_FORMAT": "false",
    }
    try:
        yield GatewayEnv(env=env, broker_url=broker_url, keys_dir=keys_dir, database_url=infra.database_url)
    finally:
        delete_vhost(vhost)


def _start(name: str, env: dict[str, str], log_dir: Path) -> ServiceProcess:
    return ServiceProcess("gateway", env, log_dir / name)


@pytest.fixture(scope="session")
def gateways(gateway_env: GatewayEnv, session_tmp: Path, runner: FakeRunner) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    """Two replicas of one deployment: same keys, database, vhost; each its own reply queue.
    Replica B has a tight token limit (and its own Redis prefix for it)."""
    suffix = uuid.uuid4().hex[:6]
    a = _start("a", {**gateway_env.env, "INSTANCE_ID": f"gw-a-{suffix}"}, session_tmp / "logs")
    b = _start("b", {**gateway_env.env, "INSTANCE_ID": f"gw-b-{suffix}", "LIMITS__TOKEN": "3/minute",
                     "REDIS__KEY_PREFIX": f"{gateway_env.env['REDIS__KEY_PREFIX']}-b"}, session_tmp / "logs")
    a.start(wait=False)
    b.start(wait=False)
    try:
        a.wait_ready()
        b.wait_ready()
        yield a, b
    finally:
        a.stop()
        b.stop()


@pytest.fixture(scope="session")
def gateway(gateways) -> ServiceProcess:
    return gateways[0]


@pytest.fixture(scope="session")
async def db(gateway_env: GatewayEnv) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(gateway_env.database_url)
    yield engine
    await engine.dispose()


Token = Callable[..., Awaitable[tuple[str, str]]]


@pytest.fixture(scope="session")
def new_token(gateway: ServiceProcess, db: AsyncEngine) -> Token:
    """A fresh API key for a fresh subject, exchanged for a token: (token, subject)."""

    async def make(role: str = "user", subject: str | None = None) -> tuple[str, str]:
        subject = subject or f"{role}-{uuid.uuid4().hex[:8]}"
        key = await create_api_key(db, role, subject)
        async with httpx.AsyncClient(base_url=gateway.url) as client:
            resp = await client.post("/v1/auth/token", headers={"X-API-Key": key})
        assert resp.status_code == 200, resp.text
        return resp.json()["access_token"], subject

    return make


# --------------------------------------------------------------------------- the runner's side


class FakeRunner:
    """Plays the runner's side (AgentRunFinished to the reply queue and the events exchange, the
    same message). Scripted by the instruction: `fail` → a failed run; `silent` → no reply at all;
    `events-only` → outcome on the events exchange only (the reply is lost); `steps:N` → N
    token steps; anything else → three steps and an answer."""

    def __init__(self, broker_url: str) -> None:
        self.broker = make_broker(broker_url, prefetch=64, app_id="fake-runner")
        self.requests: dict[str, AgentRunRequested] = {}
        self.received = asyncio.Queue()

        @self.broker.subscriber(work_queue("agent-runner", AgentRunRequested, delivery_limit=5), EVENTS,
                                no_reply=True)
        async def on_request(msg: AgentRunRequested) -> None:
            self.requests[msg.run_id] = msg
            await self.received.put(msg)
            await self.play(msg)

    async def play(self, msg: AgentRunRequested) -> None:
        instruction = msg.messages[-1].content or ""
        if instruction == "silent":
            return
        if instruction == "fail":
            failed = AgentRunFinished.create(
                correlation_id=msg.run_id, message_id=deterministic_id("run-finished", msg.run_id),
                run_id=msg.run_id, status="failed", outcome="error", messages=msg.messages, model_version="m-test",
                engine="scripted", subject=msg.principal.subject, error_code="engine_error",
                error="the engine fell over",
            )
            await self.reply(msg, failed)
            await publish_event(self.broker, failed)
            return
        n = int(instruction.split(":", 1)[1]) if instruction.startswith("steps:") else 2
        if msg.options.stream:
            steps = [("started", None), *((("token", f"t{i} ") for i in range(n))), ("final", "done")]
            for index, (kind, text) in enumerate(steps):
                step = AgentRunStep.create(correlation_id=msg.run_id, run_id=msg.run_id, index=index, kind=kind,
                                           text=text)
                await self.reply(msg, step)
        completed = AgentRunFinished.create(
            correlation_id=msg.run_id, message_id=deterministic_id("run-finished", msg.run_id), run_id=msg.run_id,
            status="completed", outcome="answered", answer=f"echo: {instruction}", messages=msg.messages,
            steps=[TrajectoryStep(index=0, kind="final", text=f"echo: {instruction}")],
            usage=Usage(prompt_tokens=3, completion_tokens=2, engine_ms=1.5, total_ms=2.0),
            model_version="m-test", engine="scripted", subject=msg.principal.subject,
        )
        if instruction != "events-only":
            await self.reply(msg, completed)
        await publish_event(self.broker, completed)

    async def reply(self, request: AgentRunRequested, message: Contract) -> None:
        assert request.reply_to, "the gateway names its reply queue"
        await publish_to_queue(self.broker, message, request.reply_to)


@pytest.fixture(scope="session")
async def runner(gateway_env: GatewayEnv) -> AsyncIterator[FakeRunner]:
    fake = FakeRunner(gateway_env.broker_url)
    await fake.broker.start()
    yield fake
    await fake.broker.stop()


# --------------------------------------------------------------------------- watching the events exchange


class EventTap:
    """A private queue on the events exchange: what the gateway really published."""

    def __init__(self, queue: aio_pika.abc.AbstractQueue) -> None:
        self.queue = queue

    async def next_matching(self, predicate: Callable[[dict], bool], timeout: float = 10.0) -> tuple[dict, dict]:
        """(body, headers) of the first message that satisfies `predicate`."""
        import json

        async with asyncio.timeout(timeout):
            async with self.queue.iterator() as messages:
                async for message in messages:
                    await message.ack()
                    body = json.loads(message.body)
                    if predicate(body):
                        return body, dict(message.headers)
        raise AssertionError("unreachable")


@pytest.fixture(scope="session")
async def amqp(gateway_env: GatewayEnv) -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(gateway_env.broker_url)
    yield connection
    await connection.close()


@pytest.fixture
async def tap(amqp) -> Callable[[type[Contract]], Awaitable[EventTap]]:
    channel = await amqp.channel()

    async def bind(contract: type[Contract]) -> EventTap:
        exchange = await channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(f"test.tap.{uuid.uuid4().hex[:8]}", exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key=contract.routing_key)
        return EventTap(queue)

    yield bind
    await channel.close()
