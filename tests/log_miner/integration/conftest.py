"""Fixtures for the log-miner's integration tests: the real service as a process on a vhost and
database of this package's own, shared by its modules (the session's `stack`, started by other
areas, would otherwise consume the events published here), the session's private S3 with a
bucket of its own, and clients that play the runner and the gateway (publish) and the trainer
(a tap on the events exchange)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import psycopg
import pytest
from minio import Minio

from contracts import EVENTS_EXCHANGE, Contract
from tests.harness import (
    RABBIT_HOST,
    ROOT,
    IsolatedEnv,
    ServiceProcess,
    create_database,
    create_vhost,
    delete_vhost,
    drop_database,
    migrate,
)

EVAL_DIR = (ROOT / ".." / "shared" / "eval").resolve()


@dataclass(frozen=True)
class MinerEnv:
    env: dict[str, str]
    broker_url: str
    database_url: str
    bucket: str


@pytest.fixture(scope="package")
def miner_env(infra: IsolatedEnv) -> Iterator[MinerEnv]:
    suffix = uuid.uuid4().hex[:8]
    vhost, database = f"{infra.vhost}-miner-{suffix}", f"{infra.database}_miner_{suffix}"
    broker_url = f"amqp://guest:guest@{RABBIT_HOST}:5672/{vhost}"
    database_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
    bucket = f"lm-{suffix}-{infra.suffix}"
    create_vhost(vhost)
    create_database(database)
    try:
        migrate(database_url)
        env = {**infra.env, "BROKER__URL": broker_url, "DATABASE__URL": database_url, "S3__BUCKET": bucket}
        yield MinerEnv(env, broker_url, database_url, bucket)
    finally:
        delete_vhost(vhost)
        drop_database(database)


@pytest.fixture(scope="package")
def miner(miner_env: MinerEnv, session_tmp: Path) -> Iterator[ServiceProcess]:
    env = {
        **miner_env.env,
        "INSTANCE_ID": "log-miner-test",
        "MINING__MAX_CHARS": "4000",
        "MINING__CORPUS_ROOTS": str(EVAL_DIR),
        "MINING__PROGRESS_EVERY": "50",
        # Only the example-count trigger, and only once this module's last test asks for it.
        "POLICY__MIN_NEW_EXAMPLES": "8",
        "POLICY__FAILURE_RATE": "1.0",
        "POLICY__MIN_WINDOW_RUNS": "100000",
        "POLICY__COOLDOWN_S": "0",
        "POLICY__DEBOUNCE_S": "0.3",
    }
    proc = ServiceProcess("log_miner", env, session_tmp / "log-miner-logs")
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="package")
def db(miner_env: MinerEnv) -> Iterator[psycopg.Connection]:
    with psycopg.connect(miner_env.database_url.replace("+asyncpg", ""), autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="package")
def s3(infra: IsolatedEnv) -> Minio:
    return Minio(infra.s3.endpoint, access_key=infra.s3.access_key, secret_key=infra.s3.secret_key, secure=False)


class Events:
    """Publishes contracts to the events exchange; collects what a tap queue receives."""

    def __init__(self, channel: aio_pika.abc.AbstractChannel, exchange: aio_pika.abc.AbstractExchange) -> None:
        self.channel = channel
        self.exchange = exchange
        self.received: list[tuple[str, dict[str, Any]]] = []  # (routing key, body)

    async def publish(self, message: Contract) -> None:
        await self.exchange.publish(
            aio_pika.Message(json.dumps(message.model_dump(mode="json")).encode(),
                             message_id=message.envelope.message_id, content_type="application/json",
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=message.routing_key, mandatory=True,
        )

    async def tap(self, *routing_keys: str) -> None:
        queue = await self.channel.declare_queue(f"test-tap-{uuid.uuid4().hex[:8]}", exclusive=True, auto_delete=True)
        for key in routing_keys:
            await queue.bind(self.exchange, routing_key=key)

        async def on_message(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
            self.received.append((msg.routing_key or "", json.loads(msg.body)))

        await queue.consume(on_message, no_ack=True)

    def of(self, routing_key: str, **match: Any) -> list[dict[str, Any]]:
        return [body for key, body in self.received
                if key == routing_key and all(body.get(k) == v for k, v in match.items())]


@pytest.fixture(scope="package")
async def events(miner_env: MinerEnv, miner: ServiceProcess) -> AsyncIterator[Events]:
    connection = await aio_pika.connect_robust(miner_env.broker_url)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(EVENTS_EXCHANGE, ensure=True)
    try:
        yield Events(channel, exchange)
    finally:
        await connection.close()


async def eventually(predicate, timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll a sync predicate without blocking the event loop (consumers run on it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)
